"""End-to-end :func:`remap.fit` throughput on a batch of two-beam spectra.

The batch is made of raw simulated MARVELS-like calibration stars
(:func:`remap.simulate.simulated_stars`: spikes, noise, continuum distortion,
both beams): a few stars are simulated and copied with fresh noise (seeded) up
to the batch size, so that simulating them does not dominate the run.  The
batch is given to :func:`remap.fit` with the default model in two forms:

* ``list``: a list of stars, each a dict ``{"A": Spectrum, "B": Spectrum}``
  (what reading one file per star gives);
* ``2-D``: one `specutils.Spectrum` holding every star as a row of a common
  4850-5750 Å axis (both beams in one spectrum).

The model is loaded and the networks traced in a warm-up call first.  The
table gives the seconds spent in each pipeline stage (from
`remap.FitResult.timings`), their share, the time per star and the overall
throughput in stars per second.
"""

from __future__ import annotations

import os
import time

import astropy.units as u
import numpy as np

__all__ = ["make_batch", "combined_batch", "run", "main"]

#: Rows of the stage table, in pipeline order (``network A``/``network B`` per beam).
_STAGES = ("split", "spikes", "resample", "continuum", "network A", "network B",
           "conflation", "neighbours")


def make_batch(n, n_unique=16, seed=0):
    """``n`` raw two-beam stars: ``n_unique`` simulated ones, copied with fresh noise.

    Returns
    -------
    stars : list of dict of str to `specutils.Spectrum`
    """
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    from remap.simulate import simulated_stars

    base = [s for s, _ in simulated_stars("calibration", n=min(n, n_unique), seed=seed)]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        src = base[i % len(base)]
        star = {}
        for beam, spec in src.items():
            sigma = spec.uncertainty.array
            flux = spec.flux.value + (sigma * rng.standard_normal(sigma.shape)
                                      if i >= len(base) else 0.0)
            star[beam] = Spectrum(flux=flux * spec.flux.unit, spectral_axis=spec.spectral_axis,
                                  uncertainty=StdDevUncertainty(sigma * spec.flux.unit),
                                  meta=dict(spec.meta))
        out.append(star)
    return out


def combined_batch(stars):
    """The stars of :func:`make_batch` as one 2-D spectrum on a common axis (A + B)."""
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    a0, b0 = stars[0]["A"], stars[0]["B"]
    wave = np.concatenate([a0.spectral_axis.value, b0.spectral_axis.value[1:]]) * u.AA
    flux = np.stack([np.concatenate([s["A"].flux.value, s["B"].flux.value[1:]])
                     for s in stars])
    sigma = np.stack([np.concatenate([s["A"].uncertainty.array, s["B"].uncertainty.array[1:]])
                      for s in stars])
    unit = a0.flux.unit
    return Spectrum(flux=flux * unit, spectral_axis=wave,
                    uncertainty=StdDevUncertainty(sigma * unit),
                    meta={"wavelength_medium": a0.meta.get("wavelength_medium")})


def run(spectra, model, batch_size=256):
    """Fit once; return (wall seconds, stage timings, result)."""
    import remap

    start = time.perf_counter()
    result = remap.fit(spectra, model=model, batch_size=batch_size)
    return time.perf_counter() - start, result.timings, result


def _print_table(label, n, wall, timings):
    print(f"\n{label}: {n} stars in {wall:.2f} s = {n / wall:.0f} stars/s")
    print(f"  {'stage':<12} {'seconds':>8} {'share':>7} {'ms/star':>8}")
    accounted = 0.0
    for stage in _STAGES:
        sec = timings.get(stage, 0.0)
        accounted += sec
        print(f"  {stage:<12} {sec:8.3f} {sec / wall:7.1%} {1e3 * sec / n:8.3f}")
    other = wall - accounted
    print(f"  {'other':<12} {other:8.3f} {other / wall:7.1%} {1e3 * other / n:8.3f}"
          "   (input parsing, grouping, stacking)")


def main(quick=False):
    """Run the benchmark and print its tables."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import remap

    n = 200 if quick else 1000
    t0 = time.perf_counter()
    model = remap.default_model()
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    stars = make_batch(n)
    t_make = time.perf_counter() - t0
    print(f"remap.fit benchmark: default model ({model.path.name}), {n} two-beam stars, "
          f"{os.cpu_count()} CPUs; model load {t_load:.1f} s, making the batch {t_make:.1f} s")
    warm = time.perf_counter()
    remap.fit(stars[:2], model=model)
    print(f"warm-up (2 stars: network tracing, neighbour reference distances): "
          f"{time.perf_counter() - warm:.1f} s")

    wall, timings, result = run(stars, model)
    _print_table("list of stars (dict of beam spectra each)", n, wall, timings)
    flagged = int(np.count_nonzero(result.flags))
    wall2, timings2, _ = run(combined_batch(stars), model)
    _print_table("one 2-D spectrum (both beams on one axis)", n, wall2, timings2)
    print(f"\nflagged stars: {flagged} of {n}")
