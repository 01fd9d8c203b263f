"""Threads for remap's compiled kernels: one process-wide pool, rows split between them.

The numba kernels (`remap._util.jit`) release the GIL; :func:`over_rows`
splits a kernel's rows between the threads of one process-wide pool
(`concurrent.futures.ThreadPoolExecutor`, one thread per usable core, or
``REMAP_NUM_THREADS``), and :func:`n_threads` is also the ``workers`` of the
FFTs (`scipy.fft`).  Python threads rather than numba's ``parallel=True``:
a pool of threads is safe whatever threading layer numba finds (its
``workqueue`` layer aborts the process when two threads -- e.g. two Dask
tasks -- launch parallel kernels at once) and composes with the callers' own
threads.  This module does not import numba.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading

__all__ = ["n_threads", "over_rows", "share", "WARNINGS_LOCK"]

_POOL = None
_LOCAL = threading.local()
_POOL_LOCK = threading.Lock()

#: Held around remap's ``warnings.catch_warnings`` blocks that may run while
#: `remap.fit_iter` fits two chunks at once: the block changes the
#: process-wide warning filters, and two interleaved blocks would leave the
#: wrong ones behind.
WARNINGS_LOCK = threading.RLock()


def _configured() -> int:
    """``REMAP_NUM_THREADS`` if set, else the usable cores (the size of the pool)."""
    value = os.environ.get("REMAP_NUM_THREADS")
    if value is not None:
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"REMAP_NUM_THREADS must be a positive integer; received "
                             f"{value!r}")
        return count
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def n_threads() -> int:
    """Threads :func:`over_rows` uses: ``REMAP_NUM_THREADS`` if set, else the usable cores,
    at most the calling thread's share (:func:`share`).

    Raises
    ------
    ValueError
        If ``REMAP_NUM_THREADS`` is not a positive integer.
    """
    count = _configured()
    cap = getattr(_LOCAL, "cap", None)
    return count if cap is None else max(min(count, cap), 1)


@contextlib.contextmanager
def share(parts: int):
    """Within the block, the calling thread's kernels use ``1 / parts`` of the threads.

    For callers that run ``parts`` kernel-heavy jobs at once in threads of
    their own (`remap.fit_iter`'s chunks in flight): each job's kernels then
    split their rows between ``n_threads() // parts`` threads (at least one:
    in the calling thread itself), instead of every job asking the pool for
    all of them.  Thread-local; the results do not depend on it.  With
    ``parts > 1`` the BLAS of numpy and scipy (process-wide, through
    `threadpoolctl`) is capped the same way while any such block runs: two
    jobs each running a two-thread BLAS on two cores lose more to
    synchronisation than they gain (``python -m benchmarks fit``: about 1.15x
    with the cap).
    """
    previous = getattr(_LOCAL, "cap", None)
    cap = max(_configured() // max(int(parts), 1), 1)
    _LOCAL.cap = cap
    capped = int(parts) > 1
    if capped:
        _blas_enter(cap)
    try:
        yield
    finally:
        _LOCAL.cap = previous
        if capped:
            _blas_exit()


_BLAS_LOCK = threading.Lock()
_BLAS = {"count": 0, "limiter": None}


def _blas_enter(n):
    """First of overlapping `share` blocks: cap the BLAS threads at ``n`` (refcounted)."""
    with _BLAS_LOCK:
        if _BLAS["count"] == 0:
            try:
                from threadpoolctl import threadpool_limits
                _BLAS["limiter"] = threadpool_limits(limits=int(n), user_api="blas")
            except ImportError:  # pragma: no cover - a dependency, but stay usable
                _BLAS["limiter"] = None
        _BLAS["count"] += 1


def _blas_exit():
    """Last of overlapping `share` blocks: restore the BLAS threads."""
    with _BLAS_LOCK:
        _BLAS["count"] -= 1
        if _BLAS["count"] == 0 and _BLAS["limiter"] is not None:
            _BLAS["limiter"].restore_original_limits()
            _BLAS["limiter"] = None


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=max(_configured(), 1),
                                                          thread_name_prefix="remap-kernel")
        return _POOL


def _forget_pool():   # a forked child does not inherit the pool's threads
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def over_rows(kernel, n: int, *args, min_rows: int = 8) -> None:
    """Call ``kernel(r0, r1, *args)`` on consecutive row ranges covering ``0 .. n``, in threads.

    The rows are split into one range per thread (:func:`n_threads`, at most
    one per ``min_rows`` rows); with one range the kernel runs in the calling
    thread.  ``kernel`` must be a compiled function that releases the GIL and
    writes only the rows it is given.  An exception in any range is raised
    after all ranges have finished.
    """
    parts = min(n_threads(), max(int(n) // int(min_rows), 1))
    if parts <= 1:
        kernel(0, int(n), *args)
        return
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    futures = [_pool().submit(kernel, bounds[i], bounds[i + 1], *args) for i in range(parts)]
    concurrent.futures.wait(futures)
    for f in futures:
        f.result()
