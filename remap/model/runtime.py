"""The runtime model: `RemapModel` (networks, grids, templates, embeddings) and neighbours."""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .artifact import ArtifactError, Templates, _input_npix, _label_bins, _output_dims


__all__ = ["Neighbours", "RemapModel", "compute_embeddings"]


class Neighbours(NamedTuple):
    """Nearest training spectra in embedding space (:meth:`RemapModel.nearest`).

    Attributes
    ----------
    indices : ndarray of int, shape (m, k)
        Rows of the stored training embeddings, nearest first.
    distances : ndarray of float, shape (m, k)
        Euclidean distances in embedding space.
    labels : ndarray of float, shape (m, k, n_labels)
        The neighbours' labels.
    label_names : list of str
        Names of the label columns.
    """

    indices: np.ndarray
    distances: np.ndarray
    labels: np.ndarray
    label_names: list


class RemapModel:
    """A loaded artifact: one network per beam plus what is needed to use it.

    Made by :func:`load_model`.

    Attributes
    ----------
    path : `pathlib.Path`
        The artifact directory.
    manifest : dict
        The parsed ``manifest.json``.
    beams : list of str
    heads : list of `remap.heads.HeadSpec`
        The registered heads (checked to have the stored bins).
    bins : dict of str to `remap.labels.LabelBins`
    survey : str
        Survey name.
    fitter : dict or None
        ``{"name": ..., "config": {...}}`` of the continuum fitter used on
        the training spectra.
    models : dict of str to `keras.Model`
    """

    def __init__(self, path, manifest, models, heads, embeddings, templates=None):
        self.path = Path(path)
        self.manifest = manifest
        self.models = dict(models)
        self.beams = list(self.models)
        self.heads = list(heads)
        self.bins = {h.name: _label_bins(h) for h in self.heads}
        self.survey = manifest["survey"]
        self.fitter = manifest.get("fitter")
        self._embeddings = dict(embeddings)
        self._templates = dict(templates or {})
        self._trees = {}
        self._predict_fns = {}

    def __repr__(self):
        return (f"<RemapModel {str(self.path)!r}: survey {self.survey!r}, beams {self.beams}, "
                f"heads {[h.name for h in self.heads]}>")

    def _check_beam(self, beam):
        if beam not in self.models:
            raise ArtifactError(f"the artifact has no beam {beam!r}; beams: {self.beams}")

    def grid(self, beam):
        """The input grid of ``beam``: ``wave_min``, ``wave_max``, ``sampling`` (Å), ``npix``."""
        self._check_beam(beam)
        return dict(self.manifest["beams"][beam]["grid"])

    def wavelength(self, beam):
        """The input pixel grid of ``beam`` as a `~astropy.units.Quantity` in Å."""
        import astropy.units as u
        g = self.grid(beam)
        return (g["wave_min"] + np.arange(g["npix"]) * g["sampling"]) * u.AA

    def continuum_fitter(self):
        """A continuum fitter configured like the one of the training spectra (or None).

        Raises
        ------
        remap.UnknownPluginError
            The fitter plugin is not installed.
        """
        if self.fitter is None:
            return None
        from ..plugins import get_continuum_fitter
        return get_continuum_fitter(self.fitter["name"], **self.fitter.get("config", {}))

    def _predict_fn(self, beam):
        if beam not in self._predict_fns:
            import tensorflow as tf
            model = self.models[beam]
            npix = _input_npix(model, beam)

            @tf.function(input_signature=[tf.TensorSpec((None, npix), tf.float32)],
                         reduce_retracing=True)
            def run(x):
                return model(x, training=False)

            self._predict_fns[beam] = run
        return self._predict_fns[beam]

    def predict(self, beam, flux2d, batch_size=256):
        """Run the network of ``beam`` on continuum-normalized spectra.

        Parameters
        ----------
        beam : str
        flux2d : array_like, shape (n, npix)
            Normalized flux on the beam's grid (:meth:`wavelength`), finite.
            A dimensionless `~astropy.units.Quantity` is accepted.
        batch_size : int
            Spectra per forward pass.

        Returns
        -------
        outputs : dict of str to ndarray
            The network's outputs by name: ``<head>`` -> PMF, shape
            ``(n, n_bins)`` (rows sum to 1), and ``<head>_embedding`` ->
            embedding, shape ``(n, d)``, for each head with an embedding
            output.

        Raises
        ------
        ArtifactError
            Unknown beam.
        ValueError
            Wrong shape, or non-finite flux (the rows are named).
        """
        self._check_beam(beam)
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1; received {batch_size!r}")
        if hasattr(flux2d, "unit"):
            import astropy.units as u
            flux2d = u.Quantity(flux2d).to_value(u.dimensionless_unscaled)
        flux = np.asarray(flux2d, dtype=np.float32)
        npix = self.grid(beam)["npix"]
        if flux.ndim != 2 or flux.shape[1] != npix:
            raise ValueError(f"flux for beam {beam!r} must have shape (n, {npix}); received "
                             f"shape {flux.shape}")
        bad = np.flatnonzero(~np.all(np.isfinite(flux), axis=1))
        if bad.size:
            raise ValueError(f"flux rows {bad[:10].tolist()}{' ...' if bad.size > 10 else ''} "
                             f"contain non-finite values; interpolate over masked pixels "
                             f"first")
        run = self._predict_fn(beam)
        parts = []
        for start in range(0, flux.shape[0], int(batch_size)):
            out = run(flux[start:start + int(batch_size)])
            parts.append({k: v.numpy() for k, v in out.items()})
        if not parts:
            dims = _output_dims(self.models[beam])
            return {k: np.empty((0, d), np.float32) for k, d in dims.items()}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def has_templates(self, beam):
        """True when template spectra of ``beam`` are stored."""
        self._check_beam(beam)
        return beam in self._templates

    def templates(self, beam):
        """The stored template spectra of ``beam`` (radial velocities, resolution, in-painting).

        Returns
        -------
        templates : `Templates`
            ``wave`` (Quantity, Å, the model grid), ``flux`` (n, npix) float32
            normalized (row 0: the mean training spectrum), ``labels`` (n, k),
            ``label_names``, ``meta`` (arrays are read-only views).

        Raises
        ------
        ArtifactError
            Unknown beam, or no templates stored (add them with
            :func:`add_templates` or ``remap model add-templates``).
        """
        import astropy.units as u
        self._check_beam(beam)
        if beam not in self._templates:
            raise ArtifactError(f"the artifact {str(self.path)!r} stores no templates for beam "
                                f"{beam!r}; add them with remap.model.add_templates(path) or "
                                f"'remap model add-templates PATH'")
        rec = self._templates[beam]
        flux = rec["flux"].view()
        flux.flags.writeable = False
        labels = rec["labels"].view()
        labels.flags.writeable = False
        return Templates(rec["wave"] * u.AA, flux, labels, list(rec["label_names"]),
                         dict(rec["meta"]))

    def has_embeddings(self, beam):
        """True when training-set embeddings of ``beam`` are stored."""
        self._check_beam(beam)
        return beam in self._embeddings

    def embeddings(self, beam):
        """The stored training-set embeddings of ``beam``.

        Returns
        -------
        record : dict
            ``{"embeddings": {head: (n, d) float32}, "labels": (n, k) float64,
            "label_names": [k names]}`` (arrays are read-only views).

        Raises
        ------
        ArtifactError
            Unknown beam, or no embeddings stored for it.
        """
        self._check_beam(beam)
        if beam not in self._embeddings:
            raise ArtifactError(f"the artifact stores no embeddings for beam {beam!r}")
        record = self._embeddings[beam]
        views = {}
        for name, emb in record["embeddings"].items():
            view = emb.view()
            view.flags.writeable = False
            views[name] = view
        labels = record["labels"].view()
        labels.flags.writeable = False
        return {"embeddings": views, "labels": labels, "label_names": list(record["label_names"])}

    def nearest(self, beam, head, query_embeddings, k=5):
        """The stored training spectra nearest to query embeddings (Euclidean distance).

        Parameters
        ----------
        beam : str
        head : str
            Whose embedding space to search.
        query_embeddings : array_like, shape (d,) or (m, d)
            E.g. ``predict(beam, flux)[f"{head}_embedding"]``.
        k : int
            Neighbours per query, at most the number stored.

        Returns
        -------
        neighbours : `Neighbours`
            ``indices`` and ``distances`` of shape (m, k), ``labels`` of shape
            (m, k, n_labels), nearest first (without the leading m for a 1-D
            query).

        Raises
        ------
        ArtifactError
            Unknown beam or head, or no embeddings stored.
        ValueError
            Bad ``k`` or a query of the wrong dimension.
        """
        record = self.embeddings(beam)
        if head not in record["embeddings"]:
            raise ArtifactError(f"no stored embeddings of head {head!r} for beam {beam!r}; "
                                f"stored: {list(record['embeddings'])}")
        stored = record["embeddings"][head]
        n, d = stored.shape
        if not isinstance(k, numbers.Integral) or not 1 <= k <= n:
            raise ValueError(f"k must be an integer in [1, {n}] (the stored embeddings); "
                             f"received k={k!r}")
        query = np.asarray(query_embeddings, dtype=np.float64)
        single = query.ndim == 1
        query = np.atleast_2d(query)
        if query.ndim != 2 or query.shape[1] != d:
            raise ValueError(f"query embeddings of head {head!r} must have shape (d,) or "
                             f"(m, d) with d={d}; received shape {np.shape(query_embeddings)}")
        if not np.all(np.isfinite(query)):
            raise ValueError("query embeddings contain non-finite values")
        key = (beam, head)
        if key not in self._trees:
            from scipy.spatial import cKDTree
            self._trees[key] = cKDTree(stored.astype(np.float64))
        distances, indices = self._trees[key].query(query, k=int(k))
        distances = np.asarray(distances, dtype=np.float64).reshape(len(query), int(k))
        indices = np.asarray(indices, dtype=np.int64).reshape(len(query), int(k))
        labels = record["labels"][indices]
        if single:
            indices, distances, labels = indices[0], distances[0], labels[0]
        return Neighbours(indices, distances, labels, record["label_names"])


def compute_embeddings(model, flux, labels, label_names, *, batch_size=256):
    """Embeddings of spectra through a network, in the form :func:`save_model` stores.

    Parameters
    ----------
    model : `keras.Model`
        A network with ``<head>_embedding`` outputs.
    flux : array_like, shape (n, npix)
    labels : array_like, shape (n, k)
    label_names : sequence of str, length k
    batch_size : int

    Returns
    -------
    record : dict
        ``{"embeddings": {head: (n, d) float32}, "labels": (n, k) float64,
        "label_names": [...]}``.

    Raises
    ------
    ArtifactError
        The network has no embedding outputs.
    ValueError
        Inconsistent shapes.
    """
    dims = _output_dims(model)
    heads = [n.removesuffix("_embedding") for n in dims if n.endswith("_embedding")]
    if not heads:
        raise ArtifactError(f"model {model.name!r} has no '<head>_embedding' outputs "
                            f"(outputs: {list(dims)})")
    flux = np.asarray(flux, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.float64)
    if flux.ndim != 2 or labels.ndim != 2 or flux.shape[0] != labels.shape[0] \
            or labels.shape[1] != len(label_names):
        raise ValueError(f"need flux (n, npix), labels (n, {len(label_names)}); received "
                         f"flux {flux.shape}, labels {labels.shape}")
    out = {h: [] for h in heads}
    for start in range(0, flux.shape[0], int(batch_size)):
        result = model(flux[start:start + int(batch_size)], training=False)
        for h in heads:
            out[h].append(np.asarray(result[f"{h}_embedding"], dtype=np.float32))
    stacked = {h: (np.concatenate(v) if v else
                   np.empty((0, dims[f"{h}_embedding"]), np.float32)) for h, v in out.items()}
    return {"embeddings": stacked,
            "labels": labels, "label_names": [str(n) for n in label_names]}
