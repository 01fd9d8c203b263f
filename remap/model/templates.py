"""Template spectra for a model: built from its training library, stored in its artifact.

A model's templates are a small bank of noiseless spectra per beam, prepared
exactly like its training spectra (:func:`remap.augment.augment`: the
survey's medium, down-convolution to the model's resolution, resampling onto
the beam grid, the model's continuum fitter) on a coarse grid of labels
(:data:`DEFAULT_TEMPLATE_GRID`, 30 points), plus their mean as row 0.  The
inference pipeline uses them

* to measure radial velocities and the input's resolution by
  cross-correlation (:mod:`remap.spectra.velocity`; the mean first, then the
  best-matching template);
* to in-paint model-grid pixels an observed spectrum does not cover (the
  mean training spectrum instead of a flat 1), which is also what the
  partial-coverage augmentation of the training set fills dropped pixels with
  (:func:`remap.augment.drop_coverage`).

The mean over a uniform grid of the library's label domain stands in for the
mean of the training set, whose labels are drawn uniformly in the same domain.

:func:`build_templates` makes them; :func:`add_templates` adds them to an
existing artifact (re-hashing it); the training runner writes them with every
artifact it saves.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import astropy.units as u
import numpy as np

from ..augment import augment
from ..plugins import get_continuum_fitter, get_library, get_survey
from .artifact import ArtifactError, _read_manifest, verify_files, write_templates

__all__ = ["DEFAULT_TEMPLATE_GRID", "TEMPLATE_LABELS", "template_labels", "build_templates",
           "mean_spectra", "add_templates"]

#: Label grid of the templates (clipped to the library's domain): 5 x 2 x 3 points.
DEFAULT_TEMPLATE_GRID = {"teff": (3750.0, 4500.0, 5250.0, 6000.0, 6750.0),
                         "logg": (2.5, 4.5),
                         "feh": (-1.5, -0.5, 0.2)}

#: Label columns of the templates.
TEMPLATE_LABELS = ("teff", "logg", "feh")


def template_labels(domain=None, grid=None):
    """The label points of the templates: the product of ``grid``'s values, inside ``domain``.

    Parameters
    ----------
    domain : `remap.libraries.base.Domain`, optional
        Values outside the domain's ranges are clipped into it (duplicates dropped).
    grid : dict, optional
        ``{"teff": [...], "logg": [...], "feh": [...]}`` (default
        :data:`DEFAULT_TEMPLATE_GRID`).

    Returns
    -------
    labels : ndarray, shape (n, 3)
        Columns :data:`TEMPLATE_LABELS`.
    """
    grid = DEFAULT_TEMPLATE_GRID if grid is None else grid
    missing = [k for k in TEMPLATE_LABELS if k not in grid]
    if missing:
        raise ValueError(f"the template grid needs values for {missing}")
    axes = []
    for name in TEMPLATE_LABELS:
        values = np.asarray(grid[name], dtype=float).ravel()
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(f"template grid {name!r}: give one or more finite values")
        if domain is not None:
            lo, hi = getattr(domain, name)
            values = np.clip(values, lo, hi)
        axes.append(np.unique(values))
    return np.array(list(itertools.product(*axes)), dtype=float)


def mean_spectra(templates):
    """Row 0 of each beam's templates: the mean training spectrum, ``{beam: (npix,)}``."""
    return {beam: np.asarray(rec["flux"][0], dtype=np.float64) for beam, rec in
            templates.items()}


def build_templates(library, survey, beams=None, *, fitter="algorithm1", fitter_options=None,
                    resolution=None, labels=None):
    """Template spectra of a library on a survey's beams, prepared like training spectra.

    Parameters
    ----------
    library : `remap.libraries.base.SyntheticLibrary`
        The library the model was (or will be) trained with.
    survey : survey object
        E.g. ``remap.get_survey("marvels")``.
    beams : sequence of str, optional
        Default: all the survey's beams.
    fitter : str, continuum fitter or None
        The continuum fitter of the training spectra.
    fitter_options : dict, optional
    resolution : float or dict of str to float, optional
        Resolving power of the templates (per beam); default the survey beam's.
    labels : array_like, shape (n, 3), optional
        Label points (``teff``, ``logg``, ``feh``); default :func:`template_labels`.

    Returns
    -------
    templates : dict of str to dict
        Per beam ``{"wave", "flux" (n + 1, npix), "labels" (n + 1, 3),
        "label_names", "meta"}`` with the mean of the n spectra as row 0 (its
        labels NaN), the form :func:`remap.model.save_model` takes.
    """
    beams = list(survey.beams) if beams is None else list(beams)
    points = template_labels(library.domain) if labels is None else np.atleast_2d(
        np.asarray(labels, dtype=float))
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"labels must have shape (n, 3) (teff, logg, feh); received "
                         f"{points.shape}")
    res = {}
    for beam in beams:
        if beam not in survey.beams:
            raise ValueError(f"survey {survey.name!r} has no beam {beam!r}")
        r = resolution.get(beam) if isinstance(resolution, dict) else resolution
        res[beam] = float(survey.beams[beam].resolution if r is None else r)
    if isinstance(fitter, str) and fitter_options:
        fitter = get_continuum_fitter(fitter, **fitter_options)
    rows = {beam: [] for beam in beams}
    for teff, logg, feh in points:
        spec = library.spectrum(teff=float(teff), logg=float(logg), feh=float(feh))
        for beam in beams:
            batch, _ = augment(spec, survey, beam, resolutions=[res[beam]], noise_levels=[0.0],
                               draws=1, seed=0, fitter=fitter)
            rows[beam].append(np.asarray(batch.flux.value, dtype=float)[0])
    out = {}
    for beam in beams:
        flux = np.asarray(rows[beam])
        flux = np.vstack([flux.mean(axis=0, keepdims=True), flux])
        lab = np.vstack([np.full((1, 3), np.nan), points])
        out[beam] = {"wave": survey.grid(beam).value, "flux": flux, "labels": lab,
                     "label_names": list(TEMPLATE_LABELS),
                     "meta": {"library": library.name, "resolution": res[beam],
                              "n_label_points": int(len(points)),
                              "row0": "mean of the other rows (the mean training spectrum)"}}
    return out


def add_templates(model_dir, *, library=None, library_options=None, labels=None):
    """Build template spectra for an existing artifact and add them to it.

    Parameters
    ----------
    model_dir : str or path
        The artifact (e.g. ``remap.inference.DEFAULT_MODEL_PATH``).
    library : str or library object, optional
        Default: the library its manifest records (``library.name`` and
        ``library.options``).
    library_options : dict, optional
        Options for a library given by name (default: the manifest's).
    labels : array_like, shape (n, 3), optional
        Template label points (default :func:`template_labels`).

    Returns
    -------
    path : `pathlib.Path`
        The artifact, now with ``templates_<beam>.npz`` for every beam.

    Raises
    ------
    ArtifactError
        The artifact fails verification or records no usable library.
    """
    root = Path(model_dir)
    verify_files(root)
    manifest = _read_manifest(root)
    recorded = manifest.get("library") or {}
    if library is None:
        library = recorded.get("name")
        if library_options is None:
            library_options = recorded.get("options") or {}
    if library is None:
        raise ArtifactError(f"{root}: the manifest records no training library; pass "
                            f"library=")
    if isinstance(library, str):
        options = dict(library_options or {})
        if "wave_range" in options and not hasattr(options["wave_range"], "unit"):
            options["wave_range"] = u.Quantity(options["wave_range"], u.AA)
        library = get_library(library, **options)
    survey = get_survey(manifest["survey"])
    fitter = None
    if manifest.get("fitter"):
        fitter = get_continuum_fitter(manifest["fitter"]["name"],
                                      **manifest["fitter"].get("config", {}))
    beams = list(manifest["beams"])
    resolution = {b: manifest["beams"][b].get("grid", {}).get("resolution") for b in beams}
    templates = build_templates(library, survey, beams, fitter=fitter, resolution=resolution,
                                labels=labels)
    return write_templates(root, templates)
