"""Spike-finding benchmark: the compiled kernel against the SciPy formulation, same flags.

Spectra are made with `remap.testing.make_test_spectra` (MARVELS-beam-A-like:
4,300 pixels of 0.1 Å) at SNR 50, 100 and 200, and narrow flat-topped spikes
(1-6 pixels, 5-50 sigma above the continuum; seeded) are added to each.
:func:`remap.surveys.base.find_spikes` flags them twice on the same batch,
with the uncertainty given (``stddev``) and without it (the running noise
estimate):

* ``kernel`` — the compiled path that ``find_spikes`` takes;
* ``scipy`` — the former formulation (grey opening, running percentile and
  median filters, binary propagation: ``reference=True`` of the private
  helpers ``_spike_sigma`` and ``_spike_flags``).

The table gives spectra per second and milliseconds per spectrum of each
(best of a few alternating runs: the machine's load varies), the number of
pixels flagged, whether the two flag arrays are identical, and the fraction of
the injected spike pixels found.  A two-beam MARVELS star is two rows (beam A,
4,300 pixels, and beam B, 4,700).
"""

from __future__ import annotations

import time

import numpy as np

from remap.surveys.base import _spike_flags, _spike_sigma, find_spikes
from remap.testing import make_test_spectra

__all__ = ["SNRS", "make_spiky", "run", "main"]

#: Signal-to-noise ratios benchmarked.
SNRS = (50, 100, 200)

_OPTIONS = {"max_width": 6, "nsigma": 5.0, "grow_nsigma": 2.0, "window": 101,
            "percentile": 85.0}


def make_spiky(n, snr, seed, per_spectrum=5):
    """``n`` test spectra with ``per_spectrum`` injected spikes each.

    Returns
    -------
    flux, sigma, injected : ndarray, shape (n, 4300)
        Flux, its standard deviation and the injected spike pixels.
    """
    spectra, truth = make_test_spectra(n, snr=snr, seed=seed)
    flux = spectra.flux.value.copy()
    sigma = truth / snr
    injected = np.zeros(flux.shape, dtype=bool)
    rng = np.random.default_rng(seed)
    for i in range(n):
        for _ in range(per_spectrum):
            p = int(rng.integers(60, flux.shape[1] - 60))
            width = int(rng.integers(1, 7))
            flux[i, p:p + width] += rng.uniform(5, 50) * sigma[i, p]
            injected[i, p:p + width] = True
    return flux, sigma, injected


def _scipy(flux, stddev):
    mask = np.zeros(flux.shape, dtype=bool)
    sigma = _spike_sigma(flux, stddev, mask, _OPTIONS["window"], reference=True)
    return _spike_flags(flux, sigma, reference=True, **_OPTIONS)


def _kernel(flux, stddev):
    return find_spikes(flux, stddev=stddev, **_OPTIONS)


def run(n=256, seed=2025, repeats=3):
    """Run the benchmark; one result row per (SNR, noise input, implementation).

    Parameters
    ----------
    n : int
        Spectra per SNR.
    seed : int
        Seed of the spectra (SNR ``s`` uses ``seed + s``).
    repeats : int
        Alternating timed runs of each implementation (the best is kept).

    Returns
    -------
    rows : list of dict
        Keys ``snr``, ``noise`` ("stddev" or "estimated"), ``method``, ``n``,
        ``rate`` (spectra per second), ``flagged``, ``identical`` (flags equal
        to the SciPy formulation's) and ``recovered`` (fraction of the injected
        spike pixels flagged).
    """
    warm, sigma, _ = make_spiky(2, 100, seed)
    _kernel(warm, sigma)  # load (or compile) the kernels outside the timing
    _kernel(warm, None)
    rows = []
    for snr in SNRS:
        flux, sigma, injected = make_spiky(n, snr, seed + snr)
        for noise, stddev in (("stddev", sigma), ("estimated", None)):
            flags, best = {}, {}
            for _ in range(repeats):
                for method, fn in (("kernel", _kernel), ("scipy", _scipy)):
                    start = time.perf_counter()
                    flags[method] = fn(flux, stddev)
                    elapsed = time.perf_counter() - start
                    best[method] = min(best.get(method, np.inf), elapsed)
            for method in ("kernel", "scipy"):
                rows.append({"snr": snr, "noise": noise, "method": method, "n": n,
                             "rate": n / best[method], "flagged": int(flags[method].sum()),
                             "identical": bool(np.array_equal(flags[method], flags["scipy"])),
                             "recovered": float(flags[method][injected].mean())})
    return rows


def main(quick=False):
    """Print the benchmark table (``quick``: 32 spectra per SNR, 2 runs)."""
    rows = run(n=32, repeats=2) if quick else run()
    print(f"{'SNR':>4} {'noise':<10} {'method':<7} {'n':>5} {'spectra/s':>10} "
          f"{'ms/spectrum':>12} {'flagged':>8} {'identical':>9} {'recovered':>9}")
    for r in rows:
        print(f"{r['snr']:>4} {r['noise']:<10} {r['method']:<7} {r['n']:>5} {r['rate']:>10.1f} "
              f"{1e3 / r['rate']:>12.3f} {r['flagged']:>8} {str(r['identical']):>9} "
              f"{100 * r['recovered']:>8.1f}%")
    print()
    for snr in SNRS:
        for noise in ("stddev", "estimated"):
            by = {r["method"]: r for r in rows if r["snr"] == snr and r["noise"] == noise}
            print(f"SNR {snr}, {noise} noise: kernel/scipy throughput = "
                  f"{by['kernel']['rate'] / by['scipy']['rate']:.1f}x, flags identical: "
                  f"{by['kernel']['identical']}")
    return rows
