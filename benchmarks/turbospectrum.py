"""The fast ``linelist`` library against Turbospectrum (the optional ``turbospectrum`` library).

At a handful of label points (the Sun 5772/4.44/0.00, a hotter and a cooler
dwarf, a metal-poor dwarf) both libraries synthesize 4850-5750 Å (air) at
R = 11,000; each spectrum is resampled to 0.1 Å and divided by the same
upper envelope (``benchmarks.realism.renormalize``: the 95th percentile of
every 25 Å, interpolated), and the table gives the rms of ``linelist -
turbospectrum`` for the ``linelist`` library's calibrated (default) and
laboratory line data, and the wall time of each Turbospectrum spectrum on
one core.  The last rows compare both libraries at the solar labels with the
real Sun (the UVES spectrum of ``../shared/data``, read by
``benchmarks._solar``; degraded from R 47,000 to 11,000, the best velocity
within +-2 km/s).

Needs the Turbospectrum executables, its DATA, the Gaia-ESO line list and
atmosnet (see ``remap.libraries.turbospectrum``); it prints why and stops
when one is missing.  Every spectrum is computed afresh (a temporary cache).
``--quick``: 5150-5200 Å and two label points.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from astropy import units as u  # noqa: E402

from benchmarks._solar import SOLAR_RESOLUTION, SUN, load_solar_reference, solar_reference_path  # noqa: E402,E501
from benchmarks.realism import degrade, renormalize  # noqa: E402

__all__ = ["main", "POINTS", "compare_libraries"]

#: Label points (name, T_eff, log g, [Fe/H]).
POINTS = (("Sun", SUN["teff"], SUN["logg"], SUN["feh"]),
          ("hot dwarf", 6400.0, 4.30, 0.0),
          ("cool dwarf", 5000.0, 4.60, 0.0),
          ("metal-poor dwarf", 5800.0, 4.40, -1.0))

_RANGE = (4850.0, 5750.0)
_QUICK_RANGE = (5150.0, 5200.0)
_R = 11_000.0
_STEP = 0.1
_SAMPLING = 14.0            # linelist pixels per resolution element (R * sampling >= 150,000)
_EDGE = 10.0                # Å synthesized beyond the compared range on each side


def _on_grid(wave, flux, grid):
    return renormalize(grid, np.interp(grid, wave, flux))


def compare_libraries(ts, libs, points, grid):
    """Rows ``(name, labels, {linelist name: rms}, Turbospectrum seconds)`` and the TS spectra."""
    rows, spectra = [], {}
    for name, teff, logg, feh in points:
        start = time.perf_counter()
        spec = ts.spectrum(teff, logg, feh, normalized=True)
        seconds = time.perf_counter() - start
        ref = _on_grid(spec.spectral_axis.to_value(u.AA), spec.flux.value, grid)
        spectra[name] = ref
        rms = {}
        for key, lib in libs.items():
            other = lib.spectrum(teff, logg, feh, normalized=True)
            model = _on_grid(other.spectral_axis.to_value(u.AA), other.flux.value, grid)
            rms[key] = float(np.sqrt(np.mean((model - ref) ** 2)))
        rows.append((name, (teff, logg, feh), rms, seconds))
    return rows, spectra


def _versus_sun(grid, model):
    """rms of a renormalized R 11,000 spectrum on ``grid`` against the real Sun (best velocity)."""
    wave, flux = load_solar_reference()
    sel = (wave > grid[0] - 20.0) & (wave < grid[-1] + 20.0)
    wave, flux = wave[sel], degrade(wave[sel], flux[sel], SOLAR_RESOLUTION, _R)
    best = None
    for v in np.arange(-2.0, 2.001, 0.1):
        ref = _on_grid(wave * (1.0 - v / 299792.458), flux, grid)
        rms = float(np.sqrt(np.mean((model - ref) ** 2)))
        if best is None or rms < best[0]:
            best = (rms, float(v))
    return best


def main(quick=False):
    """Print the comparison table (see the module docstring)."""
    from remap.libraries.linelist import LineListLibrary
    from remap.libraries.turbospectrum import TurbospectrumLibrary, TurbospectrumNotFoundError

    lo, hi = _QUICK_RANGE if quick else _RANGE
    points = POINTS[:2] if quick else POINTS
    wr = (lo - _EDGE, hi + _EDGE) * u.AA
    grid = np.arange(lo, hi + 1e-9, _STEP)
    with tempfile.TemporaryDirectory(prefix="remap-bench-ts-") as cache:
        try:
            ts = TurbospectrumLibrary(resolution=_R, wave_range=wr, cache_dir=cache)
        except TurbospectrumNotFoundError as exc:
            print(f"turbospectrum: skipped -- {exc}")
            return
        libs = {kind: LineListLibrary(resolution=_R, sampling=_SAMPLING, wave_range=wr,
                                      linelist=kind)
                for kind in ("calibrated", "laboratory")}
        print(f"turbospectrum vs linelist, {lo:g}-{hi:g} Å, R {_R:,.0f}, both renormalized "
              f"on a {_STEP} Å grid; Turbospectrum step {ts.step} Å, atmosnet atmospheres, "
              f"Gaia-ESO lines")
        rows, spectra = compare_libraries(ts, libs, points, grid)
    print(f"{'label point':<18} {'Teff':>6} {'logg':>5} {'[Fe/H]':>6}  "
          f"{'rms calibrated':>14} {'rms laboratory':>14}  {'TS s/spectrum':>13}")
    for name, (teff, logg, feh), rms, seconds in rows:
        print(f"{name:<18} {teff:6.0f} {logg:5.2f} {feh:+6.2f}  {100 * rms['calibrated']:13.2f}% "
              f"{100 * rms['laboratory']:13.2f}%  {seconds:13.1f}")
    if solar_reference_path() is None:
        print("real Sun: skipped -- ../shared/data/solar_uves_norm.txt (or "
              "$REMAP_SOLAR_REFERENCE) is absent")
        return
    print(f"\nagainst the real Sun (UVES, R {SOLAR_RESOLUTION:,.0f} -> {_R:,.0f}, best velocity), "
          f"solar labels:")
    print(f"{'library':<26} {'rms':>7} {'v (km/s)':>9}")
    sun = POINTS[0]
    entries = [("turbospectrum", spectra[sun[0]])]
    for key, lib in libs.items():
        spec = lib.spectrum(*sun[1:], normalized=True)
        entries.append((f"linelist ({key})",
                        _on_grid(spec.spectral_axis.to_value(u.AA), spec.flux.value, grid)))
    for name, model in entries:
        rms, v = _versus_sun(grid, model)
        print(f"{name:<26} {100 * rms:6.2f}% {v:+9.2f}")
