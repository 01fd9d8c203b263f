"""The plugin manager and the registries of surveys, libraries, fitters and heads.

Plugins are found through the entry-point group :data:`ENTRY_POINT_GROUP`
(``remap.plugins``).  remap's built-in plugins are declared in remap's own
package metadata under the same group, so built-in and third-party plugins go
through one loader and can be blocked the same way: list entry-point names in
the environment variable ``REMAP_BLOCK_PLUGINS`` (comma separated) or pass
``blocked=`` to :func:`get_plugin_manager`.

pluggy's own ``load_setuptools_entrypoints`` silently skips an entry point whose
name is already registered; remap's loader instead raises
`~remap.exceptions.DuplicatePluginError` naming both distributions, and it does
the same for two plugin *objects* of one kind with the same ``name``.

remap's own entry points are loaded first, then those of other distributions
in ``sys.path`` order; the registries list objects in that order.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import inspect
import os
import threading

import pluggy

from . import hookspecs
from .exceptions import DuplicatePluginError, PluginError, UnknownPluginError

__all__ = ["ENTRY_POINT_GROUP", "KINDS", "PluginInfo", "get_plugin_manager",
           "reset_plugin_manager", "registry", "plugin_infos", "get_plugin",
           "get_survey", "get_continuum_fitter", "get_library", "get_head",
           "list_surveys", "list_continuum_fitters", "list_libraries", "list_heads"]

#: The entry-point group through which every remap plugin module is found.
ENTRY_POINT_GROUP = "remap.plugins"

#: Plugin kinds: kind name -> hook name.
KINDS = {
    "survey": "remap_surveys",
    "library": "remap_synthetic_libraries",
    "continuum": "remap_continuum_fitters",
    "head": "remap_heads",
}

_lock = threading.RLock()


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin object comes from.

    Attributes
    ----------
    kind : str
        One of ``survey``, ``library``, ``continuum``, ``head``.
    name : str
        The object's unique name within its kind.
    obj : object
        The registered object (an instance or a class, depending on the kind).
    plugin : str
        Name of the plugin module (the entry-point name) that returned it.
    distribution : str or None
        The distribution (package) that declared the entry point, or `None`
        for a plugin registered at run time with ``pm.register``.
    version : str or None
        That distribution's version.
    """

    kind: str
    name: str
    obj: object
    plugin: str
    distribution: str | None
    version: str | None

    @property
    def source(self):
        """``"dist version"``, or ``"<runtime>"`` for run-time registrations."""
        if self.distribution is None:
            return "<runtime>"
        return f"{self.distribution} {self.version}"


class RemapPluginManager(pluggy.PluginManager):
    """A `pluggy.PluginManager` that remembers which distribution each plugin came from."""

    def __init__(self):
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self._dists: dict[str, tuple[str, str]] = {}

    def load_entrypoints(self, group=ENTRY_POINT_GROUP):
        """Load every entry point of ``group`` not blocked; return how many were loaded.

        Raises
        ------
        DuplicatePluginError
            Two distributions declare an entry point of the same name (or a
            name already registered).
        PluginError
            An entry point fails to import.
        """
        count = 0
        seen: dict[str, str] = {}
        # remap's own built-ins first, then the others in sys.path order, so that
        # registration order (e.g. of the network heads) does not depend on sys.path
        dists = sorted(importlib.metadata.distributions(),
                       key=lambda d: (d.metadata["Name"] or "") != hookspecs.PROJECT_NAME)
        for dist in dists:
            dist_name = dist.metadata["Name"] or "<unnamed>"
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
                try:
                    self.register(plugin, name=ep.name)
                except pluggy.PluginValidationError as exc:
                    raise PluginError(
                        f"remap plugin {ep.name!r} ({ep.value}) from distribution "
                        f"{dist_name!r} is malformed: "
                        f"{'; '.join(str(exc).splitlines())}") from exc
                self._dists[ep.name] = (dist_name, dist.version)
                count += 1
        return count

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
        """``(distribution, version)`` of a registered plugin, or ``(None, None)``."""
        return self._dists.get(plugin_name, (None, None))


def _blocked_from_env():
    value = os.environ.get("REMAP_BLOCK_PLUGINS", "")
    return tuple(name.strip() for name in value.split(",") if name.strip())


@functools.lru_cache(maxsize=None)
def _cached_manager(blocked):
    pm = RemapPluginManager()
    for name in blocked:
        pm.set_blocked(name)
    pm.load_entrypoints()
    pm.check_pending()
    return pm


def get_plugin_manager(blocked=None):
    """Return the (cached) plugin manager with all entry-point plugins loaded.

    Parameters
    ----------
    blocked : iterable of str, optional
        Entry-point names not to load.  Defaults to the comma-separated names
        in the environment variable ``REMAP_BLOCK_PLUGINS``.

    Returns
    -------
    pm : `RemapPluginManager`
    """
    blocked = _blocked_from_env() if blocked is None else tuple(blocked)
    with _lock:
        return _cached_manager(tuple(sorted(set(blocked))))


def reset_plugin_manager():
    """Forget the cached plugin manager (after installing or removing plugins)."""
    with _lock:
        _cached_manager.cache_clear()


def plugin_infos(kind, pm=None):
    """All registered objects of one kind, as `PluginInfo`, in load order.

    Raises
    ------
    DuplicatePluginError
        Two objects of this kind share a name; the message names both sources.
    PluginError
        A plugin's hook raised, or returned something that is not a list of
        named objects.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}; expected one of {sorted(KINDS)}")
    pm = get_plugin_manager() if pm is None else pm
    hook = getattr(pm.hook, KINDS[kind])
    infos: dict[str, PluginInfo] = {}
    # call the implementations one by one to attribute each object; get_hookimpls()
    # lists them in registration order (oldest first), pluggy *calls* them newest first
    for impl in hook.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        dist, version = (pm.distribution_of(plugin_name)
                         if isinstance(pm, RemapPluginManager) else (None, None))
        try:
            result = impl.function()
        except Exception as exc:
            raise PluginError(f"{KINDS[kind]}() of plugin {plugin_name!r}"
                              f"{'' if dist is None else f' ({dist} {version})'} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        if result is None:
            continue
        try:
            objects = list(result)
        except TypeError:
            raise PluginError(f"{KINDS[kind]}() of plugin {plugin_name!r} must return a list "
                              f"of plugin objects, got {type(result).__name__}") from None
        for obj in objects:
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"{KINDS[kind]}() of plugin {plugin_name!r} returned "
                                  f"{obj!r}, which has no string attribute 'name'")
            info = PluginInfo(kind, name, obj, plugin_name, dist, version)
            if name in infos:
                other = infos[name]
                raise DuplicatePluginError(
                    f"two {kind} plugins are named {name!r}: one from plugin "
                    f"{other.plugin!r} ({other.source}), one from plugin "
                    f"{plugin_name!r} ({info.source})")
            infos[name] = info
    return list(infos.values())


def registry(kind, pm=None):
    """Mapping ``name -> object`` of every registered plugin object of one kind."""
    return {info.name: info.obj for info in plugin_infos(kind, pm)}


def get_plugin(kind, name, pm=None, **options):
    """Look up a plugin object of one kind by name.

    A registered class (or other factory registered as a class) is called with
    ``options``; a registered instance is returned as it is, and then
    ``options`` must be empty.

    Raises
    ------
    UnknownPluginError
        No plugin of that kind has this name; the message lists the known ones.
    """
    reg = registry(kind, pm)
    if name not in reg:
        known = ", ".join(sorted(reg)) or "none"
        raise UnknownPluginError(
            f"unknown {kind} {name!r}; known {kind} plugins: {known}. "
            f"Run 'remap plugins' to see every plugin and where it comes from.")
    obj = reg[name]
    if inspect.isclass(obj):
        return obj(**options)
    if options:
        raise TypeError(f"the {kind} plugin {name!r} is an instance and takes no options; "
                        f"got {sorted(options)}")
    return obj


def get_survey(name, **options):
    """Return the registered survey ``name`` (e.g. ``"marvels"``)."""
    return get_plugin("survey", name, **options)


def get_continuum_fitter(name, **options):
    """Return a configured continuum fitter ``name`` (e.g. ``"algorithm1"``)."""
    return get_plugin("continuum", name, **options)


def get_library(name, **options):
    """Build the synthetic library ``name`` with ``options`` (e.g. ``directory=``)."""
    return get_plugin("library", name, **options)


def get_head(name, **options):
    """Return the registered network head ``name`` (e.g. ``"teff"``)."""
    return get_plugin("head", name, **options)


def list_surveys():
    """Sorted names of the registered surveys."""
    return sorted(registry("survey"))


def list_continuum_fitters():
    """Sorted names of the registered continuum fitters."""
    return sorted(registry("continuum"))


def list_libraries():
    """Sorted names of the registered synthetic libraries."""
    return sorted(registry("library"))


def list_heads():
    """Names of the registered network heads, in registration order."""
    return list(registry("head"))
