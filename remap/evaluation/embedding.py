"""Two-dimensional t-SNE maps of a network's embeddings (Gilda 2025, Figs. 2-3)."""

from __future__ import annotations

import numpy as np

from .._util.validators import check_int, check_real, check_seed

from .metrics import EvaluationError
from .report import _check_beams, _predict_dataset, resolve_dataset, resolve_model

__all__ = ["EmbeddingMap", "embed"]


class EmbeddingMap:
    """Two-dimensional t-SNE maps of embeddings, with the labels to colour them by.

    Made by :func:`embed`.

    Attributes
    ----------
    coords : dict of str to ndarray, shape (m, 2)
        t-SNE coordinates of the embedding space of each head.
    labels : dict of str to ndarray, shape (m,)
        Label values of the embedded spectra.
    panels : list of (str, str)
        ``(embedding head, label)`` of each panel, left to right.
    units : dict of str to str
    label_titles : dict of str to str
        Display names of the labels (``T_eff``, ...).
    indices : ndarray of int, shape (m,)
        Rows of the data set (or of the stored embeddings) that were embedded.
    meta : dict
    """

    def __init__(self, coords, labels, panels, *, units=None, label_titles=None, indices=None,
                 meta=None):
        self.coords = {k: np.asarray(v, dtype=np.float64) for k, v in coords.items()}
        self.labels = {k: np.asarray(v, dtype=np.float64) for k, v in labels.items()}
        self.panels = list(panels)
        self.units = dict(units or {})
        self.label_titles = dict(label_titles or {})
        self.indices = None if indices is None else np.asarray(indices)
        self.meta = dict(meta or {})

    def __repr__(self):
        m = len(next(iter(self.coords.values())))
        return f"<EmbeddingMap: {m} spectra, panels {self.panels}>"

    def plot(self, *, figsize=None, point_size=6.0):
        """One panel per ``(embedding head, label)``, points coloured by the label.

        Returns
        -------
        fig : `matplotlib.figure.Figure`
        """
        from matplotlib.figure import Figure
        n = len(self.panels)
        fig = Figure(figsize=figsize or (4.4 * n, 4.2), layout="constrained")
        axes = fig.subplots(1, n, squeeze=False)[0]
        for ax, (space, label) in zip(axes, self.panels):
            xy = self.coords[space]
            values = self.labels[label]
            order = np.argsort(values, kind="stable")
            points = ax.scatter(xy[order, 0], xy[order, 1], c=values[order], s=point_size,
                                cmap="viridis", linewidths=0)
            title = self.label_titles.get(label, label)
            unit = self.units.get(label, "")
            fig.colorbar(points, ax=ax, label=f"{title} [{unit}]" if unit else title)
            space_title = self.label_titles.get(space, space)
            ax.set_title(f"{space_title} embedding" if space == label
                         else f"{space_title} embedding, coloured by {title}")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
        what = self.meta.get("what")
        if what:
            fig.suptitle(what)
        return fig


def _tsne(x, perplexity, seed):
    """t-SNE to 2-D, PCA-initialised, on one thread.

    One OpenMP thread makes the map independent of the machine's core count
    (same seed, same map) and avoids the many-fold slow-down of an
    oversubscribed CPU.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=float(perplexity), init="pca",
                    learning_rate="auto", random_state=int(seed)).fit_transform(x)


def embed(model=None, data=None, *, beam=None, head=None, n=2000, perplexity=30.0, seed=0,
          stored=False, batch_size=256):
    """t-SNE maps of a network's embeddings, coloured by the labels (Gilda 2025, Figs. 2-3).

    Parameters
    ----------
    model : `~remap.model.RemapModel`, str, path or None
        Default: the default model.
    data : `~remap.datasets.Dataset`, str or path, optional
        Spectra to embed (e.g. a validation or survey set); required unless
        ``stored``.
    beam : str, optional
        Whose network; default the model's first beam.
    head : str, optional
        Project this head's embedding space and colour it by every label, one
        panel each.  By default, as in the paper, each head's embedding space
        is coloured by its own label.
    n : int
        At most this many spectra, a seeded random subset of the rest.
    perplexity : float
        t-SNE perplexity; must be smaller than the number of spectra.
    seed : int
        Seed of the subset and of t-SNE (same seed, same map).
    stored : bool
        Embed the training-set embeddings stored in the model artifact instead
        of a data set.
    batch_size : int

    Returns
    -------
    map : `EmbeddingMap`

    Raises
    ------
    EvaluationError
        Missing data, unknown beam or head, a grid mismatch, no embeddings, or
        a perplexity not smaller than the number of spectra.
    """
    check_int("n", n, 2)
    check_seed(seed)
    check_int("batch_size", batch_size, 1)
    check_real("perplexity", perplexity, 0, strict_min=True)
    model = resolve_model(model)
    beam = model.beams[0] if beam is None else beam
    if beam not in model.beams:
        raise EvaluationError(f"the model has no beam {beam!r}; its beams: {model.beams}")
    head_names = [h.name for h in model.heads]
    if head is not None and head not in head_names:
        raise EvaluationError(f"the model has no head {head!r}; its heads: {head_names}")
    spaces = [head] if head is not None else head_names
    rng = np.random.default_rng(int(seed))
    if stored:
        if data is not None:
            raise EvaluationError("give either data or stored=True, not both")
        if not model.has_embeddings(beam):
            raise EvaluationError(f"the model artifact stores no embeddings for beam {beam!r}")
        record = model.embeddings(beam)
        total = len(record["labels"])
        rows = np.sort(rng.choice(total, n, replace=False)) if total > n else np.arange(total)
        missing = [s for s in spaces if s not in record["embeddings"]]
        if missing:
            raise EvaluationError(f"no stored embeddings of head(s) {missing} for beam "
                                  f"{beam!r}")
        vectors = {s: np.asarray(record["embeddings"][s])[rows] for s in spaces}
        label_values = {name: np.asarray(record["labels"])[rows, j]
                        for j, name in enumerate(record["label_names"])}
        what = f"{model.path.name}: stored training embeddings, beam {beam}"
    else:
        if data is None:
            raise EvaluationError("give a data set to embed (or stored=True for the "
                                  "embeddings stored in the model)")
        data = resolve_dataset(data)
        _check_beams(model, data, [beam])
        total = len(data)
        rows = np.sort(rng.choice(total, n, replace=False)) if total > n else np.arange(total)
        vectors = _predict_dataset(model, data, beam, rows, batch_size,
                                   [f"{s}_embedding" for s in spaces])
        vectors = {s: vectors[f"{s}_embedding"] for s in spaces}
        table = data.labels
        label_values = {name: np.asarray(table[name], dtype=np.float64)[rows]
                        for name in data.label_names}
        what = f"{data.directory.name}: beam {beam}"
    keep = np.all([np.all(np.isfinite(v), axis=1) for v in vectors.values()], axis=0)
    if keep.sum() <= perplexity:
        raise EvaluationError(f"perplexity {perplexity:g} must be smaller than the number of "
                              f"spectra embedded ({int(keep.sum())}); pass a smaller "
                              f"perplexity (--perplexity)")
    coords = {s: _tsne(v[keep].astype(np.float64), perplexity, seed)
              for s, v in vectors.items()}
    labels = {k: v[keep] for k, v in label_values.items()}
    units = {h.name: h.unit.to_string() for h in model.heads}
    titles = {h.name: h.label for h in model.heads}
    if head is not None:
        shown = [name for name in labels if np.any(np.isfinite(labels[name]))]
        panels = [(head, name) for name in shown if name in head_names] or \
            [(head, name) for name in shown]
    else:
        panels = [(s, s) for s in spaces if s in labels]
    if not panels:
        raise EvaluationError(f"no labels to colour the map by (labels: {list(labels)})")
    return EmbeddingMap(coords, labels, panels, units=units, label_titles=titles,
                        indices=rows[keep],
                        meta={"what": what, "beam": beam, "perplexity": float(perplexity),
                              "seed": int(seed), "model": str(model.path)})
