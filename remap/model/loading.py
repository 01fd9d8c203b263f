"""Loading a model artifact: hash checks, manifest checks, the Keras scan, then the networks."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .artifact import (MANIFEST_NAME, SUMS_NAME, ArtifactError, _BEAM_NAME, _EMB_PREFIX,
                       _check_heads, _check_versions, _input_npix, _output_dims,
                       _read_manifest, embeddings_file, model_file, templates_file,
                       verify_files)
from .runtime import RemapModel
from .safety import inspect_keras_file, keras_load, load_plugins
from .survey_grids import check_survey_grids


__all__ = ["load_model"]


def _npz_arrays(path, what):
    """Every array of the ``.npz`` file ``path`` (no pickles), or an ArtifactError naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path.name}: cannot read the {what} ({exc})") from None


def _load_embeddings(path, heads):
    arrays = _npz_arrays(path, "embeddings")
    for key in ("labels", "label_names"):
        if key not in arrays:
            raise ArtifactError(f"{path.name}: no {key!r} array")
    labels = arrays.pop("labels")
    names = arrays.pop("label_names")
    if labels.ndim != 2 or names.ndim != 1 or labels.shape[1] != names.size \
            or names.dtype.kind != "U" or labels.dtype.kind != "f":
        raise ArtifactError(f"{path.name}: labels {labels.shape} {labels.dtype} do not match "
                            f"label_names {names.shape} {names.dtype}")
    per_head = {}
    for key, emb in arrays.items():
        name = key.removeprefix(_EMB_PREFIX)
        if not key.startswith(_EMB_PREFIX) or name not in heads:
            raise ArtifactError(f"{path.name}: unexpected array {key!r}")
        if emb.ndim != 2 or emb.shape[0] != labels.shape[0] or emb.dtype != np.float32:
            raise ArtifactError(f"{path.name}: embeddings of {name!r} have shape {emb.shape} "
                                f"and dtype {emb.dtype}; expected ({labels.shape[0]}, d) "
                                f"float32")
        per_head[name] = emb
    return {"embeddings": per_head, "labels": labels, "label_names": [str(n) for n in names]}


def _load_templates(path, grid):
    arrays = _npz_arrays(path, "templates")
    want = {"wave", "flux", "labels", "label_names", "meta"}
    if set(arrays) != want:
        raise ArtifactError(f"{path.name}: expected arrays {sorted(want)}; found "
                            f"{sorted(arrays)}")
    wave, flux, labels, names = (arrays[k] for k in ("wave", "flux", "labels", "label_names"))
    npix = grid.get("npix")
    if wave.ndim != 1 or wave.size != npix or wave.dtype.kind != "f" or flux.ndim != 2 \
            or flux.shape[1] != npix or flux.dtype != np.float32 or flux.shape[0] < 1 \
            or labels.shape != (flux.shape[0], names.size) or labels.dtype.kind != "f" \
            or names.dtype.kind != "U" or arrays["meta"].dtype.kind != "U" \
            or not np.all(np.isfinite(flux)):
        raise ArtifactError(f"{path.name}: malformed templates (wave {wave.shape}, flux "
                            f"{flux.shape} {flux.dtype}, labels {labels.shape}, label_names "
                            f"{names.shape}; the beam grid has {npix} pixels)")
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError as exc:
        raise ArtifactError(f"{path.name}: the templates' meta is not JSON ({exc})") from None
    return {"wave": wave, "flux": flux, "labels": labels,
            "label_names": [str(n) for n in names], "meta": meta if isinstance(meta, dict)
            else {}}


def load_model(path):
    """Load an artifact written by :func:`save_model`, verifying it first.

    Parameters
    ----------
    path : str or path
        The artifact directory.

    Returns
    -------
    model : `RemapModel`

    Raises
    ------
    ArtifactError
        A file is modified, missing or unexpected (named); the format version
        is newer than this remap reads; the Keras major version differs; a
        head is not registered or its bins differ from the registered head
        plugin's; a network contains a Lambda layer or an unknown class; or
        Keras cannot load it.
    """
    root = Path(path)
    verify_files(root)
    manifest = _read_manifest(root)
    expected = {MANIFEST_NAME}
    for beam, record in manifest["beams"].items():
        if not isinstance(beam, str) or not _BEAM_NAME.match(beam) or not isinstance(record,
                                                                                     dict):
            raise ArtifactError(f"{root}: malformed beam entry {beam!r} in {MANIFEST_NAME}")
        if record.get("model") != model_file(beam):
            raise ArtifactError(f"{root}: beam {beam!r} must use model file "
                                f"{model_file(beam)!r}; manifest says {record.get('model')!r}")
        expected.add(model_file(beam))
        for key, file_of in (("embeddings", embeddings_file), ("templates", templates_file)):
            if record.get(key) is not None:    # optional members
                if record[key] != file_of(beam):
                    raise ArtifactError(f"{root}: beam {beam!r} must use {key} file "
                                        f"{file_of(beam)!r}; manifest says {record[key]!r}")
                expected.add(file_of(beam))
    present = {p.name for p in root.iterdir()} - {SUMS_NAME}
    for name in sorted(present - expected):
        raise ArtifactError(f"{root}: unexpected file {name!r}, not part of the artifact "
                            f"described by {MANIFEST_NAME}")
    for name in sorted(expected - present):
        raise ArtifactError(f"{root}: file {name!r} named in {MANIFEST_NAME} is missing")
    _check_versions(manifest, root)
    load_plugins()
    check_survey_grids(manifest, str(root), ArtifactError)
    heads = _check_heads(manifest, root)
    head_names = [h.name for h in heads]
    models, embeddings, templates = {}, {}, {}
    for beam, record in manifest["beams"].items():
        if record.get("templates") is not None:
            templates[beam] = _load_templates(root / record["templates"], record.get("grid", {}))
        file = root / record["model"]
        inspect_keras_file(file)
        model = keras_load(file)
        dims = _output_dims(model)
        for head in heads:
            if dims.get(head.name) != head.n_bins:
                raise ArtifactError(f"{file.name}: output {head.name!r} has "
                                    f"{dims.get(head.name)} bins; head {head.name!r} has "
                                    f"{head.n_bins}")
        npix = _input_npix(model, file.name)
        if npix != record.get("grid", {}).get("npix"):
            raise ArtifactError(f"{file.name}: the network takes {npix} pixels, the manifest "
                                f"grid of beam {beam!r} has {record.get('grid', {}).get('npix')}")
        models[beam] = model
        if record.get("embeddings") is not None:
            embeddings[beam] = _load_embeddings(root / record["embeddings"], head_names)
    return RemapModel(root, manifest, models, heads, embeddings, templates=templates)
