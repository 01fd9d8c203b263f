"""Speed of the built-in ``linelist`` synthesizer: spectra per second on one core.

Times single-spectrum calls (``LineListLibrary.spectrum``) and one batch call
(``LineListLibrary.spectra``) over 4800-5800 Å at R = 100,000 (3 pixels per
resolution element, 56,773 pixels), for labels spread over the whole domain,
and prints a table.  Run with ``python -m benchmarks linelist [--quick]``.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["labels_for_benchmark", "main"]


def labels_for_benchmark(n):
    """``n`` labels (teff, logg, feh, alpha) on a fixed quasi-random pattern over the domain."""
    # golden-ratio (Kronecker) sequence: deterministic, evenly spread, no RNG
    phi = np.array([0.7548776662466927, 0.5698402909980532, 0.4245692059180913])
    frac = np.mod(0.5 + np.outer(np.arange(1, n + 1), phi), 1.0)
    teff = 3000.0 + 4000.0 * frac[:, 0]
    logg = 1.0 + 4.5 * frac[:, 1]
    feh = -2.0 + 3.0 * frac[:, 2]
    return np.column_stack([teff, logg, feh, np.zeros(n)])


def main(quick=False):
    """Run the benchmark and print its table.

    Parameters
    ----------
    quick : bool
        Time 4 spectra instead of 24.

    Returns
    -------
    rows : list of tuple
        ``(mode, n_spectra, seconds, spectra_per_second)``.
    """
    from remap.libraries.linelist import LineListLibrary

    t0 = time.perf_counter()
    lib = LineListLibrary()
    setup = time.perf_counter() - t0
    n = 4 if quick else 24
    labels = labels_for_benchmark(n)
    lib.spectrum(*labels[0])                      # warm caches (atomic data, imports)
    rows = []
    t0 = time.perf_counter()
    for row in labels:
        lib.spectrum(*row)
    dt = time.perf_counter() - t0
    rows.append(("single", n, dt, n / dt))
    t0 = time.perf_counter()
    lib.spectra(labels)
    dt = time.perf_counter() - t0
    rows.append(("batch", n, dt, n / dt))
    print(f"linelist: 4800-5800 Å, R = {lib.resolution:.0f}, {lib.wavelength.size} pixels, "
          f"{lib._l_lam.size} lines; setup {setup * 1e3:.0f} ms")
    print(f"{'mode':<8} {'n':>4} {'seconds':>9} {'spectra/s':>10}")
    for mode, count, seconds, rate in rows:
        print(f"{mode:<8} {count:>4d} {seconds:>9.3f} {rate:>10.2f}")
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
