"""remap: probabilistic stellar parameters from spectra with deep-REMAP.

The public API is re-exported here; importing remap has no side effects other
than registering the ``remap-beam`` specutils reader/writer.  Plugins are
loaded on first use (see :mod:`remap.plugins`).
"""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - source tree without a build
    __version__ = "0.0.0+unknown"

from .plugins.hookspecs import hookimpl, hookspec
from .exceptions import (RemapError, PluginError, UnknownPluginError, DuplicatePluginError,
                         SpectrumError, NoOverlapError, SpectrumFileError, OutputError,
                         MediumAssumedWarning)
from .plugins import (get_plugin_manager, get_survey, get_continuum_fitter, get_library,
                      get_head, list_surveys, list_continuum_fitters, list_libraries,
                      list_heads, plugin_infos)
from .spectra.validation import prepare
from .continuum import normalize
from .model.loading import load_model
from .spectra import io  # noqa: F401  registers the "remap-beam" specutils format
from .spectra.readers import read_spectrum  # registers remap's fallback readers too

#: Former name of :func:`read_spectrum`.
read_spectrum_file = read_spectrum

# Imported on first use: they pull in TensorFlow, matplotlib or Dask.
_LAZY = {"fit": "inference", "fit_iter": "inference", "default_model": "inference",
         "FitResult": "inference", "ParameterResult": "inference", "Flag": "inference",
         "fit_files": "catalog", "fit_catalog": "catalog", "evaluate": "evaluation",
         "EvaluationReport": "evaluation"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'remap' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["__version__", "hookimpl", "hookspec", "RemapError", "PluginError",
           "UnknownPluginError", "DuplicatePluginError", "SpectrumError", "NoOverlapError",
           "SpectrumFileError", "OutputError", "MediumAssumedWarning", "read_spectrum",
           "read_spectrum_file",
           "get_plugin_manager", "get_survey", "get_continuum_fitter", "get_library",
           "get_head", "list_surveys", "list_continuum_fitters", "list_libraries",
           "list_heads", "plugin_infos", "prepare", "normalize", "load_model", *_LAZY]
