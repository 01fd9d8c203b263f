"""Continuum fitting and normalization.

:func:`normalize` divides a spectrum (or a batch) by its fitted continuum.  The
fitters are strategy objects derived from `ContinuumFitter` and registered as
plugins (hook ``remap_continuum_fitters``); the built-in ones are

``algorithm1``
    Algorithm 1 of Gilda (2025), the paper's routine and remap's default, in a
    batch-vectorized ``fast`` mode and a literal ``faithful`` mode
    (`Algorithm1`).
``chebyshev``
    specutils' `~specutils.fitting.fit_generic_continuum` (`Chebyshev`), a
    familiar baseline.
``clipped``
    An asymmetrically sigma-clipped Legendre polynomial (`Clipped`), more
    accurate and faster than ``algorithm1`` on remap's benchmark
    (``python -m benchmarks continuum``).
"""

from .base import ContinuumError, ContinuumFitter
from .algorithm1 import Algorithm1
from .chebyshev import Chebyshev
from .clipped import Clipped
from .normalization import normalize, DEFAULT_FITTER

__all__ = ["ContinuumFitter", "ContinuumError", "Algorithm1", "Chebyshev", "Clipped",
           "normalize", "DEFAULT_FITTER"]
