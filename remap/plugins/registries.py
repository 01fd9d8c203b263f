"""The registries: every kind's factories, collected from the hooks once and cached.

:func:`plugin_infos` calls each registry hook implementation (in registration
order: built-ins first), checks what it returns against the contract of
:mod:`remap.plugins.hookspecs` and caches the result on the plugin manager
until its plugin set changes.  The ``get_*`` functions call the named factory
with the user's options; the ``list_*`` functions list the names.

A hook may look plugins up while the registries are being collected (a
third-party ``remap_surveys()`` calling ``remap.get_survey("marvels")`` to
derive its survey).  Such a nested look-up sees the factories collected so far
(the built-ins and the plugins registered before the one whose hook is
running) instead of starting the collection again, so it never recurses; a
name not collected yet is refused with a `~remap.exceptions.PluginError` that
says how to do the look-up instead.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..exceptions import DuplicatePluginError, PluginError, UnknownPluginError
from .hookspecs import KINDS
from .manager import LOCK, get_plugin_manager

if TYPE_CHECKING:  # pragma: no cover - annotations only
    import pluggy

    from ..continuum.base import ContinuumFitter
    from ..heads import HeadSpec
    from ..libraries.base import SyntheticLibrary
    from ..surveys.base import Survey

__all__ = ["KINDS", "PluginInfo", "plugin_infos", "registry", "get_plugin", "get_survey",
           "get_continuum_fitter", "get_library", "get_head", "list_surveys",
           "list_continuum_fitters", "list_libraries", "list_heads"]

#: kind -> the public look-up function, for the error messages.
_GETTERS = {"survey": "get_survey", "library": "get_library",
            "continuum": "get_continuum_fitter", "head": "get_head"}


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """One registered factory and where it comes from.

    Attributes
    ----------
    kind : str
        One of ``survey``, ``library``, ``continuum``, ``head``.
    name : str
        The factory's unique name within its kind.
    factory : callable
        The registered factory (a class, a callable, or a
        `~remap.heads.HeadSpec`); ``factory(**options)`` builds the plugin object.
    plugin : str
        Name of the plugin module that returned it (the built-in plugin name or
        the entry-point name).
    distribution : str or None
        The distribution (package) the plugin comes from (``"remap"`` for the
        built-ins), or `None` for a plugin registered at run time with
        ``pm.register``.
    version : str or None
        That distribution's version.
    """

    kind: str
    name: str
    factory: Any
    plugin: str
    distribution: str | None
    version: str | None

    @property
    def obj(self):
        """The registered factory (an alias of :attr:`factory`)."""
        return self.factory

    @property
    def source(self):
        """``"dist version"``, or ``"<runtime>"`` for run-time registrations."""
        if self.distribution is None:
            return "<runtime>"
        return f"{self.distribution} {self.version}"


@dataclasses.dataclass
class _Collection:
    """A registry being collected: the factories so far and the plugin being called."""

    infos: dict[str, PluginInfo] = dataclasses.field(default_factory=dict)
    current: str | None = None


#: (id of the plugin manager, kind) -> the collection in progress (guarded by LOCK)
_collecting: dict[tuple[int, str], _Collection] = {}


def _product_types():
    # imported here, not at module level: these packages register built-in plugins
    # and import remap.plugins while they are being imported
    from ..continuum.base import ContinuumFitter
    from ..libraries.base import SyntheticLibrary
    from ..surveys.base import Survey
    return {"survey": Survey, "library": SyntheticLibrary, "continuum": ContinuumFitter}


def _check_factory(kind, obj, where):
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"{where} returned {obj!r}, which has no string attribute 'name'")
    product = _product_types().get(kind)
    if not callable(obj) or (product is not None and isinstance(obj, product)):
        raise PluginError(
            f"{where} returned {obj!r}, an instance of {type(obj).__name__}, not a factory; "
            f"registry hooks return factories (classes or callables taking **options): "
            f"return the class {type(obj).__name__} itself, and remap.{_GETTERS[kind]}"
            f"({name!r}, **options) will build the object")
    return name


def _collect(kind, pm, state):
    hook_name = KINDS[kind]
    hook = getattr(pm.hook, hook_name)
    # call the implementations one by one to attribute each factory; get_hookimpls()
    # lists them in registration order (built-ins first), pluggy *calls* them newest first
    for impl in hook.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        dist, version = (pm.distribution_of(plugin_name)
                         if hasattr(pm, "distribution_of") else (None, None))
        where = (f"{hook_name}() of plugin {plugin_name!r}"
                 f"{'' if dist is None else f' ({dist} {version})'}")
        state.current = plugin_name
        try:
            result = impl.function()
        except Exception as exc:
            raise PluginError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        if result is None:
            continue
        if isinstance(result, (str, bytes)) or not hasattr(result, "__iter__"):
            raise PluginError(f"{where} must return a list of plugin factories, "
                              f"got {type(result).__name__}")
        for obj in list(result):
            name = _check_factory(kind, obj, where)
            info = PluginInfo(kind, name, obj, plugin_name, dist, version)
            if name in state.infos:
                other = state.infos[name]
                raise DuplicatePluginError(
                    f"two {kind} plugins are named {name!r}: one from plugin "
                    f"{other.plugin!r} ({other.source}), one from plugin "
                    f"{plugin_name!r} ({info.source})")
            state.infos[name] = info
    return list(state.infos.values())


def _resolve(pm):
    return get_plugin_manager() if pm is None else pm


def plugin_infos(kind: str, pm: pluggy.PluginManager | None = None) -> list[PluginInfo]:
    """All registered factories of one kind, as `PluginInfo`, in registration order.

    The result is cached on the plugin manager and collected again only after
    a plugin is registered, unregistered or blocked.  Called from inside a
    registry hook of the same kind, it returns the factories collected so far.

    Parameters
    ----------
    kind : {"survey", "library", "continuum", "head"}
    pm : `pluggy.PluginManager`, optional
        Defaults to :func:`~remap.plugins.get_plugin_manager`.

    Returns
    -------
    infos : list of `PluginInfo`

    Raises
    ------
    ValueError
        Unknown ``kind``.
    DuplicatePluginError
        Two factories of this kind share a name; the message names both sources.
    PluginError
        A plugin's hook raised, or returned something that is not a list of
        named factories.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}; expected one of {sorted(KINDS)}")
    pm = _resolve(pm)
    key = (id(pm), kind)
    with LOCK:
        cache = getattr(pm, "registry_cache", None)
        generation = getattr(pm, "generation", None)
        if cache is not None and kind in cache and cache[kind][0] == generation:
            return list(cache[kind][1])
        if key in _collecting:  # a hook looks plugins up: what has been collected so far
            return list(_collecting[key].infos.values())
        _collecting[key] = _Collection()
        try:
            infos = _collect(kind, pm, _collecting[key])
        finally:
            del _collecting[key]
        if cache is not None and getattr(pm, "generation", None) == generation:
            cache[kind] = (generation, infos)
        return list(infos)


def registry(kind: str, pm: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """Mapping ``name -> factory`` of every registered factory of one kind."""
    return {info.name: info.factory for info in plugin_infos(kind, pm)}


def get_plugin(kind: str, name: str, pm: pluggy.PluginManager | None = None,
               **options: Any) -> Any:
    """Build the plugin object ``name`` of one kind: its factory called with ``options``.

    Parameters
    ----------
    kind : {"survey", "library", "continuum", "head"}
    name : str
    pm : `pluggy.PluginManager`, optional
    **options
        Keyword options of the factory (e.g. ``wavelength_medium="vacuum"``).

    Raises
    ------
    UnknownPluginError
        No plugin of that kind has this name; the message lists the known ones.
    PluginError
        The look-up happens inside a registry hook of the same kind and ``name``
        has not been collected yet; the message says how to look it up instead.
    TypeError, ValueError
        From the factory, for options it does not take or refuses.
    """
    pm = _resolve(pm)
    with LOCK:
        infos = {info.name: info for info in plugin_infos(kind, pm)}
        collecting = _collecting.get((id(pm), kind))
    if name not in infos:
        known = ", ".join(sorted(infos)) or "none"
        if collecting is not None:
            getter = _GETTERS[kind]
            raise PluginError(
                f"{kind} {name!r} is not available while the {KINDS[kind]}() hooks are "
                f"being collected: inside the hook of plugin {collecting.current!r} only the "
                f"built-in {kind} plugins and those of plugins registered before it exist "
                f"({known}). Look {name!r} up when your factory is called instead: return a "
                f"class or function that calls remap.{getter}({name!r}) in its body, not in "
                f"the hook")
        raise UnknownPluginError(
            f"unknown {kind} {name!r}; known {kind} plugins: {known}. "
            f"Run 'remap plugins' to see every plugin and where it comes from.")
    return infos[name].factory(**options)


def get_survey(name: str, **options: Any) -> Survey:
    """Build the registered survey ``name`` (e.g. ``"marvels"``) with ``options``.

    Examples
    --------
    >>> import remap
    >>> remap.get_survey("marvels", wavelength_medium="vacuum").wavelength_medium
    'vacuum'
    """
    return get_plugin("survey", name, **options)


def get_continuum_fitter(name: str, **options: Any) -> ContinuumFitter:
    """Build the continuum fitter ``name`` (e.g. ``"algorithm1"``) with ``options``."""
    return get_plugin("continuum", name, **options)


def get_library(name: str, **options: Any) -> SyntheticLibrary:
    """Build the synthetic library ``name`` with ``options`` (e.g. ``directory=``)."""
    return get_plugin("library", name, **options)


def get_head(name: str, **options: Any) -> HeadSpec:
    """The registered network head ``name`` (e.g. ``"teff"``), fields replaced by ``options``."""
    return get_plugin("head", name, **options)


def list_surveys() -> list[str]:
    """Sorted names of the registered surveys."""
    return sorted(registry("survey"))


def list_continuum_fitters() -> list[str]:
    """Sorted names of the registered continuum fitters."""
    return sorted(registry("continuum"))


def list_libraries() -> list[str]:
    """Sorted names of the registered synthetic libraries."""
    return sorted(registry("library"))


def list_heads() -> list[str]:
    """Names of the registered network heads, in registration order."""
    return list(registry("head"))
