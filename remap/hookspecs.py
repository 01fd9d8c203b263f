"""Hook specifications: the public extension API of remap.

A remap plugin is a Python module (or any object) whose functions are decorated
with :data:`remap.hookimpl` and named after the hooks below.  A distribution
makes its plugin module known to remap through one entry point in the group
``remap.plugins``::

    [options.entry_points]
    remap.plugins =
        my_survey = my_package.remap_plugin

remap's own built-in plugins are declared in exactly the same way in remap's
``setup.cfg`` and are loaded by the same code (see :mod:`remap.plugins`).

Every hook here is a *registry hook*: it takes no arguments and returns a list
of plugin objects, each with a unique string attribute ``name``.  remap calls
every implementation, concatenates the lists and refuses two objects of the
same kind with the same name (naming both distributions).  An implementation
may accept fewer arguments than its specification, so later versions of remap
can add arguments without breaking existing plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from collections.abc import Sequence

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME", "remap_surveys",
           "remap_synthetic_libraries", "remap_continuum_fitters", "remap_heads"]

#: The pluggy project name shared by the markers and the plugin manager.
PROJECT_NAME = "remap"

#: Marker for hook specifications (used by remap itself).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marker for hook implementations: decorate your plugin functions with it.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def remap_surveys() -> Sequence[object]:
    """Register spectroscopic surveys (instruments).

    Returns
    -------
    surveys : list of `remap.surveys.Survey`
        Survey *instances*.  Each has a unique ``name`` (``"marvels"`` is
        built in), a ``wavelength_medium`` (``"air"`` or ``"vacuum"``), a mapping
        ``beams`` of beam name to `remap.surveys.Beam` (wavelength range,
        resolving power, pixel grid), and the methods ``split(spectrum)``,
        ``grid(beam)`` and ``remove_spikes(spectrum)``.  Subclassing
        `remap.surveys.Survey` provides all of them from the beam definitions.

    Notes
    -----
    Look surveys up with :func:`remap.get_survey` and list them with
    :func:`remap.list_surveys`.
    """


@hookspec
def remap_synthetic_libraries() -> Sequence[object]:
    """Register synthetic spectral libraries (model-atmosphere grids).

    Returns
    -------
    libraries : list of classes or callables
        Each has a unique ``name`` attribute and builds a library object when
        called with the user's keyword options, e.g. ``directory=...`` for a
        grid read from disk.  :func:`remap.get_library(name, **options)
        <remap.get_library>` makes that call.  The library object provides
        ``spectrum(teff=, logg=, feh=, alpha=0.0)`` returning a
        `specutils.Spectrum`, ``domain`` (parameter ranges),
        ``wavelength_medium`` and ``resolution``; grids also provide ``grid``,
        an `astropy.table.Table` of the available points.
    """


@hookspec
def remap_continuum_fitters() -> Sequence[object]:
    """Register continuum fitters.

    Returns
    -------
    fitters : list of `remap.continuum.ContinuumFitter` subclasses
        Classes with a unique ``name``.  :func:`remap.get_continuum_fitter`
        instantiates one with the user's options (validated in ``__init__``);
        the instance's ``fit(flux, mask, wavelength)`` returns the continuum of
        a batch of spectra as an array of the flux's shape.  Built in:
        ``algorithm1`` (the paper's Algorithm 1, the default),
        ``chebyshev`` (specutils' generic continuum fit) and ``clipped`` (an
        asymmetric sigma-clipped Legendre polynomial, vectorized over a batch).
    """


@hookspec
def remap_heads() -> Sequence[object]:
    """Register network heads, one per predicted stellar parameter.

    Returns
    -------
    heads : list of `remap.heads.HeadSpec`
        Each describes one label: its unique ``name`` (``"teff"``, ``"logg"``,
        ``"feh"`` are built in), unit, the label range and bin width used to
        turn the value into a probability mass function.  A network built by
        remap grows one output head per registered head, so a third-party
        plugin adding e.g. ``alpha_fe`` needs no other change.
    """
