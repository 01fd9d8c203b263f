"""remap's built-in continuum fitters, registered like any third-party plugin.

Listed as ``("continuum", "remap.continuum.plugin")`` in
:data:`remap.plugins.manager.BUILTIN_PLUGINS`; block it with
``REMAP_BLOCK_PLUGINS=continuum``.
"""

from __future__ import annotations

from ..plugins.hookspecs import hookimpl
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
        The classes are the factories: ``remap.get_continuum_fitter("clipped",
        degree=5)`` calls ``Clipped(degree=5)``.
    """
    return [Algorithm1, Chebyshev, Clipped]
