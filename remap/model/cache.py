"""The per-process model cache and the default model: :func:`cached_model`, :func:`default_model`.

A model artifact is loaded once per process and kept: :func:`remap.fit`,
:func:`remap.fit_iter`, the catalogue workers (:mod:`remap.catalog`) and the
evaluation (:mod:`remap.evaluation`) all go through :func:`resolve_model`.
"""

from __future__ import annotations

import importlib.resources
import os
import threading
from pathlib import Path

from .loading import load_model
from .runtime import RemapModel

__all__ = ["DEFAULT_MODEL_PATH", "cached_model", "default_model", "resolve_model"]

#: Directory of the model shipped with remap (see the model card in the docs).
DEFAULT_MODEL_PATH = Path(os.fspath(importlib.resources.files("remap") / "data" / "models"
                                    / "default"))

_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def cached_model(path: str | os.PathLike) -> RemapModel:
    """The model at ``path``, loaded once per process with :func:`remap.load_model`.

    Keyed by the path and the manifest file's modification time and size (one
    ``stat``, cheap enough for every :func:`remap.fit` call), so a model
    re-trained into the same directory is loaded again.

    Parameters
    ----------
    path : str or path-like
        The artifact directory.

    Returns
    -------
    model : `remap.model.RemapModel`

    Raises
    ------
    remap.model.ArtifactError
        The artifact cannot be loaded.
    """
    resolved = Path(path).expanduser().resolve()
    try:
        st = (resolved / "manifest.json").stat()
        key = (str(resolved), st.st_mtime_ns, st.st_size)
    except OSError:
        key = (str(resolved), None, None)   # load_model reports what is missing
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = load_model(resolved)
            _CACHE[key] = model
    return model


def default_model() -> RemapModel:
    """The model shipped with remap, loaded once per process.

    Returns
    -------
    model : `remap.model.RemapModel`
        The artifact in :data:`DEFAULT_MODEL_PATH` (trained with
        ``configs/default.toml``; see the model card in the documentation).

    Raises
    ------
    remap.model.ArtifactError
        The installed artifact is damaged or does not fit this installation.
    """
    return cached_model(DEFAULT_MODEL_PATH)


def resolve_model(model: None | str | os.PathLike | RemapModel) -> RemapModel:
    """The model a ``model=`` argument names: None (default model), a path or a model.

    Parameters
    ----------
    model : None, str, path-like or `remap.model.RemapModel`
        None for :func:`default_model`; a path is loaded once per process
        (:func:`cached_model`); a loaded model is returned as it is.

    Returns
    -------
    model : `remap.model.RemapModel`

    Raises
    ------
    TypeError
        Anything else.
    remap.model.ArtifactError
        The artifact cannot be loaded.
    """
    if model is None:
        return default_model()
    if isinstance(model, RemapModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return cached_model(model)
    raise TypeError(f"model must be None (the default model), a path to a model artifact or "
                    f"a remap.model.RemapModel; received {type(model).__name__}")
