"""The plugin manager: built-ins from an in-code list, third parties from entry points.

remap's built-in plugins are the modules of :data:`BUILTIN_PLUGINS` (like
pytest's ``default_plugins``); they are registered first, in that order.
Third-party plugins are found through the entry-point group
:data:`ENTRY_POINT_GROUP` (``remap.plugins``) and registered after them, in
``sys.path`` order.  Both are blocked the same way: list plugin names in the
environment variable ``REMAP_BLOCK_PLUGINS`` (comma separated) or pass
``blocked=`` to :func:`get_plugin_manager`.

pluggy's own ``load_setuptools_entrypoints`` silently skips an entry point whose
name is already registered; remap's loader instead raises
`~remap.exceptions.DuplicatePluginError` naming both distributions.  Every
registered plugin keeps its provenance (distribution and version; built-ins
report remap's own), shown by ``remap plugins``.

The manager counts changes of its plugin set (:attr:`RemapPluginManager.generation`):
:func:`remap.plugins.registries.plugin_infos` caches the registries and
collects them again only when that count has moved.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading

import pluggy

from ..exceptions import DuplicatePluginError, PluginError
from . import hookspecs
from .hookspecs import KINDS, PROJECT_NAME

__all__ = ["ENTRY_POINT_GROUP", "BUILTIN_PLUGINS", "RemapPluginManager",
           "get_plugin_manager", "reset_plugin_manager"]

#: The entry-point group through which third-party remap plugin modules are found.
ENTRY_POINT_GROUP = "remap.plugins"

#: remap's built-in plugins, ``(plugin name, module)``, registered first and in this order
#: (the registries keep it: the heads ``teff``, ``logg``, ``feh`` always come first).
BUILTIN_PLUGINS = (
    ("marvels", "remap.surveys.marvels"),
    ("continuum", "remap.continuum.plugin"),
    ("heads", "remap.heads"),
    ("linelist", "remap.libraries.linelist"),
    ("phoenix", "remap.libraries.phoenix"),
    ("turbospectrum", "remap.libraries.turbospectrum"),
)

#: Guards the manager cache and registry collection (re-entrant: a hook may look
#: plugins up while the registries are being collected).
LOCK = threading.RLock()


def _remap_version():
    try:
        return importlib.metadata.version(PROJECT_NAME)
    except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
        return importlib.import_module(PROJECT_NAME).__version__


class RemapPluginManager(pluggy.PluginManager):
    """A `pluggy.PluginManager` that knows where each plugin came from.

    Attributes
    ----------
    generation : int
        Incremented whenever a plugin is registered, unregistered or blocked;
        the registries are collected again when it changes.
    """

    def __init__(self):
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self._dists: dict[str, tuple[str, str]] = {}
        self.generation = 0
        #: kind -> (generation, list of PluginInfo); filled by the registries module
        self.registry_cache: dict[str, tuple[int, list]] = {}

    # -- every change of the plugin set invalidates the cached registries -------------
    def register(self, plugin, name=None):
        """Register a plugin object (see `pluggy.PluginManager.register`)."""
        with LOCK:
            result = super().register(plugin, name=name)
            self.generation += 1
            return result

    def unregister(self, plugin=None, name=None):
        """Unregister a plugin object (see `pluggy.PluginManager.unregister`)."""
        with LOCK:
            result = super().unregister(plugin=plugin, name=name)
            self.generation += 1
            return result

    def set_blocked(self, name):
        """Block a plugin name, unregistering it if present."""
        with LOCK:
            super().set_blocked(name)
            self.generation += 1

    # -- loading ------------------------------------------------------------------------
    def load_builtins(self, plugins=BUILTIN_PLUGINS):
        """Import and register remap's built-in plugins not blocked; return how many.

        Raises
        ------
        PluginError
            A built-in module fails to import or is malformed.
        """
        version = _remap_version()
        count = 0
        for name, module_name in plugins:
            if self.is_blocked(name) or self.get_plugin(name) is not None:
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:
                raise PluginError(f"cannot load remap's built-in plugin {name!r} "
                                  f"({module_name}): {type(exc).__name__}: {exc}") from exc
            self._dists[name] = (PROJECT_NAME, version)
            self._register_checked(module, name, f"built-in plugin {name!r} ({module_name})")
            count += 1
        return count

    def load_entrypoints(self, group=ENTRY_POINT_GROUP):
        """Load every third-party entry point of ``group`` not blocked; return how many.

        Entry points declared by remap's own distribution are ignored (its
        built-ins come from :data:`BUILTIN_PLUGINS`; such entry points can only
        be left over from the metadata of an older remap).

        Raises
        ------
        DuplicatePluginError
            Two distributions declare an entry point of the same name, or one
            takes a name already registered (e.g. a built-in's).
        PluginError
            An entry point fails to import or is malformed.
        """
        count = 0
        seen: dict[str, str] = {}
        for dist in importlib.metadata.distributions():
            dist_name = dist.metadata["Name"] or "<unnamed>"
            if dist_name == PROJECT_NAME:
                continue
            for ep in dist.entry_points:
                if ep.group != group:
                    continue
                if self.is_blocked(ep.name):
                    # blocking a name skips every entry point of that name, so a
                    # clash between two blocked entry points is not an error
                    continue
                if ep.name in seen and seen[ep.name] != dist_name:
                    raise DuplicatePluginError(
                        f"entry point {ep.name!r} in group {group!r} is declared by both "
                        f"{seen[ep.name]!r} and {dist_name!r}; uninstall one of them (or "
                        f"set REMAP_BLOCK_PLUGINS={ep.name} to load neither)")
                if ep.name in seen:
                    # the same distribution visible twice on sys.path: ignore the copy
                    continue
                seen[ep.name] = dist_name
                if self.get_plugin(ep.name) is not None:
                    owner = self._dists.get(ep.name, ("<runtime>", ""))[0]
                    raise DuplicatePluginError(
                        f"entry point {ep.name!r} of {dist_name!r} clashes with the plugin "
                        f"already registered under that name by {owner!r}")
                try:
                    plugin = ep.load()
                except Exception as exc:
                    raise PluginError(
                        f"cannot load remap plugin {ep.name!r} ({ep.value}) from "
                        f"distribution {dist_name!r}: {type(exc).__name__}: {exc}") from exc
                self._dists[ep.name] = (dist_name, dist.version)
                self._register_checked(plugin, ep.name, f"remap plugin {ep.name!r} "
                                       f"({ep.value}) from distribution {dist_name!r}")
                count += 1
        return count

    def _register_checked(self, plugin, name, what):
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self._dists.pop(name, None)
            raise PluginError(f"{what} is malformed: "
                              f"{'; '.join(str(exc).splitlines())}") from exc

    def check_pending(self):
        """Refuse hook implementations that match no remap hook (e.g. a typo'd name).

        Raises
        ------
        PluginError
            Names the plugin, its distribution, the unknown hook and the valid
            hook names.
        """
        try:
            super().check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.get_name(exc.plugin) or repr(exc.plugin)
            dist = self._dists.get(name, ("<runtime>", ""))[0]
            raise PluginError(
                f"remap plugin {name!r} from distribution {dist!r}: {exc}; remap's hooks "
                f"are {', '.join(sorted(KINDS.values()))}") from exc

    def distribution_of(self, plugin_name):
        """``(distribution, version)`` of a registered plugin, or ``(None, None)``.

        Built-in plugins report remap's own distribution; plugins registered at
        run time with :meth:`register` report ``(None, None)``.
        """
        return self._dists.get(plugin_name, (None, None))


def _blocked_from_env():
    value = os.environ.get("REMAP_BLOCK_PLUGINS", "")
    return tuple(name.strip() for name in value.split(",") if name.strip())


_managers: dict[tuple[str, ...], RemapPluginManager] = {}
_building: dict[tuple[str, ...], RemapPluginManager] = {}


def get_plugin_manager(blocked=None) -> RemapPluginManager:
    """Return the (cached) plugin manager with the built-ins and all entry points loaded.

    Parameters
    ----------
    blocked : iterable of str, optional
        Plugin names (built-in or entry-point names) not to load.  Defaults to
        the comma-separated names in the environment variable
        ``REMAP_BLOCK_PLUGINS``.

    Returns
    -------
    pm : `RemapPluginManager`
        One manager per set of blocked names.  A plugin module that calls this
        function while it is being imported gets the manager under
        construction (the built-ins and the plugins loaded before it).

    Raises
    ------
    DuplicatePluginError, PluginError
        See :meth:`RemapPluginManager.load_entrypoints`.
    """
    key = tuple(sorted(set(_blocked_from_env() if blocked is None else blocked)))
    with LOCK:
        pm = _managers.get(key) or _building.get(key)
        if pm is not None:
            return pm
        pm = RemapPluginManager()
        for name in key:
            pm.set_blocked(name)
        _building[key] = pm
        try:
            pm.load_builtins()
            pm.load_entrypoints()
            pm.check_pending()
        finally:
            del _building[key]
        _managers[key] = pm
        return pm


def reset_plugin_manager() -> None:
    """Forget the cached plugin managers (after installing or removing plugins)."""
    with LOCK:
        _managers.clear()
