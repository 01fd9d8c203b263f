"""The numba boundary: compile remap's array kernels, with an on-disk cache where possible.

Importing numba costs about a second, so the kernel modules that import it
(``remap.continuum._kernel``, ``remap.surveys._spike_kernel``) are imported
by their callers on first use, like TensorFlow.  :func:`njit` compiles with
``cache=True`` when numba can find a writable cache directory (next to the
source, else the user cache directory, e.g. ``~/.cache/numba``; or
``NUMBA_CACHE_DIR``) and without a cache otherwise, so a read-only install
still works (it compiles in every new process, a few seconds).

The kernels release the GIL (``nogil=True``), so that
:func:`remap._util.threads.over_rows` can split their rows between threads.
"""

from __future__ import annotations

import numba

__all__ = ["njit", "uidx"]


def njit(func):
    """Compile ``func`` in nopython mode, cached on disk when a cache directory is writable.

    Floating-point division follows IEEE 754 as in NumPy (``error_model="numpy"``:
    ``x / 0.0`` is ``inf`` or ``nan``, not an exception), which the kernels rely on.

    Parameters
    ----------
    func : callable
        A function numba can compile in nopython mode.

    Returns
    -------
    dispatcher : `numba.core.registry.CPUDispatcher`
    """
    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy")(func)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(cache=False, nogil=True, error_model="numpy")(func)


@numba.njit(inline="always")
def uidx(i):
    """``i`` as an unsigned index (inside kernels).

    numba wraps negative indices around as Python does, with a sign test on
    every access whose index it cannot prove non-negative (bounds or indices
    read from arrays, ``i + offset``...); in a hot loop that test keeps LLVM
    from vectorizing it.  Indexing with ``uidx(i)`` drops the test (the index
    must be non-negative).
    """
    return numba.uint64(i)
