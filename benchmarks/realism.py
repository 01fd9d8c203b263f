"""Realism of the built-in ``linelist`` library against a real solar spectrum.

Compares the library at the solar labels (5772 K, 4.44, 0.00) with the
normalized UVES solar spectrum of ``/work/shared/data`` (not shipped: GPL; the
path comes from ``REMAP_SOLAR_SPECTRUM`` or defaults to
``../shared/data/solar_uves_norm.txt`` relative to the repository root; the
benchmark is skipped with a message when it is absent).  Both are degraded to
R = 11,000 (the library from its R = 100,000, the reference from its nominal
R = 47,000), resampled to 0.1 Å over 4850-5750 Å and compared after a
cross-correlation velocity shift.  Rows:

* ``laboratory`` / ``calibrated`` for each physics version of the library
  (``v3``, the default, and ``v2``; `remap.libraries.linelist.PHYSICS`): the
  laboratory line list and the shipped calibration (fitted on every window of
  the reference: its rms is an in-sample figure);
* ``hold-out fit``: a calibration redone here (default physics) with every 4th
  10 Å window held out (``remap.libraries.calibrate.calibrate_linelist(holdout=4)``);
  its rms over the held-out windows is the out-of-sample figure; once with
  the laboratory log gf as the prior and once with the Gaia-ESO log gf
  (``loggf_prior="ges"``);
* χ² best-fit labels of each version's calibrated library against the
  reference (`scipy.optimize.least_squares` over T_eff, log g, [Fe/H]), over
  all pixels and with the H beta core (+-0.5 Å: chromospheric, non-LTE; no
  LTE library has it) left out;
* which pixels pull those χ² labels off the solar ones (`label_pulls`): the
  Gauss-Newton step at the solar labels split exactly into the contributions
  of H beta, Mg b, the strongest Fe I lines and 25 Å windows, with variants
  (renormalization envelope frozen, microturbulence fixed, reference velocity
  shifted by ±0.3 km/s);
* synthesis speed, spectra/s on one core at R 100,000 over 4800-5800 Å.

The default model's rows (``remap.fit`` on the real Sun) follow; set
``REMAP_REALISM_MODEL=0`` to skip them (e.g. when only the library changed), or to
the folder of another model artifact to measure that one instead (e.g. a
``remap train`` run's ``model/``).

A figure of the library against the reference around H beta and Mg b is written to
``benchmarks/results/realism/realism.png``.  ``--quick`` skips the hold-out
calibration and uses fewer spectra for the speed.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from astropy import units as u  # noqa: E402
from scipy.ndimage import gaussian_filter1d  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

__all__ = ["main", "reference_path", "compare", "degrade", "label_pulls"]

_ROOT = Path(__file__).resolve().parent.parent
_RANGE = (4850.0, 5750.0)
_R_COMPARE = 11_000.0
_R_REFERENCE = 47_000.0
_STEP = 0.1
_SUN = (5772.0, 4.44, 0.0)
_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))
_BLOCK_AA = 25.0
_QUANTILE = 0.95


def reference_path():
    """Path of the solar reference spectrum (env ``REMAP_SOLAR_SPECTRUM`` or the shared copy)."""
    env = os.environ.get("REMAP_SOLAR_SPECTRUM")
    return Path(env) if env else _ROOT.parent / "shared" / "data" / "solar_uves_norm.txt"


def degrade(wave, flux, r_from, r_to):
    """Gaussian-degrade a spectrum from resolving power ``r_from`` to ``r_to`` and keep its grid.

    The grid may be uniform in wavelength or in ln(wavelength); the kernel width
    is taken at the central wavelength (the 4850-5750 Å range spans +-8 %).
    """
    sigma_r = np.sqrt(max(1.0 / r_to**2 - 1.0 / r_from**2, 0.0)) / _FWHM     # in d lambda/lambda
    mid = wave[wave.size // 2]
    dpix = np.median(np.diff(wave))
    return gaussian_filter1d(flux, sigma_r * mid / dpix, mode="nearest")


def renormalize(grid, flux, block=_BLOCK_AA, quantile=_QUANTILE):
    """Divide by an upper envelope: the ``quantile`` of each ``block`` Å, interpolated linearly.

    Applied to the library and the reference alike ("normalized the same way"),
    so a difference in the placement of the continuum (the reference's own
    normalization, line haze the line list lacks) does not count as a line
    difference.
    """
    edges = np.arange(grid[0], grid[-1] + block, block)
    centres, levels = [], []
    for lo in edges[:-1]:
        sel = (grid >= lo) & (grid < lo + block)
        if sel.sum() > 10:
            centres.append(lo + 0.5 * block)
            levels.append(np.quantile(flux[sel], quantile))
    return flux / np.interp(grid, centres, levels)


def _on_grid(lib_wave, lib_flux, ref_wave, ref_flux, grid, same_norm=True):
    model = np.interp(grid, lib_wave, degrade(lib_wave, lib_flux, 100_000.0, _R_COMPARE))
    ref = np.interp(grid, ref_wave, degrade(ref_wave, ref_flux, _R_REFERENCE, _R_COMPARE))
    if same_norm:
        model, ref = renormalize(grid, model), renormalize(grid, ref)
    return model, ref


def compare(lib_wave, lib_flux, ref_wave, ref_flux, grid, mask=None, same_norm=True):
    """rms, summed-absorption ratio (model / reference) and velocity at R 11,000 on ``grid``.

    The reference is shifted by the velocity (grid of 0.05 km/s within +-2 km/s)
    that minimizes the rms; with ``same_norm`` both are first divided by
    their :func:`renormalize` envelope.
    """
    best = None
    for v in np.arange(-2.0, 2.001, 0.05):
        model, ref = _on_grid(lib_wave, lib_flux, ref_wave * (1.0 - v / 299792.458), ref_flux,
                              grid, same_norm)
        sel = slice(None) if mask is None else mask
        rms = float(np.sqrt(np.mean((model - ref)[sel] ** 2)))
        if best is None or rms < best[0]:
            best = (rms, float(np.sum(1.0 - model[sel]) / np.sum(1.0 - ref[sel])), float(v))
    return best


#: Starting points (T_eff / 1000, log g, [Fe/H]) of the chi^2 fit: the χ² valley is long
#: and shallow (T_eff, log g and [Fe/H] trade off), and single starts from the solar labels
#: stopped at points up to ~45 K / 0.06 dex apart with multi-threaded BLAS (rounding); the
#: lowest of these starts is kept.
_STARTS = ((5.772, 4.44, 0.0), (5.60, 4.20, -0.10), (5.95, 4.65, 0.10), (5.60, 4.65, 0.0),
           (5.95, 4.20, 0.0))


#: Half-width (Å) of the H beta core left out of the masked χ² fit: the Doppler core, formed
#: in the chromosphere and out of LTE, which no LTE library reproduces (the physics-v4 H beta
#: follows the Sun from 0.4 Å outwards; at R 11,000 the core spreads over +-0.3 Å).
_HBETA_CORE_AA = 0.5
_HBETA_AA = 4861.323


def _best_labels(lib, ref_wave, ref_flux, grid, velocity, starts=_STARTS, mask=None):
    """χ² best-fit (T_eff, log g, [Fe/H]) of ``lib`` against the reference, and the rms.

    `scipy.optimize.least_squares` from each of ``starts``; the solution with the
    lowest cost is returned.  ``mask`` (boolean over ``grid``) selects the fitted pixels.
    """
    ref = renormalize(grid, np.interp(grid, ref_wave * (1.0 - velocity / 299792.458),
                                      degrade(ref_wave, ref_flux, _R_REFERENCE, _R_COMPARE)))
    wave = lib.wavelength.value

    def resid(p):
        teff, logg, feh = p[0] * 1000.0, p[1], p[2]
        flux = lib.spectrum(teff, logg, feh, normalized=True).flux.value
        model = np.interp(grid, wave, degrade(wave, flux, 100_000.0, _R_COMPARE))
        diff = renormalize(grid, model) - ref
        return diff if mask is None else diff[mask]

    best = None
    for x0 in starts:
        fit = least_squares(resid, x0=list(x0), diff_step=[2e-3, 5e-3, 5e-3],
                            bounds=([4.0, 3.0, -1.0], [7.0, 5.5, 0.5]), x_scale=[0.1, 0.1, 0.05],
                            max_nfev=60)
        if best is None or fit.cost < best.cost:
            best = fit
    return best.x[0] * 1000.0, best.x[1], best.x[2], float(np.sqrt(np.mean(best.fun ** 2)))


#: Named regions of :func:`label_pulls`: H beta, Mg b and the strongest Fe I lines (their
#: cores and damping wings, +-1.2 Å at R 11,000).
_STRONG_FE = (5269.54, 5328.04, 5371.49, 5397.13, 5405.77, 5429.70, 5434.52, 5446.92,
              5455.61)
_PULL_REGIONS = (("H beta 4850-4875", ((4850.0, 4875.0),)),
                 ("Mg b 5165-5190", ((5165.0, 5190.0),)),
                 ("strong Fe I (9 lines, +-1.2 Å)", tuple((c - 1.2, c + 1.2) for c in _STRONG_FE)))
#: Finite-difference steps (T_eff K, log g dex, [Fe/H] dex) of :func:`label_pulls`.
_PULL_STEPS = (30.0, 0.05, 0.02)


def _model_on_grid(lib, grid, labels, envelope=None):
    wave = lib.wavelength.value
    flux = lib.spectrum(*labels, normalized=True).flux.value
    model = np.interp(grid, wave, degrade(wave, flux, 100_000.0, _R_COMPARE))
    if envelope is None:
        return renormalize(grid, model)
    return model / envelope


def _gauss_newton(lib, grid, ref, labels, steps, envelope=None):
    """Residual, central-difference Jacobian and the per-pixel Gauss-Newton pull at ``labels``."""
    resid = _model_on_grid(lib, grid, labels, envelope) - ref
    jac = np.empty((grid.size, 3))
    for k, h in enumerate(steps):
        up, down = list(labels), list(labels)
        up[k] += h
        down[k] -= h
        jac[:, k] = (_model_on_grid(lib, grid, up, envelope)
                     - _model_on_grid(lib, grid, down, envelope)) / (2.0 * h)
    inv = np.linalg.inv(jac.T @ jac)
    # pixel i's share of the step dx = -(J^T J)^-1 J^T r: the steps of all pixels add up to dx
    pull = -(jac * resid[:, None]) @ inv.T
    return resid, jac, pull


def label_pulls(lib, ref_wave, ref_flux, grid, velocity, labels=_SUN, steps=_PULL_STEPS,
                block=_BLOCK_AA, top=8):
    """Which pixels pull the χ² labels of ``lib`` off ``labels``: a Gauss-Newton split by region.

    At ``labels`` the residual ``r`` (renormalized library minus renormalized
    reference, R 11,000) and the central-difference label derivatives ``J`` give
    the Gauss-Newton step ``dx = -(J^T J)^-1 J^T r`` of the χ² fit of
    :func:`_best_labels`.  It is linear in the pixels, so it splits exactly into
    the contributions of disjoint regions: the named ones of ``_PULL_REGIONS``
    (H beta, Mg b, the strongest Fe I lines), then the remaining pixels by
    ``block`` Å window (the ``top`` largest by their T_eff pull, the rest
    summed).  Variants of the total step follow: with the envelope of the
    renormalization frozen at its value at ``labels`` (does the envelope's
    label dependence drive the step?), with the microturbulence fixed at its
    value at ``labels`` (does the vmicro relation's T_eff / log g dependence?),
    and with the reference shifted by +-0.3 km/s around ``velocity``.

    Parameters
    ----------
    lib : `remap.libraries.linelist.LineListLibrary`
        The library (its wavelength range must cover ``grid``).
    ref_wave, ref_flux : `numpy.ndarray`
        Reference spectrum (air Å, normalized flux) at its nominal R 47,000.
    grid : `numpy.ndarray`
        Comparison grid (Å).
    velocity : float
        Velocity (km/s) of the reference, as found by :func:`compare`.
    labels : tuple of float
        T_eff (K), log g, [Fe/H] at which to linearize.
    steps : tuple of float
        Finite-difference steps in the same units.
    block : float
        Window width (Å) of the unnamed pixels.
    top : int
        Number of windows listed individually.

    Returns
    -------
    rows : list of (str, float, float, float)
        Region name and its contribution to the T_eff (K), log g and [Fe/H] steps;
        the last row is the total step.
    variants : list of (str, float, float, float)
        Total step of each variant.
    """
    from remap.libraries.linelist import LineListLibrary

    def reference(v):
        return renormalize(grid, np.interp(grid, ref_wave * (1.0 - v / 299792.458),
                                           degrade(ref_wave, ref_flux, _R_REFERENCE,
                                                   _R_COMPARE)))

    ref = reference(velocity)
    _, _, pull = _gauss_newton(lib, grid, ref, labels, steps)
    free = np.ones(grid.size, bool)
    rows = []
    for name, spans in _PULL_REGIONS:
        sel = np.zeros(grid.size, bool)
        for lo, hi in spans:
            sel |= (grid >= lo) & (grid < hi)
        sel &= free
        free &= ~sel
        rows.append((name, *pull[sel].sum(axis=0)))
    windows = []
    for lo in np.arange(grid[0], grid[-1], block):
        sel = free & (grid >= lo) & (grid < lo + block)
        if sel.any():
            windows.append((f"other {lo:.0f}-{lo + block:.0f}", *pull[sel].sum(axis=0)))
    windows.sort(key=lambda row: -abs(row[1]))
    rows.extend(windows[:top])
    rest = np.array([row[1:] for row in windows[top:]]).reshape(-1, 3).sum(axis=0)
    rows.append((f"other, remaining {len(windows) - top} windows", *rest))
    rows.append(("total Gauss-Newton step", *pull.sum(axis=0)))

    variants = []
    wave = lib.wavelength.value
    flux = lib.spectrum(*labels, normalized=True).flux.value
    model = np.interp(grid, wave, degrade(wave, flux, 100_000.0, _R_COMPARE))
    envelope = model / renormalize(grid, model)
    _, _, p = _gauss_newton(lib, grid, ref, labels, steps, envelope=envelope)
    variants.append(("envelope frozen at the solar-label library's", *p.sum(axis=0)))
    vmicro = lib.vmicro_at(*labels)
    fixed = LineListLibrary(wave_range=lib.wavelength_range, linelist=lib.linelist,
                            physics=lib.physics, vmicro=vmicro)
    _, _, p = _gauss_newton(fixed, grid, ref, labels, steps)
    variants.append((f"vmicro fixed at {vmicro:.2f} km/s", *p.sum(axis=0)))
    for dv in (-0.3, 0.3):
        _, _, p = _gauss_newton(lib, grid, reference(velocity + dv), labels, steps)
        variants.append((f"reference velocity {velocity + dv:+.2f} km/s", *p.sum(axis=0)))
    return rows, variants


def _print_pulls(rows, variants, physics):
    total = rows[-1]
    print(f"chi2 label pulls at the solar labels ({physics}, calibrated): Gauss-Newton step "
          f"dx = -(J^T J)^-1 J^T r split by region (shares of the total step)")
    print(f"{'region':<46} {'dT_eff (K)':>11} {'share':>7} {'dlog g':>8} {'share':>7} "
          f"{'d[Fe/H]':>8}")
    for name, dt, dg, df in rows:
        print(f"{name:<46} {dt:>+11.1f} {100 * dt / total[1]:>6.0f}% {dg:>+8.3f} "
              f"{100 * dg / total[2]:>6.0f}% {df:>+8.3f}")
    for name, dt, dg, df in variants:
        print(f"  variant: {name:<36} {dt:>+11.1f} {'':>7} {dg:>+8.3f} {'':>7} {df:>+8.3f}")


def _speed(n):
    from remap.libraries.linelist import LineListLibrary
    from benchmarks.linelist import labels_for_benchmark, one_thread
    lib = LineListLibrary()
    labels = labels_for_benchmark(n)
    with one_thread()[0]:
        lib.spectrum(*labels[0])
        start = time.perf_counter()
        for row in labels:
            lib.spectrum(*row)
        elapsed = time.perf_counter() - start
    return n / elapsed, lib.wavelength.size


def _figure(path, ref_wave, ref_flux, spectra, velocity):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 1, figsize=(11, 7))
    for ax, (lo, hi, title) in zip(axes, ((4840.0, 4880.0, "H beta"),
                                          (5160.0, 5190.0, "Mg b"))):
        sel = (ref_wave > lo) & (ref_wave < hi)
        ax.plot(ref_wave[sel] * (1.0 - velocity / 299792.458), ref_flux[sel], color="k",
                lw=0.8, label="Sun (UVES, R ~ 47,000)")
        for (name, (wave, flux)), color in zip(spectra.items(),
                                               ("tab:blue", "tab:red", "tab:orange")):
            keep = (wave > lo) & (wave < hi)
            ax.plot(wave[keep], degrade(wave, flux, 100_000.0, _R_REFERENCE)[keep],
                    color=color, lw=0.8, label=f"linelist, {name}")
        ax.set_xlim(lo, hi)
        ax.set_title(f"{title}: library at 5772 K / 4.44 / 0.00 vs the Sun")
        ax.set_xlabel("air wavelength (Å)")
        ax.set_ylabel("normalized flux")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(quick=False):
    """Print the realism table (see the module docstring)."""
    from remap.libraries.calibrate import LOGGF_PRIORS, calibrate_linelist, read_reference
    from remap.libraries.linelist import PHYSICS, LineListLibrary
    path = reference_path()
    if not path.is_file():
        print(f"realism: skipped -- the solar reference spectrum {path} is absent (set "
              f"REMAP_SOLAR_SPECTRUM to a two-column normalized solar spectrum, air Å)")
        return
    ref_wave, ref_flux = read_reference(path)
    grid = np.arange(_RANGE[0], _RANGE[1] + 1e-9, _STEP)
    wr = (_RANGE[0] - 10.0, _RANGE[1] + 10.0) * u.AA
    spectra = {}
    rows = []
    velocities = {}
    for physics in PHYSICS:
        for name in ("laboratory", "calibrated"):
            lib = LineListLibrary(wave_range=wr, linelist=name, physics=physics)
            flux = lib.spectrum(*_SUN, normalized=True).flux.value
            if physics == PHYSICS[0] or (physics == PHYSICS[1] and name == "calibrated"):
                spectra[f"{name} ({physics})"] = (lib.wavelength.value, flux)
            rms, ratio, v = compare(lib.wavelength.value, flux, ref_wave, ref_flux, grid)
            raw = compare(lib.wavelength.value, flux, ref_wave, ref_flux, grid, same_norm=False)
            rows.append((f"{name} ({physics})", rms, float("nan"), ratio, v, raw))
            velocities[(physics, name)] = v
    if not quick:
        for prior in LOGGF_PRIORS:
            t0 = time.perf_counter()
            cal = calibrate_linelist(ref_wave, ref_flux, holdout=4, loggf_prior=prior)
            with tempfile.TemporaryDirectory() as tmp:
                csv = Path(tmp) / "holdout.csv"
                cal.write(csv)
                lib = LineListLibrary(wave_range=wr, linelist=str(csv))
                flux = lib.spectrum(*_SUN, normalized=True).flux.value
            windows = cal.holdout_windows
            held = np.zeros(grid.size, bool)
            for lo, hi in windows:
                held |= (grid >= lo) & (grid < hi)
            rms, _, v = compare(lib.wavelength.value, flux, ref_wave, ref_flux, grid)
            rms_h, ratio_h, _ = compare(lib.wavelength.value, flux, ref_wave, ref_flux, grid,
                                        mask=held)
            raw = compare(lib.wavelength.value, flux, ref_wave, ref_flux, grid, mask=held,
                          same_norm=False)
            rows.append((f"hold-out fit ({PHYSICS[0]}, {prior} log gf prior, "
                         f"{time.perf_counter() - t0:.0f} s)", rms, rms_h, ratio_h, v, raw))
    print(f"library at {_SUN[0]:.0f} K / {_SUN[1]} / {_SUN[2]:+.2f} vs the Sun ({path.name}), "
          f"R {_R_COMPARE:,.0f}, {_RANGE[0]:.0f}-{_RANGE[1]:.0f} Å, {_STEP} Å pixels")
    print(f"{'line list':<56} {'rms all':>8} {'rms held-out':>13} {'absorption':>11} "
          f"{'v (km/s)':>9} {'as given: rms':>14} {'absorption':>11}")
    for name, rms, rms_h, ratio, v, raw in rows:
        held_txt = "-" if np.isnan(rms_h) else f"{100 * rms_h:.2f} %"
        print(f"{name:<56} {100 * rms:>6.2f} % {held_txt:>13} {ratio:>11.3f} {v:>+9.2f} "
              f"{100 * raw[0]:>12.2f} % {raw[1]:>11.3f}")
    print("(both spectra divided by the same upper envelope, 95th percentile per 25 Å; 'as "
          "given': without it; absorption: summed 1 - flux of the library over the "
          "reference's, in the held-out windows for the hold-out fit; targets: rms held-out "
          "<= 1.0 %, absorption within 3 %)")

    no_core = np.abs(grid - _HBETA_AA) >= _HBETA_CORE_AA
    for physics in PHYSICS:
        lib = LineListLibrary(wave_range=wr, physics=physics)
        velocity = velocities[(physics, "calibrated")]
        for mask, what in ((None, "all pixels"),
                           (no_core, f"H beta core +-{_HBETA_CORE_AA} Å masked")):
            teff, logg, feh, rms = _best_labels(lib, ref_wave, ref_flux, grid, velocity,
                                                mask=mask)
            print(f"chi2 best-fit labels of the calibrated library ({physics}, {what}): T_eff "
                  f"{teff:.0f} K ({teff - _SUN[0]:+.0f}), log g {logg:.2f} "
                  f"({logg - _SUN[1]:+.2f}), [Fe/H] {feh:+.2f} ({feh - _SUN[2]:+.2f}); rms "
                  f"{100 * rms:.2f} % (target: within 50 K / 0.1 / 0.05)")
    velocity = velocities[(PHYSICS[0], "calibrated")]
    lib = LineListLibrary(wave_range=wr, physics=PHYSICS[0])
    _print_pulls(*label_pulls(lib, ref_wave, ref_flux, grid, velocity), PHYSICS[0])
    rate, npix = _speed(8 if quick else 30)
    print(f"synthesis speed: {rate:.1f} spectra/s on one core (R 100,000, 4800-5800 Å, "
          f"{npix:,} pixels, physics {PHYSICS[0]}; target >= 20)")
    fig = _ROOT / "benchmarks" / "results" / "realism" / "realism.png"
    _figure(fig, ref_wave, ref_flux, spectra, velocity)
    print(f"figure: {fig}")
    choice = os.environ.get("REMAP_REALISM_MODEL", "1")
    if choice == "0":
        print("default model rows skipped (REMAP_REALISM_MODEL=0)")
        return
    model = None
    if choice != "1":
        model = Path(choice)
        if not (model / "manifest.json").is_file():
            print(f"model rows skipped: REMAP_REALISM_MODEL={choice!r} is neither 0, 1 nor "
                  f"a model artifact folder (no manifest.json)")
            return
    _model_rows(path, quick, model)


def _model_rows(path, quick, model=None):
    """The default model on the real Sun through remap.fit, as an observer would give it."""
    from benchmarks._solar import SUN, fit_sun

    seeds = (0, 1, 2) if quick else tuple(range(10))
    cases = [
        ("R 11,000, 0.1 Å pixels, SNR 100 (MARVELS-like)", 100.0,
         dict(degrade_to=11_000, grid_step=0.1), {}),
        ("R 11,000, 0.1 Å pixels, SNR 50", 50.0, dict(degrade_to=11_000, grid_step=0.1), {}),
        ("native R 47,000 declared, 0.01 Å, SNR 100", 100.0, {}, {}),
        ("native R 47,000, not declared (estimated)", 100.0, dict(declare_resolution=False),
         {}),
        ("R 11,000, 0.1 Å, SNR 100, shifted +20.6 km/s", 100.0,
         dict(degrade_to=11_000, grid_step=0.1, shift=20.6), {}),
        ("R 11,000, 0.1 Å, SNR 100, 4977-5760 Å only", 100.0,
         dict(degrade_to=11_000, grid_step=0.1, wave_range=(4977.0, 5760.0)), {}),
    ]
    which = "default model" if model is None else f"model {model}"
    print(f"{which} on the Sun ({path.name}) through remap.fit, {len(seeds)} noise draws; "
          f"median of the medians, [min, max]; labels {SUN['teff']:.0f} / {SUN['logg']} / "
          f"{SUN['feh']:+.2f} (target: within 50 K / 0.1 / 0.05, no FAR_FROM_TRAINING)")
    print(f"{'input':<48} {'dT_eff (K)':>18} {'dlog g':>18} {'d[Fe/H]':>18} {'rv':>7}  flags")
    for name, snr, observe, options in cases:
        rows = fit_sun(model, snr=snr, seeds=seeds, fit_options=options, **observe)
        cols = []
        for p, fmt in (("teff", "{:+.0f}"), ("logg", "{:+.2f}"), ("feh", "{:+.2f}")):
            d = np.array([r[f"d{p}"] for r in rows])
            cols.append(f"{fmt.format(np.median(d))} [{fmt.format(d.min())},"
                        f"{fmt.format(d.max())}]")
        rv = np.median([r.get("rv", np.nan) for r in rows])
        flags = sorted({f for r in rows for f in r["flags"].split(",") if f != "-"})
        n_flagged = sum(r["flags"] != "-" for r in rows)
        print(f"{name:<48} {cols[0]:>18} {cols[1]:>18} {cols[2]:>18} {rv:>+7.2f}  "
              f"{n_flagged}/{len(rows)} {','.join(flags) or '-'}")
