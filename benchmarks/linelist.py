"""Speed of the built-in ``linelist`` synthesizer: spectra per second on one core.

Times single-spectrum calls (``LineListLibrary.spectrum``) and one batch call
(``LineListLibrary.spectra``) over 4800-5800 Å at R = 100,000 (3 pixels per
resolution element, 56,773 pixels), for labels spread over the whole domain,
for both accuracy paths:

* ``fast`` -- the default (tabulated Voigt cores, far damping wings on a coarse
  grid, float32 line-opacity exponentials);
* ``high`` -- the reference path (`scipy.special.voigt_profile` at every core
  pixel, every wing pixel exact), i.e. the synthesis as it was before the
  fast path existed.

Both run in the same process on the same labels, interleaved spectrum by
spectrum (single mode), so the speed-up column is robust against other load on
the machine; the table also gives the largest difference between the two
paths' normalized fluxes.  BLAS/OpenMP pools are pinned to one thread
(environment variables set before numpy is imported, when this module is the
first to import it, and threadpoolctl when installed); the line reports what
was possible.  Run with ``python -m benchmarks linelist [--quick]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import contextlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

__all__ = ["labels_for_benchmark", "one_thread", "main"]


def labels_for_benchmark(n):
    """``n`` labels (teff, logg, feh, alpha) on a fixed quasi-random pattern over the domain."""
    # golden-ratio (Kronecker) sequence: deterministic, evenly spread, no RNG
    phi = np.array([0.7548776662466927, 0.5698402909980532, 0.4245692059180913])
    frac = np.mod(0.5 + np.outer(np.arange(1, n + 1), phi), 1.0)
    teff = 3000.0 + 4000.0 * frac[:, 0]
    logg = 1.0 + 4.5 * frac[:, 1]
    feh = -2.0 + 3.0 * frac[:, 2]
    return np.column_stack([teff, logg, feh, np.zeros(n)])


def one_thread():
    """A context manager limiting BLAS/OpenMP pools to one thread, and a description.

    Returns
    -------
    context : context manager
        ``threadpoolctl.threadpool_limits(1)`` when threadpoolctl is
        installed, else a no-op (the environment variables set at import then
        apply if numpy was first imported by this module).
    how : str
        What pins the threads.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        env = ", ".join(f"{v}={os.environ.get(v)}" for v in names)
        return contextlib.nullcontext(), f"env {env} (threadpoolctl not installed)"
    return threadpool_limits(1), "threadpoolctl limit 1"


def _time_single(libs, labels):
    """Seconds per library for spectrum() over the labels, interleaved label by label."""
    total = dict.fromkeys(libs, 0.0)
    for row in labels:
        for key, lib in libs.items():
            start = time.perf_counter()
            lib.spectrum(*row)
            total[key] += time.perf_counter() - start
    return total


def main(quick=False):
    """Run the benchmark and print its table.

    Parameters
    ----------
    quick : bool
        Time 4 spectra per mode instead of 24.

    Returns
    -------
    rows : list of tuple
        ``(accuracy, mode, n_spectra, seconds, spectra_per_second, speedup)``
        where ``speedup`` is the reference (``high``) time over this row's
        time for the same mode.
    """
    from remap.libraries.linelist import LineListLibrary

    context, how = one_thread()
    with context:
        t0 = time.perf_counter()
        libs = {"fast": LineListLibrary(), "high": LineListLibrary(accuracy="high")}
        setup = time.perf_counter() - t0
        n = 4 if quick else 24
        labels = labels_for_benchmark(n)
        for lib in libs.values():
            lib.spectrum(*labels[0])              # warm caches (atomic data, Voigt table)
        single = _time_single(libs, labels)
        batch = {}
        for key, lib in libs.items():
            start = time.perf_counter()
            spectra = lib.spectra(labels, normalized=True)
            batch[key] = (time.perf_counter() - start, spectra.flux.value)
        max_diff = float(np.max(np.abs(batch["fast"][1] - batch["high"][1])))
    rows = []
    for key in libs:
        for mode, seconds, ref in (("single", single[key], single["high"]),
                                   ("batch", batch[key][0], batch["high"][0])):
            rows.append((key, mode, n, seconds, n / seconds, ref / seconds))
    lib = libs["fast"]
    print(f"linelist: 4800-5800 Å, R = {lib.resolution:.0f}, {lib.wavelength.size} pixels, "
          f"{lib._l_lam.size} lines; setup {setup * 1e3:.0f} ms (both libraries); "
          f"one thread: {how}")
    print(f"{'accuracy':<9} {'mode':<7} {'n':>4} {'seconds':>9} {'spectra/s':>10} "
          f"{'vs high':>8}")
    for key, mode, count, seconds, rate, speedup in rows:
        print(f"{key:<9} {mode:<7} {count:>4d} {seconds:>9.3f} {rate:>10.2f} {speedup:>7.2f}x")
    print(f"max |fast - high| normalized flux over the {n} spectra: {max_diff:.1e} "
          f"(tested bound 1e-3)")
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
