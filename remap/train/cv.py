"""k-fold cross-validation of network architectures (Gilda 2025, §5).

The paper sets the number of residual modules and their filters "by employing
10-fold cross validation—cyclically training on 90% of the spectra, and
reporting the results on the remaining 10%, choosing the aforementioned
hyperparameters such that the mean of the final loss, L_final, across all 10
folds is minimized".  :func:`cross_validate` does that for a handful of
candidate `~remap.nn.model.NetworkConfig` s: every candidate is trained on the
same seeded folds, briefly (one cosine cycle of a few epochs, no SWA), and
scored by its loss on the held-out fold after training.

Folds are drawn over *groups*: the 45 augmentations of one synthetic label
point (the data set's ``label_point`` column) always fall into the same fold,
so a validation fold never holds a noisy twin of a training spectrum.

This module also holds the tf.data pipeline shared with the runner,
:func:`tf_pipeline`: a beam of a `remap.datasets.Dataset` as ``(flux,
targets)`` batches with flux of shape (batch, npix) and one PMF per output.
"""

from __future__ import annotations

import json
import time

import numpy as np
from astropy.table import Table

from .._util.validators import check_int, check_seed
from ..labels import LabelEncoder
from ..plugins import get_head, list_heads

# remap.nn and the TensorFlow parts of remap.train are imported inside the functions that
# use them: this module loads without TensorFlow.

__all__ = ["tf_pipeline", "sample_groups", "make_folds", "split_groups", "eager_loss",
           "cross_validate", "best_architecture"]


def tf_pipeline(dataset, beam, heads, batch_size, *, indices=None, shuffle=True, seed=0,
                drop_remainder=False):
    """Stream a beam of a data set as ``(flux (batch, npix), targets)`` for a remap network.

    Parameters
    ----------
    dataset : `remap.datasets.Dataset`
    beam : str
    heads : sequence of `remap.heads.HeadSpec` or str
    batch_size : int
    indices : sequence of int, optional
        Samples to use (default: all).
    shuffle : bool
    seed : int
    drop_remainder : bool
        Drop a last incomplete batch (used for training when the split is
        larger than one batch, so that batch normalization never sees a batch
        of one).

    Returns
    -------
    `tf.data.Dataset`
        Targets are a dict with each head's PMF under ``<head>`` and
        ``<head>_embedding`` (`remap.nn.model.expand_targets`).
    """
    import tensorflow as tf

    from ..nn.model import expand_targets

    encoder = LabelEncoder(heads, dataset.label_names)
    ds = dataset.to_tf(beam, int(batch_size), shuffle=shuffle, seed=int(seed),
                       label_encoder=encoder, indices=indices, drop_remainder=drop_remainder)
    n = len(dataset) if indices is None else np.unique(np.asarray(indices)).size
    n_batches = n // int(batch_size) if drop_remainder else -(-n // int(batch_size))
    if n_batches < 1:
        raise ValueError(f"{n} samples make no complete batch of {batch_size}; lower the "
                         "batch size or do not drop the remainder")
    # a known length lets Keras end an epoch without its "input ran out of data" warning
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    return ds.map(lambda x, y: (tf.squeeze(x, axis=-1), expand_targets(y)))


def sample_groups(dataset):
    """Group id of every sample: its ``label_point`` if the set has one, else its index."""
    table = dataset.labels
    if "label_point" in table.colnames and len(table):
        return np.asarray(table["label_point"], dtype=np.int64)
    return np.arange(len(dataset), dtype=np.int64)


def make_folds(groups, k, seed):
    """Seeded k-fold split over groups.

    Parameters
    ----------
    groups : array of int, shape (n,)
        Group id of each sample (`sample_groups`).
    k : int
        Number of folds, 2 <= k <= number of groups.
    seed : int

    Returns
    -------
    list of (train_indices, val_indices)
        Sample indices (sorted); every group is in exactly one validation
        fold, and the folds' group counts differ by at most one.
    """
    groups = np.asarray(groups)
    unique = np.unique(groups)
    k = check_int("k", k, 2)
    if k > unique.size:
        raise ValueError(f"k={k} folds need at least {k} groups (label points); the data set "
                         f"has {unique.size}")
    rng = np.random.default_rng(check_seed(seed))
    shuffled = rng.permutation(unique)
    fold_of_group = dict(zip(shuffled.tolist(), (np.arange(unique.size) % k).tolist()))
    fold = np.array([fold_of_group[g] for g in groups.tolist()])
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def split_groups(groups, fraction, seed):
    """Seeded train/validation split over groups.

    Parameters
    ----------
    groups : array of int, shape (n,)
    fraction : float
        Fraction of the groups held out (at least one group, and at least
        one left for training).
    seed : int

    Returns
    -------
    train_indices, val_indices : arrays of int
    """
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1; received {fraction!r}")
    if unique.size < 2:
        raise ValueError(f"a train/validation split needs at least 2 groups (label points or "
                         f"stars); the data set has {unique.size}")
    n_val = min(max(1, int(round(fraction * unique.size))), unique.size - 1)
    rng = np.random.default_rng(check_seed(seed))
    val_groups = rng.permutation(unique)[:n_val]
    is_val = np.isin(groups, val_groups)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def eager_loss(model, dataset):
    """Mean compiled loss of a model over a finite `tf.data.Dataset`, run eagerly.

    Each batch's loss is weighted by its size.  Running eagerly avoids
    tracing Keras' test function for what is a single pass (tracing costs
    more than the pass for a validation fold).
    """
    total, n = 0.0, 0
    for x, y in dataset:
        pred = model(x, training=False)
        loss = model.compute_loss(x=x, y=y, y_pred=pred, training=False)
        k = int(x.shape[0])
        total += float(loss) * k
        n += k
    if n == 0:
        raise ValueError("the validation data set is empty")
    return total / n


def _network_config(arch):
    from ..nn.model import NetworkConfig
    return NetworkConfig.from_dict(arch)


def cross_validate(dataset, beam, architectures, k=10, *, epochs=5, batch_size=64,
                   lr_max=1e-3, lr_min=1e-5, seed=0, heads=None, use_triplet=True,
                   triplet_weight=0.001, gamma=2.0, margin=0.2, max_groups=None,
                   steps_per_epoch=None, progress=None):
    """k-fold cross-validation of candidate architectures on one beam of a data set.

    Parameters
    ----------
    dataset : `remap.datasets.Dataset`
    beam : str
    architectures : dict of str to `~remap.nn.model.NetworkConfig` or dict
        Candidates by name.
    k : int
        Folds (10 in Gilda 2025).
    epochs : int
        Epochs per fold: one cosine cycle from ``lr_max`` to ``lr_min``.
    batch_size : int
    lr_max, lr_min : float
    seed : int
        Seeds the folds, the weight initialisation (the same for every
        candidate on a fold) and the shuffling.
    heads : sequence of `remap.heads.HeadSpec` or str, optional
        Default: every registered head.
    use_triplet, triplet_weight, gamma, margin
        Loss settings (`remap.nn.model.compile_model`).
    max_groups : int, optional
        Use a seeded subset of this many groups (label points).
    steps_per_epoch : int, optional
    progress : callable, optional
        Called with a message after every fold.

    Returns
    -------
    `~astropy.table.Table`
        One row per architecture: ``architecture``, ``mean_loss``,
        ``std_loss`` (sample standard deviation over the folds), ``fold_loss``
        (k values), ``n_params``, ``seconds``, ``config`` (JSON).  The meta
        holds ``k``, ``seed``, ``beam``, ``epochs``, ``n_samples`` and
        ``best``, the architecture with the lowest mean loss.
    """
    import keras

    from ..nn.model import build_model, compile_model
    from .loop import StageSchedule, train_stage

    if not isinstance(architectures, dict) or not architectures:
        raise ValueError("architectures must be a non-empty dict name -> NetworkConfig; "
                         f"received {architectures!r}")
    configs = {str(name): _network_config(arch) for name, arch in architectures.items()}
    epochs = check_int("epochs", epochs, 1)
    seed = check_seed(seed)
    heads = [get_head(n) for n in list_heads()] if heads is None else [
        get_head(h) if isinstance(h, str) else h for h in heads]
    groups = sample_groups(dataset)
    if max_groups is not None:
        unique = np.unique(groups)
        if max_groups < unique.size:
            keep = np.random.default_rng(seed).permutation(unique)[:int(max_groups)]
            subset = np.flatnonzero(np.isin(groups, keep))
        else:
            subset = np.arange(groups.size)
    else:
        subset = np.arange(groups.size)
    folds = make_folds(groups[subset], k, seed)
    npix = int(dataset.manifest["beams"][beam]["npix"]) if beam in dataset.beams else None
    if npix is None:
        raise ValueError(f"the data set has no beam {beam!r}; beams: {dataset.beams}")

    schedule = StageSchedule(lr_max=lr_max, lr_min=lr_min, epochs_per_cycle=epochs, n_cycles=1,
                             steps_per_epoch=steps_per_epoch, swa=False)
    losses = {name: [] for name in configs}
    seconds = {name: 0.0 for name in configs}
    n_params = {}
    for f, (tr, va) in enumerate(folds):
        tr, va = subset[tr], subset[va]
        fold_seed = seed + 1000 * (f + 1)
        for name, cfg in configs.items():
            start = time.perf_counter()
            keras.utils.set_random_seed(fold_seed)
            model = build_model(cfg, heads, npix, name=f"cv_{name}")
            n_params[name] = int(model.count_params())
            train_ds = tf_pipeline(dataset, beam, heads, batch_size, indices=tr, shuffle=True,
                                   seed=fold_seed, drop_remainder=tr.size > batch_size)
            val_ds = tf_pipeline(dataset, beam, heads, batch_size, indices=va, shuffle=False)
            compile_model(model, heads, optimizer="adam", use_triplet=use_triplet,
                          triplet_weight=triplet_weight, gamma=gamma, margin=margin)
            train_stage(model, train_ds, None, schedule, seed=fold_seed, verbose=0)
            losses[name].append(eager_loss(model, val_ds))
            seconds[name] += time.perf_counter() - start
            if progress is not None:
                progress(f"cv beam {beam}: fold {f + 1}/{k}, {name}: val loss "
                         f"{losses[name][-1]:.4f}")
            keras.backend.clear_session(free_memory=True)

    table = Table()
    names = list(configs)
    table["architecture"] = names
    fold_loss = np.array([losses[n] for n in names])
    table["mean_loss"] = fold_loss.mean(axis=1)
    table["std_loss"] = fold_loss.std(axis=1, ddof=1)
    table["fold_loss"] = fold_loss
    table["n_params"] = [n_params[n] for n in names]
    table["seconds"] = [seconds[n] for n in names]
    table["config"] = [json.dumps(configs[n].to_dict(), sort_keys=True) for n in names]
    table.meta.update({"k": int(k), "seed": seed, "beam": beam, "epochs": int(epochs),
                       "n_samples": int(subset.size),
                       "best": best_architecture(table)})
    return table


def best_architecture(table):
    """Name of the architecture with the lowest mean validation loss in a `cross_validate` table."""
    if len(table) == 0:
        raise ValueError("the cross-validation table is empty")
    mean = np.asarray(table["mean_loss"], dtype=float)
    if not np.isfinite(mean).any():
        raise ValueError("no architecture has a finite mean validation loss")
    return str(table["architecture"][int(np.nanargmin(mean))])
