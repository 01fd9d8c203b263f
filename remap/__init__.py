"""remap: probabilistic stellar parameters from spectra with deep-REMAP.

The public API is re-exported here; importing remap has no side effects other
than registering the ``remap-beam`` specutils reader/writer.  Plugins are
loaded on first use (see :mod:`remap.plugins`).
"""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - source tree without a build
    __version__ = "0.0.0+unknown"

from .hookspecs import hookimpl, hookspec
from .exceptions import (RemapError, PluginError, UnknownPluginError, DuplicatePluginError,
                         SpectrumError, NoOverlapError)
from .plugins import (get_plugin_manager, get_survey, get_continuum_fitter, get_library,
                      get_head, list_surveys, list_continuum_fitters, list_libraries,
                      list_heads, plugin_infos)
from .spectra import prepare
from .continuum import normalize
from .artifact import load_model
from . import io  # noqa: F401  registers the "remap-beam" specutils format

__all__ = ["__version__", "hookimpl", "hookspec", "RemapError", "PluginError",
           "UnknownPluginError", "DuplicatePluginError", "SpectrumError", "NoOverlapError",
           "get_plugin_manager", "get_survey", "get_continuum_fitter", "get_library",
           "get_head", "list_surveys", "list_continuum_fitters", "list_libraries",
           "list_heads", "plugin_infos", "prepare", "normalize", "load_model"]
