"""Model artifacts: trained networks, their embeddings and everything needed to use them.

A remap *artifact* is a directory holding one trained network per survey beam
(Gilda 2025 §5 trains one model per MARVELS beam) and the information a later
prediction needs::

    manifest.json        what the artifact is (see below)
    beam_A.keras         the network of beam A (Keras 3 native format)
    beam_B.keras         ...
    embeddings_A.npz     optional: training-set embeddings of beam A + their labels
    embeddings_B.npz
    templates_A.npz      optional: template spectra of beam A (radial velocities,
    templates_B.npz      resolution, in-painting; see remap.model.templates)
    SHA256SUMS           SHA-256 of every other file (``sha256sum -c`` format)

``manifest.json`` records ``format`` (``"remap-model"``) and ``format_version``;
the label heads (each `~remap.heads.HeadSpec` as a dict with its bin edges);
the survey name and, per beam, the input grid (``wave_min``, ``wave_max``,
``sampling`` in Å, ``npix``) and the file names; the continuum fitter (name
and configuration: observed spectra must be normalized the way the training
spectra were); the library, data-set and training settings and the metrics
given by the caller; the versions of remap, TensorFlow, Keras, numpy and
Python; and the creation time.

Writing is atomic: :func:`save_model` writes into a temporary directory next
to the target and renames it into place only when every file and the hash
list are complete, so a crash leaves either no artifact or the previous one.
Replacing an existing artifact (``overwrite=True``) swaps the two directories
in one ``renameat2(RENAME_EXCHANGE)`` call on Linux (two renames elsewhere).

Loading never executes code stored in the artifact.  :func:`load_model`

1. checks every file against ``SHA256SUMS`` (a modified, missing or extra
   file is refused, naming it) and refuses symbolic links and subdirectories;
2. reads the manifest (plain JSON) and refuses a newer ``format_version``, a
   different Keras major version, and heads whose bins differ from the head
   plugins registered now;
3. checks that each ``.keras`` archive holds exactly ``config.json``,
   ``metadata.json`` and ``model.weights.h5``, and scans its configuration:
   ``Lambda`` layers (which carry Python bytecode), objects from modules
   outside Keras, and custom classes not registered in this session are
   refused before Keras sees the file;
4. loads the networks with ``keras.saving.load_model(..., safe_mode=True,
   compile=False)`` after remap's own layers and every installed plugin are
   loaded (so plugin layers resolve);
5. reads embeddings and templates with ``numpy.load(..., allow_pickle=False)``.

The hashes protect against corruption and accidental edits, not against an
attacker who can also rewrite ``SHA256SUMS``; steps 3 to 5 are what keep a
crafted artifact from running code.
"""

from __future__ import annotations

import ctypes
import datetime
import errno
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._util.fs import fsync_dir as _fsync_dir
from .._util.fs import sha256_of
from .._util.json import jsonable
from ..exceptions import RemapError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST_NAME", "SUMS_NAME", "KERAS_MEMBERS",
           "ArtifactError", "save_model", "verify_files", "model_file", "embeddings_file",
           "templates_file", "Templates", "write_templates"]

#: Format name written to (and required in) every artifact manifest.
FORMAT_NAME = "remap-model"
#: Newest artifact layout this remap writes and reads.
FORMAT_VERSION = 1
#: File name of the manifest.
MANIFEST_NAME = "manifest.json"
#: File name of the hash list (``<sha256>  <file name>`` lines, as ``sha256sum`` writes).
SUMS_NAME = "SHA256SUMS"
#: The members a ``.keras`` archive written by Keras 3 holds; anything else is refused.
KERAS_MEMBERS = frozenset({"config.json", "metadata.json", "model.weights.h5"})

#: Manifest keys set by :func:`save_model` itself; a caller may not supply them.
_RESERVED = ("format", "format_version", "created", "versions", "heads")
_BEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TMP_PREFIX = ".remap-artifact-tmp-"
_OLD_PREFIX = ".remap-artifact-old-"
_EMB_PREFIX = "embedding__"


class ArtifactError(RemapError):
    """A model artifact cannot be written, is damaged, or does not fit this installation."""


def model_file(beam):
    """File name of the network of ``beam`` inside an artifact: ``beam_<beam>.keras``."""
    return f"beam_{beam}.keras"


def embeddings_file(beam):
    """File name of the embeddings of ``beam`` inside an artifact: ``embeddings_<beam>.npz``."""
    return f"embeddings_{beam}.npz"


def templates_file(beam):
    """File name of the templates of ``beam`` inside an artifact: ``templates_<beam>.npz``."""
    return f"templates_{beam}.npz"


class Templates(NamedTuple):
    """Template spectra of one beam (:meth:`RemapModel.templates`).

    Attributes
    ----------
    wave : `~astropy.units.Quantity`, shape (npix,)
        The beam's model grid (Å).
    flux : ndarray, shape (n_templates, npix)
        Continuum-normalized flux, prepared like the training spectra (at the
        model's resolution, no noise).  Row 0 is the mean training spectrum
        (the mean of the others), used for in-painting uncovered pixels and as
        the first radial-velocity template.
    labels : ndarray, shape (n_templates, n_labels)
        Their labels (NaN for the mean).
    label_names : list of str
    meta : dict
        How they were made (library, resolution, label grid).
    """

    wave: object
    flux: np.ndarray
    labels: np.ndarray
    label_names: list
    meta: dict


# --------------------------------------------------------------------------- helpers


def _fsync_file(path):
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _jsonify(obj, where):
    """A JSON-compatible copy of ``obj`` for the manifest; non-finite floats become None."""
    return jsonable(obj, where, what="manifest", error=ArtifactError)


def _versions():
    import keras
    import tensorflow as tf

    from .. import __version__
    return {"remap": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _major(version):
    match = re.match(r"\s*(\d+)", str(version))
    return int(match.group(1)) if match else None


def _head_record(head, edges):
    return {"name": head.name, "label": head.label, "unit": head.unit.to_string(),
            "low": float(head.low), "high": float(head.high),
            "bin_width": float(head.bin_width), "synthetic_sigma": float(head.synthetic_sigma),
            "n_bins": int(head.n_bins), "edges": [float(e) for e in edges]}


def _label_bins(head):
    from ..labels import LabelBins
    return LabelBins.from_head(head)


def _output_dims(model):
    """Mapping output name -> last dimension of that output of a Keras model."""
    names = list(getattr(model, "output_names", None) or [])
    outputs = model.outputs
    if isinstance(model.output, dict):
        names, outputs = list(model.output), list(model.output.values())
    if len(names) != len(outputs):
        raise ArtifactError(f"model {model.name!r}: cannot match its {len(outputs)} outputs "
                            f"to names {names}; build it with a dict of named outputs")
    return {name: int(out.shape[-1]) for name, out in zip(names, outputs)}


def _input_npix(model, what):
    inputs = model.inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 2 or inputs[0].shape[-1] is None:
        shapes = [tuple(t.shape) for t in inputs]
        raise ArtifactError(f"{what}: expected one input of shape (batch, npix); the model "
                            f"has inputs of shapes {shapes}")
    return int(inputs[0].shape[-1])


def _grid_record(grid, beam, npix):
    """Normalize a beam grid (dict or `remap.surveys.base.Beam`) to a dict in Å."""
    try:
        from ..surveys.base import Beam
    except ImportError:  # pragma: no cover
        Beam = ()
    if isinstance(grid, Beam):
        record = {"wave_min": grid.wave_min.value, "wave_max": grid.wave_max.value,
                  "sampling": grid.sampling.value, "npix": grid.npix, "unit": "Angstrom",
                  "resolution": grid.resolution}
    elif isinstance(grid, dict):
        record = dict(_jsonify(grid, f"beams.{beam}"))
        record.setdefault("unit", "Angstrom")
        for key in ("wave_min", "wave_max", "sampling"):
            value = record.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value):
                raise ArtifactError(f"beam {beam!r}: the grid needs a number {key!r} (Å); "
                                    f"received {key}={value!r}")
        if record.get("unit") not in ("Angstrom", "AA"):
            raise ArtifactError(f"beam {beam!r}: grid unit must be 'Angstrom'; received "
                                f"{record.get('unit')!r}")
        record["unit"] = "Angstrom"
        if not (record["wave_max"] > record["wave_min"] and record["sampling"] > 0):
            raise ArtifactError(f"beam {beam!r}: the grid needs wave_min < wave_max and "
                                f"sampling > 0; received {record}")
        expected = int(math.floor((record["wave_max"] - record["wave_min"])
                                  / record["sampling"] + 1e-9)) + 1
        record.setdefault("npix", expected)
        if record["npix"] != expected:
            raise ArtifactError(f"beam {beam!r}: npix={record['npix']} does not match the "
                                f"grid {record['wave_min']}-{record['wave_max']} Å at "
                                f"{record['sampling']} Å ({expected} pixels)")
    else:
        raise ArtifactError(f"beam {beam!r}: the grid must be a dict (wave_min, wave_max, "
                            f"sampling in Å) or a remap Beam; received "
                            f"{type(grid).__name__}")
    if record["npix"] != npix:
        raise ArtifactError(f"beam {beam!r}: the network takes {npix} pixels but the beam "
                            f"grid has {record['npix']}")
    return record


def _fitter_record(fitter):
    """Normalize a continuum-fitter description to ``{"name": ..., "config": {...}}``."""
    if fitter is None:
        return None
    if isinstance(fitter, str):
        return {"name": fitter, "config": {}}
    if hasattr(fitter, "get_config") and hasattr(fitter, "name"):
        return {"name": fitter.name, "config": _jsonify(fitter.get_config(), "fitter.config")}
    if isinstance(fitter, dict) and isinstance(fitter.get("name"), str):
        if "config" in fitter:
            extra = sorted(set(fitter) - {"name", "config"})
            if extra:
                raise ArtifactError(f"manifest 'fitter' has keys 'name', 'config' and "
                                    f"unexpected {extra}; put the options in 'config'")
            config = fitter["config"] or {}
        else:  # the flat form {"name": ..., **options} recorded by build_synthetic
            config = {k: v for k, v in fitter.items() if k != "name"}
        if not isinstance(config, dict):
            raise ArtifactError(f"manifest 'fitter.config' must be a dict; received "
                                f"{type(config).__name__}")
        return {"name": fitter["name"], "config": _jsonify(config, "fitter.config")}
    raise ArtifactError(f"manifest 'fitter' must be None, a fitter name, a continuum fitter "
                        f"or a dict with 'name' (and 'config'); received {fitter!r}")


def _normalize_embeddings(record, beam, heads, dims):
    """Check one beam's embeddings; return the arrays to store in the ``.npz``."""
    if not isinstance(record, dict):
        raise ArtifactError(f"embeddings of beam {beam!r} must be a dict with 'embeddings', "
                            f"'labels' and 'label_names'; received {type(record).__name__}")
    if "embeddings" in record:
        per_head = record["embeddings"]
        extra = sorted(set(record) - {"embeddings", "labels", "label_names"})
        if extra:
            raise ArtifactError(f"embeddings of beam {beam!r}: unexpected keys {extra}")
    else:  # flat form: one key per head (``teff`` or ``teff_embedding``)
        per_head = {}
        for key, value in record.items():
            if key in ("labels", "label_names"):
                continue
            name = key.removesuffix("_embedding")
            if name not in heads:
                raise ArtifactError(f"embeddings of beam {beam!r}: key {key!r} is not a head "
                                    f"of the model (heads: {list(heads)})")
            per_head[name] = value
    for key in ("labels", "label_names"):
        if key not in record:
            raise ArtifactError(f"embeddings of beam {beam!r} need {key!r}")
    if not isinstance(per_head, dict) or not per_head:
        raise ArtifactError(f"embeddings of beam {beam!r}: 'embeddings' must be a non-empty "
                            f"dict head -> (n, d) array")
    label_names = [str(n) for n in record["label_names"]]
    labels = np.asarray(record["labels"], dtype=np.float64)
    if labels.ndim != 2 or labels.shape[1] != len(label_names):
        raise ArtifactError(f"embeddings of beam {beam!r}: labels must have shape (n, "
                            f"{len(label_names)}) to match label_names {label_names}; "
                            f"received shape {labels.shape}")
    arrays = {"labels": labels, "label_names": np.array(label_names, dtype=str)}
    for name, values in per_head.items():
        if name not in heads:
            raise ArtifactError(f"embeddings of beam {beam!r}: {name!r} is not a head of the "
                                f"model (heads: {list(heads)})")
        emb = np.asarray(values, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != labels.shape[0]:
            raise ArtifactError(f"embeddings of beam {beam!r}, head {name!r}: expected shape "
                                f"({labels.shape[0]}, d) like the labels; received {emb.shape}")
        want = dims.get(f"{name}_embedding")
        if want is not None and emb.shape[1] != want:
            raise ArtifactError(f"embeddings of beam {beam!r}, head {name!r}: the model's "
                                f"{name}_embedding output has {want} dimensions; received "
                                f"{emb.shape[1]}")
        if not np.all(np.isfinite(emb)):
            raise ArtifactError(f"embeddings of beam {beam!r}, head {name!r} contain "
                                f"non-finite values")
        arrays[_EMB_PREFIX + name] = emb
    return arrays


def _normalize_templates(record, beam, grid):
    """Check one beam's templates; return the arrays to store in the ``.npz``."""
    if not isinstance(record, dict):
        raise ArtifactError(f"templates of beam {beam!r} must be a dict with 'flux', 'labels' "
                            f"and 'label_names'; received {type(record).__name__}")
    extra = sorted(set(record) - {"wave", "flux", "labels", "label_names", "meta"})
    if extra:
        raise ArtifactError(f"templates of beam {beam!r}: unexpected keys {extra}")
    for key in ("flux", "labels", "label_names"):
        if key not in record:
            raise ArtifactError(f"templates of beam {beam!r} need {key!r}")
    npix = int(grid["npix"])
    wave = grid["wave_min"] + np.arange(npix) * grid["sampling"]
    if record.get("wave") is not None:
        given = np.asarray(getattr(record["wave"], "value", record["wave"]), dtype=np.float64)
        if given.shape != wave.shape or not np.allclose(given, wave, rtol=0,
                                                        atol=1e-6 * grid["sampling"]):
            raise ArtifactError(f"templates of beam {beam!r} must be on the beam's model grid "
                                f"({grid['wave_min']:g}-{grid['wave_max']:g} Å, {npix} pixels)")
    flux = np.asarray(record["flux"], dtype=np.float32)
    if flux.ndim != 2 or flux.shape[1] != npix or flux.shape[0] < 1:
        raise ArtifactError(f"templates of beam {beam!r}: flux must have shape (n, {npix}); "
                            f"received {flux.shape}")
    if not np.all(np.isfinite(flux)):
        raise ArtifactError(f"templates of beam {beam!r} contain non-finite flux")
    names = [str(n) for n in record["label_names"]]
    labels = np.asarray(record["labels"], dtype=np.float64)
    if labels.shape != (flux.shape[0], len(names)):
        raise ArtifactError(f"templates of beam {beam!r}: labels must have shape "
                            f"({flux.shape[0]}, {len(names)}); received {labels.shape}")
    meta = _jsonify(dict(record.get("meta") or {}), f"templates of beam {beam!r}: meta")
    return {"wave": wave, "flux": flux, "labels": labels,
            "label_names": np.array(names, dtype=str),
            "meta": np.array(json.dumps(meta, allow_nan=False), dtype=str)}


def _per_beam(records, what, beams):
    """``{beam: record}`` (or None: ``{}``), checked to name only beams that have a model.

    Raises
    ------
    ArtifactError
        ``records`` is not a dict, or names a beam not in ``beams``.
    """
    if records is None:
        return {}
    if not isinstance(records, dict):
        raise ArtifactError(f"{what} must be a dict beam -> dict; received "
                            f"{type(records).__name__}")
    unknown = sorted(set(records) - set(beams))
    if unknown:
        raise ArtifactError(f"{what} given for beams {unknown} that have no model "
                            f"(models: {sorted(beams)})")
    return records


def _templates_arrays_for(templates, grids):
    """``{beam: arrays}`` of :func:`_normalize_templates` for ``{beam: record}``."""
    return {beam: _normalize_templates(rec, beam, grids[beam]) for beam, rec in
            _per_beam(templates, "templates", grids).items()}


# --------------------------------------------------------------------------- writing

def _renameat2_exchange(a, b):
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return False
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if func(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def _is_artifact_dir(path):
    """True for an empty directory or one whose manifest says it is a remap artifact."""
    if not any(path.iterdir()):
        return True
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME


def _write_npz(path, arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _save_keras(model, path):
    model.save(path)
    _fsync_file(path)


def save_model(directory, models, manifest, *, embeddings=None, overwrite=False, heads=None,
               templates=None):
    """Write trained networks, their embeddings and a manifest as an artifact directory.

    Parameters
    ----------
    directory : str or path
        The artifact directory to create (its parent is created if missing).
    models : dict of str to `keras.Model`
        One network per beam, as built by :func:`remap.nn.model.build_model`:
        one input ``(batch, npix)`` and a dict of outputs, ``<head>`` (PMF)
        and optionally ``<head>_embedding`` for each head.  Every beam's
        network must have the same outputs.
    manifest : dict
        What to record about the artifact (JSON values; numpy scalars and
        arrays, paths and Quantities are converted; non-finite floats become
        null):

        ``survey`` (str, required)
            Survey name, e.g. ``"marvels"``.
        ``beams`` (dict, optional)
            Beam -> input grid: a dict with ``wave_min``, ``wave_max``,
            ``sampling`` (Å) and optionally ``npix``, or a
            `remap.surveys.base.Beam`.  Beams left out are taken from the
            registered survey.  A grid's ``npix`` must equal the network's
            input size.
        ``fitter`` (optional)
            The continuum fitter of the training spectra: a fitter object, its
            name, ``{"name": ..., "config": {...}}`` or the flat
            ``{"name": ..., **options}`` of a data-set manifest.
        ``library``, ``dataset``, ``training``, ``metrics``, ... (optional)
            Stored as given.

        ``format``, ``format_version``, ``created``, ``versions`` and
        ``heads`` are written by this function and may not be supplied.
    embeddings : dict of str to dict, optional
        Per beam, the embeddings of the training spectra for nearest-neighbour
        look-ups: ``{"embeddings": {head: (n, d) array}, "labels": (n, k)
        array, "label_names": k names}`` (the per-head arrays may also be
        given at the top level, keyed ``<head>`` or ``<head>_embedding``).
        Stored as ``float32`` / ``float64`` / unicode arrays only.
    overwrite : bool
        Replace an existing artifact at ``directory`` (atomically).  Only an
        empty directory or a remap artifact is ever replaced.
    heads : sequence of `remap.heads.HeadSpec`, optional
        The heads of the networks; by default the registered heads named like
        the networks' PMF outputs.
    templates : dict of str to dict, optional
        Per beam, template spectra on the beam's grid (see
        :func:`remap.model.templates.build_templates`): ``{"flux": (n, npix),
        "labels": (n, k), "label_names": k names, "meta": {...}}`` (optional
        ``"wave"``, checked against the grid).  Row 0 is the mean training
        spectrum.  Stored as ``templates_<beam>.npz``.

    Returns
    -------
    path : `pathlib.Path`
        The artifact directory.

    Raises
    ------
    ArtifactError
        Bad arguments (naming the beam, head or manifest key), an existing
        target without ``overwrite``, or a target that is not an artifact.
        Any failure while writing leaves no partial directory behind.
    """
    from .safety import inspect_keras_file  # safety imports this module (ArtifactError)
    import keras

    target = Path(directory).absolute()
    if not isinstance(models, dict) or not models:
        raise ArtifactError(f"models must be a non-empty dict beam -> keras.Model; received "
                            f"{models!r}")
    if not isinstance(manifest, dict):
        raise ArtifactError(f"manifest must be a dict; received {type(manifest).__name__}")
    reserved = sorted(set(manifest) & set(_RESERVED))
    if reserved:
        raise ArtifactError(f"manifest keys {reserved} are written by save_model and cannot "
                            f"be supplied")
    survey_name = manifest.get("survey")
    if not isinstance(survey_name, str) or not survey_name:
        raise ArtifactError(f"manifest needs 'survey', the survey name (e.g. 'marvels'); "
                            f"received {survey_name!r}")
    embeddings = _per_beam(embeddings, "embeddings", models)

    # ---- the networks: heads, input sizes
    outputs = None
    npix = {}
    for beam, model in models.items():
        if not isinstance(beam, str) or not _BEAM_NAME.match(beam):
            raise ArtifactError(f"beam names must be 1-64 letters, digits, '_' or '-' "
                                f"(starting with a letter or digit); received {beam!r}")
        if not isinstance(model, keras.Model):
            raise ArtifactError(f"models[{beam!r}] must be a keras.Model; received "
                                f"{type(model).__name__}")
        dims = _output_dims(model)
        if outputs is None:
            outputs = dims
        elif dims != outputs:
            raise ArtifactError(f"every beam's network must have the same outputs; beam "
                                f"{beam!r} has {dims}, another has {outputs}")
        npix[beam] = _input_npix(model, f"the network of beam {beam!r}")
    head_names = [n for n in outputs if not n.endswith("_embedding")]
    if not head_names:
        raise ArtifactError(f"the networks have no PMF outputs (outputs: {list(outputs)})")
    orphans = [n for n in outputs if n.endswith("_embedding")
               and n.removesuffix("_embedding") not in head_names]
    if orphans:
        raise ArtifactError(f"embedding outputs {orphans} have no matching PMF output")
    if heads is None:
        from ..plugins import registry
        registered = registry("head")
        missing = [n for n in head_names if n not in registered]
        if missing:
            raise ArtifactError(f"network outputs {missing} are not registered heads "
                                f"(registered: {list(registered)}); pass heads=")
        head_specs = {n: registered[n] for n in head_names}
    else:
        head_specs = {h.name: h for h in heads}
        missing = [n for n in head_names if n not in head_specs]
        if missing:
            raise ArtifactError(f"network outputs {missing} are not among heads "
                                f"{list(head_specs)}")
    head_records = []
    for name in head_names:
        spec = head_specs[name]
        bins = _label_bins(spec)
        if outputs[name] != bins.n_bins:
            raise ArtifactError(f"output {name!r} has {outputs[name]} bins but head {name!r} "
                                f"has {bins.n_bins}")
        head_records.append(_head_record(spec, bins.edges))

    # ---- beams, fitter, the rest of the manifest
    given_beams = manifest.get("beams") or {}
    if not isinstance(given_beams, dict):
        raise ArtifactError(f"manifest 'beams' must be a dict beam -> grid; received "
                            f"{type(given_beams).__name__}")
    extra = sorted(set(given_beams) - set(models))
    if extra:
        raise ArtifactError(f"manifest 'beams' lists {extra}, which have no model")
    survey = None
    beam_records = {}
    for beam in models:
        grid = given_beams.get(beam)
        if grid is None:
            if survey is None:
                from ..plugins import get_survey
                try:
                    survey = get_survey(survey_name)
                except RemapError as exc:
                    raise ArtifactError(f"no grid given for beam {beam!r} in manifest "
                                        f"'beams' and the survey is not available: "
                                        f"{exc}") from None
            if beam not in survey.beams:
                raise ArtifactError(f"survey {survey_name!r} has no beam {beam!r} (beams: "
                                    f"{list(survey.beams)}); give its grid in manifest "
                                    f"'beams'")
            grid = survey.beams[beam]
        record = {"grid": _grid_record(grid, beam, npix[beam]), "model": model_file(beam),
                  "n_params": int(models[beam].count_params())}
        if beam in embeddings:
            record["embeddings"] = embeddings_file(beam)
        beam_records[beam] = record
    stored_templates = _templates_arrays_for(
        templates, {b: r["grid"] for b, r in beam_records.items()})
    for beam, arrays in stored_templates.items():
        beam_records[beam]["templates"] = templates_file(beam)
        beam_records[beam]["n_templates"] = int(arrays["flux"].shape[0])
    stored_embeddings = {beam: _normalize_embeddings(rec, beam, head_names, outputs)
                         for beam, rec in embeddings.items()}
    for beam, arrays in stored_embeddings.items():
        beam_records[beam]["n_embeddings"] = int(arrays["labels"].shape[0])
    body = {k: v for k, v in manifest.items() if k not in ("beams", "fitter")}
    full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc)
            .isoformat(timespec="seconds"),
            "versions": _versions(), "survey": survey_name, "heads": head_records,
            "beams": beam_records, "fitter": _fitter_record(manifest.get("fitter")),
            **_jsonify({k: v for k, v in body.items() if k != "survey"}, "")}
    manifest_text = json.dumps(full, indent=2, allow_nan=False) + "\n"

    # ---- the target
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise ArtifactError(f"{target} already exists; pass overwrite=True to replace it")
        if target.is_symlink() or not target.is_dir():
            raise ArtifactError(f"{target} exists and is not a directory; refusing to "
                                f"replace it")
        if not _is_artifact_dir(target):
            raise ArtifactError(f"{target} is not empty and not a remap artifact (no "
                                f"{MANIFEST_NAME} of format {FORMAT_NAME!r}); refusing to "
                                f"replace it")
    target.parent.mkdir(parents=True, exist_ok=True)

    # ---- write everything into a temporary sibling, then move it into place
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX + target.name + "-", dir=target.parent))
    try:
        for beam, model in models.items():
            _save_keras(model, tmp / model_file(beam))
            # refuse now what load_model would refuse (Lambda layers, unknown classes)
            inspect_keras_file(tmp / model_file(beam))
        for beam, arrays in stored_embeddings.items():
            _write_npz(tmp / embeddings_file(beam), arrays)
        for beam, arrays in stored_templates.items():
            _write_npz(tmp / templates_file(beam), arrays)
        _write_text(tmp / MANIFEST_NAME, manifest_text)
        _seal_and_swap(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _seal_and_swap(tmp, target):
    """Write ``SHA256SUMS`` for ``tmp`` and move it to ``target`` (replacing it atomically)."""
    names = sorted(p.name for p in tmp.iterdir())
    sums = "".join(f"{sha256_of(tmp / n)}  {n}\n" for n in names)
    _write_text(tmp / SUMS_NAME, sums)
    _fsync_dir(tmp)
    os.chmod(tmp, 0o755)
    if target.exists():
        if _renameat2_exchange(tmp, target):
            old = tmp  # after the exchange the temporary name holds the old artifact
        else:
            old = Path(tempfile.mkdtemp(prefix=_OLD_PREFIX + target.name + "-",
                                        dir=target.parent))
            os.rename(target, old / "artifact")
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old / "artifact", target)
                shutil.rmtree(old, ignore_errors=True)
                raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)
    _fsync_dir(target.parent)


def write_templates(directory, templates):
    """Add (or replace) the template spectra of an existing artifact, re-hashing it.

    The artifact is verified first (:func:`verify_files`), copied into a
    temporary sibling with the new ``templates_<beam>.npz`` files, its
    manifest's beam records pointing at them and a new ``SHA256SUMS``, and
    swapped into place atomically (like :func:`save_model` with
    ``overwrite=True``).  The networks and embeddings are copied byte for byte.

    Parameters
    ----------
    directory : str or path
        An artifact directory.
    templates : dict of str to dict
        Per beam, as the ``templates`` argument of :func:`save_model`.

    Returns
    -------
    path : `pathlib.Path`

    Raises
    ------
    ArtifactError
        The artifact fails verification, a beam is unknown, or the templates
        are malformed or not on the beam's grid.
    """
    target = Path(directory).absolute()
    verify_files(target)
    manifest = _read_manifest(target)
    grids = {b: r.get("grid", {}) for b, r in manifest["beams"].items()}
    stored = _templates_arrays_for(templates, grids)
    if not stored:
        raise ArtifactError("no templates given")
    for beam, arrays in stored.items():
        manifest["beams"][beam]["templates"] = templates_file(beam)
        manifest["beams"][beam]["n_templates"] = int(arrays["flux"].shape[0])
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX + target.name + "-", dir=target.parent))
    try:
        for entry in target.iterdir():
            if entry.name in (SUMS_NAME, MANIFEST_NAME) or entry.name in {
                    templates_file(b) for b in stored}:
                continue
            shutil.copy2(entry, tmp / entry.name)
            _fsync_file(tmp / entry.name)
        for beam, arrays in stored.items():
            _write_npz(tmp / templates_file(beam), arrays)
        _write_text(tmp / MANIFEST_NAME, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
        _seal_and_swap(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- reading

def verify_files(path):
    """Check an artifact directory against its ``SHA256SUMS``.

    Parameters
    ----------
    path : str or path

    Returns
    -------
    hashes : dict of str to str
        File name -> SHA-256 of every verified file.

    Raises
    ------
    ArtifactError
        Not a directory, no or malformed ``SHA256SUMS``, a symbolic link or
        subdirectory, a file that is missing, not listed, or whose hash
        differs; the message names the file.
    """
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"{root}: no such artifact directory")
    sums_path = root / SUMS_NAME
    if sums_path.is_symlink() or not sums_path.is_file():
        raise ArtifactError(f"{root}: no {SUMS_NAME}; not a remap artifact (or damaged)")
    listed = {}
    for number, line in enumerate(sums_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-f]{64}) [ *]([^/\\]+)", line)
        if match is None or match.group(2) in (".", "..", SUMS_NAME):
            raise ArtifactError(f"{sums_path}: line {number} is not '<sha256>  <file name>': "
                                f"{line!r}")
        if match.group(2) in listed:
            raise ArtifactError(f"{sums_path}: {match.group(2)!r} is listed twice")
        listed[match.group(2)] = match.group(1)
    present = {}
    for entry in root.iterdir():
        if entry.name == SUMS_NAME:
            continue
        if entry.is_symlink():
            raise ArtifactError(f"{root}: {entry.name!r} is a symbolic link; artifacts hold "
                                f"regular files only")
        if not entry.is_file():
            raise ArtifactError(f"{root}: unexpected {'directory' if entry.is_dir() else 'entry'}"
                                f" {entry.name!r}; artifacts hold regular files only")
        present[entry.name] = entry
    for name in sorted(set(listed) - set(present)):
        raise ArtifactError(f"{root}: file {name!r} listed in {SUMS_NAME} is missing")
    for name in sorted(set(present) - set(listed)):
        raise ArtifactError(f"{root}: unexpected file {name!r}, not listed in {SUMS_NAME}")
    for name in sorted(listed):
        if sha256_of(present[name]) != listed[name]:
            raise ArtifactError(f"{root}: file {name!r} does not match its SHA-256 in "
                                f"{SUMS_NAME} (corrupted or modified)")
    return listed


def _read_manifest(root):
    path = root / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{root}: no {MANIFEST_NAME}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArtifactError(f"{path}: format is {found!r}, expected {FORMAT_NAME!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ArtifactError(f"{path}: format_version must be a positive integer; received "
                            f"{version!r}")
    if version > FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact format version {version} is newer than this "
                            f"remap supports (up to {FORMAT_VERSION}); upgrade remap to load "
                            f"it")
    for key, kind in (("heads", list), ("beams", dict), ("survey", str), ("versions", dict)):
        if not isinstance(manifest.get(key), kind) or not manifest[key]:
            raise ArtifactError(f"{path}: {key!r} must be a non-empty {kind.__name__}")
    return manifest


def _check_versions(manifest, root):
    import keras
    saved = manifest["versions"].get("keras")
    if _major(saved) != _major(keras.__version__):
        raise ArtifactError(f"{root}: the networks were saved with Keras {saved}; this is "
                            f"Keras {keras.__version__}, a different major version whose "
                            f"format may differ. Load it with Keras {_major(saved)}.x or "
                            f"retrain")


def _check_heads(manifest, root):
    """The registered `HeadSpec` of each stored head; refuse bins that differ."""
    from ..plugins import registry
    registered = registry("head")
    specs = []
    for record in manifest["heads"]:
        name = record.get("name") if isinstance(record, dict) else None
        if not isinstance(name, str):
            raise ArtifactError(f"{root}: malformed head entry in {MANIFEST_NAME}: {record!r}")
        if name not in registered:
            raise ArtifactError(f"{root}: the artifact predicts head {name!r}, but no head "
                                f"plugin of that name is registered (registered: "
                                f"{list(registered)}); install the plugin that provides it")
        spec = registered[name]
        edges = _label_bins(spec).edges
        stored = np.asarray(record.get("edges", []), dtype=float)
        same = (record.get("unit") == spec.unit.to_string() and stored.shape == edges.shape
                and np.allclose(stored, edges, rtol=0, atol=1e-9 * max(1.0, abs(spec.high))))
        if not same:
            raise ArtifactError(
                f"{root}: head {name!r} of the artifact has {record.get('n_bins')} bins over "
                f"{record.get('low')}-{record.get('high')} {record.get('unit')} (width "
                f"{record.get('bin_width')}), but the registered head plugin {name!r} has "
                f"{spec.n_bins} bins over {spec.low}-{spec.high} {spec.unit.to_string()} "
                f"(width {spec.bin_width}); the network's outputs would be misread. Use the "
                f"head definition the model was trained with")
        specs.append(spec)
    return specs
