"""Losses of the deep-REMAP network: masked focal loss and triplet loss.

Both are registered with ``keras.saving.register_keras_serializable(
package="remap")`` and have a complete ``get_config``.

Missing labels (a survey star without [Fe/H], say) are encoded by
`remap.labels.LabelEncoder` as rows of NaN; both losses skip such rows and
average over the labelled rows only (a batch with none gives 0, not NaN).
"""

from __future__ import annotations

import keras
from keras import ops

from .._util.validators import check_int, check_real

__all__ = ["MaskedFocalLoss", "TripletLoss", "row_mask", "masked_reduce"]


def row_mask(y_true):
    """Boolean (batch,) mask of rows of ``y_true`` whose entries are all finite."""
    finite = ops.logical_not(ops.logical_or(ops.isnan(y_true), ops.isinf(y_true)))
    return ops.all(finite, axis=-1)


def masked_reduce(losses, mask, sample_weight=None, reduction="sum_over_batch_size"):
    """Reduce per-row ``losses`` over the rows where ``mask`` is True.

    ``"sum_over_batch_size"`` and ``"mean"`` divide the (weighted) sum by the
    number of valid rows, ``"mean_with_sample_weight"`` by their total weight,
    ``"sum"`` does not divide; no valid row gives 0.  ``"none"``/None return
    the per-row values, 0 at invalid rows.
    """
    zeros = ops.zeros_like(losses)
    losses = ops.where(mask, losses, zeros)
    weights = ops.cast(mask, losses.dtype)
    if sample_weight is not None:
        sw = ops.cast(sample_weight, losses.dtype)
        if len(sw.shape) > 1:
            sw = ops.reshape(sw, (-1,))
        weights = weights * sw
        losses = losses * ops.where(mask, sw, zeros)
    if reduction in (None, "none"):
        return losses
    total = ops.sum(losses)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight":
        return ops.divide_no_nan(total, ops.sum(weights))
    return ops.divide_no_nan(total, ops.sum(ops.cast(mask, losses.dtype)))


class _MaskedLoss(keras.losses.Loss):
    """Base of losses whose `per_row` returns (losses, mask); reduced over valid rows."""

    def per_row(self, y_true, y_pred):  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, y_true, y_pred):
        losses, mask = self.per_row(y_true, y_pred)
        return ops.where(mask, losses, ops.zeros_like(losses))

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        losses, mask = self.per_row(y_true, y_pred)
        return masked_reduce(losses, mask, sample_weight, self.reduction)


@keras.saving.register_keras_serializable(package="remap")
class MaskedFocalLoss(_MaskedLoss):
    """Focal loss (Lin et al. 2017) on soft PMF labels, skipping rows with NaN labels.

    The per-row loss is keras' `keras.losses.categorical_focal_crossentropy`,
    ``-Σ_i α (1 - p_i)^γ y_i log p_i``, which takes soft (Gaussian-binned)
    labels ``y`` as they are.  Rows of ``y_true`` containing NaN (missing
    labels) contribute 0 and are left out of the mean; a batch without any
    labelled row gives 0.

    Parameters
    ----------
    gamma : float
        Focusing parameter γ >= 0 (Lin et al. 2017 use 2).
    alpha : float
        Weight α > 0.  With one scalar α for all classes it only scales the
        loss; the default 0.25 is Lin et al.'s value (and keras' default), so
        the focal term has the magnitude of the reference implementation and
        the triplet weight λ = 0.001 of Gilda 2025 (Eq. 7) keeps its meaning
        relative to it.
    from_logits : bool
        Whether ``y_pred`` are logits rather than probabilities.
    label_smoothing : float
        Passed to keras (0 by default: the labels are already smooth).
    name, reduction, dtype
        As for `keras.losses.Loss`.
    """

    def __init__(self, gamma=2.0, alpha=0.25, from_logits=False, label_smoothing=0.0,
                 name="masked_focal", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = check_real("gamma", gamma, 0.0)
        self.alpha = check_real("alpha", alpha, 0.0, strict_min=True)
        self.label_smoothing = check_real("label_smoothing", label_smoothing, 0.0)
        if self.label_smoothing > 1:
            raise ValueError(f"label_smoothing must lie in [0, 1]; "
                             f"received label_smoothing={label_smoothing!r}")
        self.from_logits = bool(from_logits)

    def per_row(self, y_true, y_pred):
        """Per-row focal losses and the mask of labelled rows."""
        mask = row_mask(y_true)
        y_clean = ops.where(mask[:, None], y_true, ops.zeros_like(y_true))
        losses = keras.losses.categorical_focal_crossentropy(
            y_clean, y_pred, alpha=self.alpha, gamma=self.gamma, from_logits=self.from_logits,
            label_smoothing=self.label_smoothing, axis=-1)
        return losses, mask

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha,
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="remap")
class TripletLoss(_MaskedLoss):
    """Triplet loss with online mining over label bins (Gilda 2025, Eq. 1).

    ``y_true`` are the PMF labels of a head; the class of a sample is the bin
    holding its largest probability, and rows with NaN are ignored.  ``y_pred``
    are the (L2-normalized) embeddings.  With Euclidean distances ``D``, each
    anchor ``a`` contributes ``[D(a, p) - D(a, n) + margin]_+``.

    Mining: ``"batch_hard"`` (default; Hermans et al. 2017): for each anchor the
    farthest positive (same bin) and the nearest negative (another bin) in the
    batch.  ``"batch_all"``: for each anchor the mean over all its triplets
    with positive loss (anchors with none are skipped); O(b³) memory.

    Batch-hard rather than the semi-hard mining of Schroff et al. (2015):
    semi-hard negatives must lie farther than the positive yet within the
    margin, which needs large batches to exist at all; with 30–50 bins per head
    and batches of a few hundred spectra most bins hold only a handful of
    samples, so semi-hard mining often finds no triplet and gives no gradient.
    Batch-hard always yields one triplet per anchor that has a positive and a
    negative, costs one distance matrix (O(b²)), and Hermans et al. found it
    to train at least as well.  Neighbouring bins count as negatives like
    distant ones (the classes are treated as unordered, as in the paper).

    Anchors without a positive or without a negative are skipped, and the loss
    is the mean over the anchors that remain, 0 when there are none (never
    NaN).

    Parameters
    ----------
    margin : float
        Margin ``m`` > 0 (0.2 by default; distances of unit vectors lie in [0, 2]).
    n_bins : int, optional
        If given, ``y_true`` must have this many columns.
    mining : {"batch_hard", "batch_all"}
    name, reduction, dtype
        As for `keras.losses.Loss`.
    """

    MINING = ("batch_hard", "batch_all")

    def __init__(self, margin=0.2, n_bins=None, mining="batch_hard", name="triplet",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = check_real("margin", margin, 0.0, strict_min=True)
        self.n_bins = None if n_bins is None else check_int("n_bins", n_bins, 2)
        if mining not in self.MINING:
            raise ValueError(f"mining must be one of {self.MINING}; received mining={mining!r}")
        self.mining = mining

    @staticmethod
    def pairwise_distances(embeddings):
        """Euclidean distance matrix (b, b), with a gradient that stays finite at 0."""
        sq = ops.sum(ops.square(embeddings), axis=-1)
        d2 = sq[:, None] - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings)) + sq[None, :]
        d2 = ops.maximum(d2, 0.0)
        zero = d2 <= 1e-12
        d = ops.sqrt(ops.where(zero, ops.ones_like(d2), d2))
        return ops.where(zero, ops.zeros_like(d), d)

    def per_row(self, y_true, y_pred):
        """Per-anchor triplet losses and the mask of anchors with a valid triplet."""
        if self.n_bins is not None and y_true.shape[-1] is not None \
                and y_true.shape[-1] != self.n_bins:
            raise ValueError(f"TripletLoss expects labels with n_bins={self.n_bins} columns; "
                             f"received shape {tuple(y_true.shape)}")
        valid = row_mask(y_true)
        classes = ops.argmax(ops.where(valid[:, None], y_true, ops.zeros_like(y_true)), axis=-1)
        dist = self.pairwise_distances(y_pred)
        b = ops.shape(dist)[0]
        eye = ops.cast(ops.eye(b), "bool")
        both = ops.logical_and(valid[:, None], valid[None, :])
        same = ops.equal(classes[:, None], classes[None, :])
        pos = ops.logical_and(ops.logical_and(both, same), ops.logical_not(eye))
        neg = ops.logical_and(both, ops.logical_not(same))
        has_pos = ops.any(pos, axis=1)
        has_neg = ops.any(neg, axis=1)
        anchors = ops.logical_and(valid, ops.logical_and(has_pos, has_neg))
        zeros = ops.zeros_like(dist)
        if self.mining == "batch_hard":
            hardest_pos = ops.max(ops.where(pos, dist, zeros), axis=1)
            big = ops.max(dist) + 1.0
            hardest_neg = ops.min(ops.where(neg, dist, zeros + big), axis=1)
            losses = ops.relu(hardest_pos - hardest_neg + self.margin)
        else:
            trip = dist[:, :, None] - dist[:, None, :] + self.margin  # [a, p, n]
            ok = ops.logical_and(pos[:, :, None], neg[:, None, :])
            trip = ops.where(ok, ops.relu(trip), ops.zeros_like(trip))
            active = ops.cast(trip > 1e-16, trip.dtype)
            losses = ops.divide_no_nan(ops.sum(trip, axis=(1, 2)), ops.sum(active, axis=(1, 2)))
            anchors = ops.logical_and(anchors, ops.sum(active, axis=(1, 2)) > 0)
        return losses, anchors

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "n_bins": self.n_bins,
                "mining": self.mining}
