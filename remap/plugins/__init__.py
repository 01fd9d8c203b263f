"""remap's plugin system: hook specifications, the plugin manager and the registries.

* :mod:`remap.plugins.hookspecs` -- the hooks and the factory contract
  (:data:`~remap.plugins.hookspecs.hookimpl` is also ``remap.hookimpl``);
* :mod:`remap.plugins.manager` -- the plugin manager: built-ins from an in-code
  list, third parties from the ``remap.plugins`` entry points, blocking,
  provenance;
* :mod:`remap.plugins.registries` -- collecting and caching each kind's
  factories, and the ``get_*`` / ``list_*`` look-ups.
"""

from .hookspecs import KINDS, PROJECT_NAME, hookimpl, hookspec
from .manager import (BUILTIN_PLUGINS, ENTRY_POINT_GROUP, RemapPluginManager,
                      get_plugin_manager, reset_plugin_manager)
from .registries import (PluginInfo, get_continuum_fitter, get_head, get_library, get_plugin,
                         get_survey, list_continuum_fitters, list_heads, list_libraries,
                         list_surveys, plugin_infos, registry)

__all__ = ["ENTRY_POINT_GROUP", "BUILTIN_PLUGINS", "KINDS", "PROJECT_NAME", "PluginInfo",
           "RemapPluginManager", "hookimpl", "hookspec", "get_plugin_manager",
           "reset_plugin_manager", "registry", "plugin_infos", "get_plugin", "get_survey",
           "get_continuum_fitter", "get_library", "get_head", "list_surveys",
           "list_continuum_fitters", "list_libraries", "list_heads"]
