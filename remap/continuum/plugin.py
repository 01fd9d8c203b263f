"""remap's built-in continuum fitters, registered like any third-party plugin.

Declared in remap's ``setup.cfg`` under the entry-point group ``remap.plugins``
as ``continuum = remap.continuum.plugin``.
"""

from __future__ import annotations

from ..hookspecs import hookimpl
from .algorithm1 import Algorithm1
from .chebyshev import Chebyshev
from .clipped import Clipped

__all__ = ["remap_continuum_fitters"]


@hookimpl
def remap_continuum_fitters():
    """Register ``algorithm1`` (the default), ``chebyshev`` and ``clipped``.

    Returns
    -------
    fitters : list of `remap.continuum.ContinuumFitter` subclasses
    """
    return [Algorithm1, Chebyshev, Clipped]
