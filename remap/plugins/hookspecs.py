"""Hook specifications: the public extension API of remap.

A remap plugin is a Python module (or any object) whose functions are decorated
with :data:`remap.hookimpl` and named after the hooks below.  A distribution
makes its plugin module known to remap through one entry point in the group
``remap.plugins``::

    [options.entry_points]
    remap.plugins =
        my_survey = my_package.remap_plugin

remap's own built-in plugins are listed in code
(:data:`remap.plugins.manager.BUILTIN_PLUGINS`) and registered before any entry
point, so a third-party hook can look up a built-in (``remap.get_survey("marvels")``)
while the registries are being collected.

**The contract.**  Every hook here is a *registry hook*: it takes no arguments
and returns a list of **factories**.  A factory is a class, or any other
callable, that

* has a string attribute ``name``, unique within its kind (the name users look
  it up by), and
* builds the plugin object when called with the user's keyword options:
  ``remap.get_survey(name, **options)`` returns ``factory(**options)``.

A class is the natural factory (its constructor validates the options); a
function or `functools.partial` with a ``name`` attribute works as well.  A
`remap.heads.HeadSpec` is its own factory: calling it returns itself, or a copy
with the fields given as options replaced.  Returning a plugin *instance* (a
`remap.surveys.Survey`, a fitter) instead of its factory is refused with an
error that says so.

remap calls each implementation once per plugin set and caches the registries
(they are collected again only after a plugin is registered, unregistered or
blocked).  It refuses two factories of one kind with the same ``name``, naming
both plugins and their distributions.  An implementation may accept fewer
arguments than its specification, so later versions of remap can add arguments
without breaking existing plugins.

**Deriving from a built-in.**  A hook may call ``remap.get_survey("marvels")``
(or any ``get_*``) to build on a built-in, or on a plugin registered before
it: the built-ins are collected first and are available while the later hooks
run.  A name that is not
available yet gets a `remap.PluginError` saying so; look such names up inside
your factory (when it is called) instead of in the hook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from ..continuum.base import ContinuumFitter
    from ..heads import HeadSpec
    from ..libraries.base import SyntheticLibrary
    from ..surveys.base import Survey

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME", "KINDS", "Factory", "remap_surveys",
           "remap_synthetic_libraries", "remap_continuum_fitters", "remap_heads"]

#: The pluggy project name shared by the markers and the plugin manager.
PROJECT_NAME = "remap"

#: Marker for hook specifications (used by remap itself).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marker for hook implementations: decorate your plugin functions with it.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Plugin kinds: kind name -> the registry hook that returns its factories.
KINDS = {
    "survey": "remap_surveys",
    "library": "remap_synthetic_libraries",
    "continuum": "remap_continuum_fitters",
    "head": "remap_heads",
}


class Factory(Protocol):
    """What every registry hook returns a list of: a named callable taking ``**options``.

    Attributes
    ----------
    name : str
        Unique name within the plugin kind.
    """

    name: str

    def __call__(self, **options: Any) -> Any:
        """Build the plugin object from the user's keyword options."""


@hookspec
def remap_surveys() -> Sequence[Callable[..., Survey]]:
    """Register spectroscopic surveys (instruments).

    Returns
    -------
    surveys : list of survey factories
        Classes (usually subclasses of `remap.surveys.Survey`) or callables
        with a unique ``name`` (``"marvels"`` is built in).  Called with the
        options of :func:`remap.get_survey`, e.g.
        ``remap.get_survey("marvels", wavelength_medium="vacuum")``, a factory
        returns a survey object: it has a ``name``, a ``wavelength_medium``
        (``"air"`` or ``"vacuum"``), a mapping ``beams`` of beam name to
        `remap.surveys.Beam` (wavelength range, resolving power, pixel grid),
        and the methods ``split(spectrum)``, ``grid(beam)`` and
        ``remove_spikes(spectrum)``.  Subclassing `remap.surveys.Survey`
        provides all of them from the beam definitions.

    Notes
    -----
    Look surveys up with :func:`remap.get_survey` and list them with
    :func:`remap.list_surveys`.  To derive a survey from a built-in one, call
    ``remap.get_survey("marvels")`` inside this hook (or inside your factory).

    Examples
    --------
    >>> import remap
    >>> from remap.surveys import Survey
    >>> @remap.hookimpl
    ... def remap_surveys():
    ...     marvels = remap.get_survey("marvels")
    ...     class MarvelsA(Survey):
    ...         name = "marvels_a"
    ...         wavelength_medium = marvels.wavelength_medium
    ...         beams = {"A": marvels.beams["A"]}
    ...     return [MarvelsA]
    """


@hookspec
def remap_synthetic_libraries() -> Sequence[Callable[..., SyntheticLibrary]]:
    """Register synthetic spectral libraries (model-atmosphere grids).

    Returns
    -------
    libraries : list of library factories
        Classes or callables with a unique ``name``.  Called with the options
        of :func:`remap.get_library`, e.g. ``directory=...`` for a grid read
        from disk or ``wave_range=(5000 * u.AA, 5750 * u.AA)``, a factory
        returns a library object that provides
        ``spectrum(teff=, logg=, feh=, alpha=0.0)`` returning a
        `specutils.Spectrum`, ``domain`` (parameter ranges),
        ``wavelength_medium`` and ``resolution``; grids also provide ``grid``,
        an `astropy.table.Table` of the available points.  Subclass
        `remap.libraries.base.SyntheticLibrary`.
    """


@hookspec
def remap_continuum_fitters() -> Sequence[Callable[..., ContinuumFitter]]:
    """Register continuum fitters.

    Returns
    -------
    fitters : list of continuum-fitter factories
        Usually `remap.continuum.ContinuumFitter` subclasses, with a unique
        ``name``.  :func:`remap.get_continuum_fitter(name, **options)
        <remap.get_continuum_fitter>` calls one with the user's options
        (validated in ``__init__``); the fitter's ``fit(flux, mask,
        wavelength)`` returns the continuum of a batch of spectra as an array
        of the flux's shape.  Built in: ``algorithm1`` (the paper's Algorithm
        1, the default), ``chebyshev`` (specutils' generic continuum fit) and
        ``clipped`` (an asymmetric sigma-clipped Legendre polynomial,
        vectorized over a batch).
    """


@hookspec
def remap_heads() -> Sequence[Callable[..., HeadSpec]]:
    """Register network heads, one per predicted stellar parameter.

    Returns
    -------
    heads : list of head factories
        Usually `remap.heads.HeadSpec` objects, each its own factory
        (``spec()`` returns ``spec``; ``spec(bin_width=40.0)`` a copy with that
        field replaced).  A head describes one label: its unique ``name``
        (``"teff"``, ``"logg"``, ``"feh"`` are built in), unit, the label range
        and bin width used to turn the value into a probability mass function.
        A network built by remap grows one output head per registered head, so
        a third-party plugin adding e.g. ``alpha_fe`` needs no other change.
    """
