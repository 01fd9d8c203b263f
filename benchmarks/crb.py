"""Cramér–Rao bound of T_eff, log g and [Fe/H] for the ``linelist`` library on MARVELS.

The physical limit that every method in the benchmark suite is measured
against (issue 6): for each label point, the noiseless spectrum of the
built-in ``linelist`` library is continuum-normalized with its *true*
continuum (``flux / meta["continuum"]``), down-convolved to R = 11,000 and
resampled onto the MARVELS beam grids with :func:`remap.augment.augment`
(no noise, no fitted continuum), and :func:`remap.crb.cramer_rao_bound`
turns its central finite-difference label derivatives into the Fisher matrix
``F = Jᵀ J · SNR²`` (white noise σ = 1/SNR on the normalized flux) and the
marginal bound ``sqrt((F⁻¹)_kk)``.  Beams A and B are reported separately and
together (independent pixels: their Fisher matrices add).

Steps: 20 K, 0.05 dex, 0.05 dex (:data:`STEPS`); they are checked by halving
on a subset of the points (the relative change of the bound is reported).

``python -m benchmarks crb [--quick]``: the bound at SNR 50, 100 and 200 on
the held-out label points of the suite (``--quick``: 20 points, 5 checked;
full: 100 points, 20 checked).
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["STEPS", "SNRS", "RESOLUTION", "LABELS", "LinelistModel", "crb_at", "summarize",
           "main"]

#: Finite-difference steps: T_eff (K), log g (dex), [Fe/H] (dex).
STEPS = (20.0, 0.05, 0.05)

#: Signal-to-noise ratios of the test spectra (Gilda 2025, §3.3: SNR 50-200).
SNRS = (50, 100, 200)

#: Resolving power of the bound (the MARVELS nominal R).
RESOLUTION = 11_000

#: Labels of the bound, in this order.
LABELS = ("teff", "logg", "feh")


class LinelistModel:
    """Noiseless normalized MARVELS-beam flux of a library as a function of (T_eff, log g, [Fe/H]).

    Parameters
    ----------
    library : `remap.libraries.base.SyntheticLibrary`, optional
        Default ``remap.get_library("linelist")``.
    survey : survey object, optional
        Default ``remap.get_survey("marvels")``.
    beams : sequence of str, optional
        Default: all beams of the survey; their pixels are concatenated in
        this order (:attr:`slices`).
    resolution : float
        Resolving power after down-convolution.
    alpha : float
        [α/Fe] held fixed.

    Attributes
    ----------
    slices : dict of str to slice
        Pixels of each beam in the concatenated flux.
    calls : int
        Library spectra computed so far.
    """

    def __init__(self, library=None, survey=None, beams=None, resolution=RESOLUTION, alpha=0.0):
        import remap

        self.library = remap.get_library("linelist") if library is None else library
        self.survey = remap.get_survey("marvels") if survey is None else survey
        self.beams = list(self.survey.beams) if beams is None else list(beams)
        self.resolution = float(resolution)
        self.alpha = float(alpha)
        self.slices, start = {}, 0
        for beam in self.beams:
            n = len(self.survey.grid(beam))
            self.slices[beam] = slice(start, start + n)
            start += n
        self.calls = 0

    @property
    def bounds(self):
        """(3, 2) domain of the labels (one-sided differences at its edges)."""
        d = self.library.domain
        return np.array([d.teff, d.logg, d.feh], dtype=float)

    def __call__(self, label):
        """Concatenated normalized flux of all beams for ``label`` = (teff, logg, feh)."""
        from remap.augment import augment

        teff, logg, feh = (float(v) for v in label)
        spec = self.library.spectrum(teff=teff, logg=logg, feh=feh, alpha=self.alpha)
        self.calls += 1
        parts = []
        for beam in self.beams:
            batch, _ = augment(spec, self.survey, beam, resolutions=[self.resolution],
                               noise_levels=[0.0], draws=1, seed=0, fitter=None)
            parts.append(np.asarray(batch.flux.value)[0] / np.asarray(batch.meta["continuum"])[0])
        return np.concatenate(parts)


def crb_at(model, labels, snrs=SNRS, steps=STEPS, *, n_check=0):
    """Bounds per beam (and all beams together) at label points; optional step check.

    Parameters
    ----------
    model : `LinelistModel`
    labels : array-like, shape (n, 3)
    snrs : sequence of float
    steps : sequence of 3 float
    n_check : int
        Recompute the bound with halved steps on the first ``n_check`` points.

    Returns
    -------
    result : dict
        ``bound[beam]`` (``"A"``, ``"B"``, ``"A+B"``): ndarray (n_snr, n, 3);
        ``check[beam]``: ndarray (n_check, 3) of ``CRB(h/2)/CRB(h) - 1``;
        ``seconds`` and ``calls`` (library spectra).
    """
    from remap.crb import bound_from_fisher, finite_difference_jacobian

    labels = np.atleast_2d(np.asarray(labels, dtype=float))
    snrs = np.asarray(snrs, dtype=float)
    groups = dict(model.slices)
    if len(model.beams) > 1:
        groups["+".join(model.beams)] = slice(None)
    start, calls0 = time.perf_counter(), model.calls

    def unit_bounds(h, rows):
        out = {g: [] for g in groups}
        for row in rows:
            jac = finite_difference_jacobian(model, row, h, bounds=model.bounds)
            for g, sl in groups.items():
                j = jac[sl]
                out[g].append(bound_from_fisher(j.T @ j))
        return {g: np.array(v) for g, v in out.items()}

    unit = unit_bounds(np.asarray(steps, float), labels)
    result = {"bound": {g: v[None] / snrs[:, None, None] for g, v in unit.items()},
              "check": {}}
    if n_check:
        half = unit_bounds(np.asarray(steps, float) / 2, labels[:n_check])
        result["check"] = {g: half[g] / unit[g][:n_check] - 1.0 for g in groups}
    result["seconds"] = time.perf_counter() - start
    result["calls"] = model.calls - calls0
    return result


def summarize(result, snrs=SNRS):
    """Rows (group, snr, label, median, mean, max step change) of a :func:`crb_at` result."""
    rows = []
    for group, bound in result["bound"].items():
        check = result["check"].get(group)
        for i, snr in enumerate(snrs):
            for k, name in enumerate(LABELS):
                b = bound[i, :, k]
                rows.append({"beams": group, "snr": float(snr), "parameter": name,
                             "median": float(np.median(b)), "mean": float(np.mean(b)),
                             "step_change_max": (float(np.max(np.abs(check[:, k])))
                                                 if check is not None and check.size
                                                 else float("nan"))})
    return rows


def main(quick=False):
    """Print the bound on the held-out label points of the suite (see the module doc)."""
    import remap
    from remap.datasets import draw_labels

    n, n_check = (20, 5) if quick else (100, 20)
    model = LinelistModel()
    table = draw_labels(model.library.domain, n, 1)   # the suite's held-out seed
    labels = np.column_stack([np.asarray(table[k], dtype=float) for k in LABELS])
    print(f"Cramér–Rao bound: linelist library, R = {RESOLUTION:,}, MARVELS beams "
          f"{', '.join(model.beams)}, white noise σ = 1/SNR on the normalized flux; "
          f"{n} label points, steps {STEPS} (halved on {n_check} points)")
    result = crb_at(model, labels, n_check=n_check)
    print(f"  {result['calls']} library spectra, {result['seconds']:.1f} s")
    units = {h: remap.get_head(h).unit.to_string() for h in LABELS}
    print(f"  {'beams':<5} {'SNR':>4} {'parameter':<9} {'median':>9} {'mean':>9} {'unit':<4} "
          f"{'|Δ| half step (max)':>20}")
    for r in summarize(result):
        print(f"  {r['beams']:<5} {r['snr']:>4.0f} {r['parameter']:<9} {r['median']:9.4f} "
              f"{r['mean']:9.4f} {units[r['parameter']]:<4} {100 * r['step_change_max']:19.2f}%")
    return result
