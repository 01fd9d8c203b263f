"""Training callbacks: stochastic weight averaging and per-epoch checkpoints.

* `StochasticWeightAveraging` — SWA (Izmailov et al. 2018) at the end of each
  cosine cycle, where the learning rate is lowest (Gilda 2025, §5, Eq. 5):
  ``w_SWA ← (w_SWA · n + w) / (n + 1)``, starting from the weights at the end of
  the first cycle; at the end of training the averaged weights are swapped in
  and the batch-norm statistics re-estimated (`recompute_batchnorm`).
* `EpochCheckpoint` — after every epoch, writes the complete training state
  (model variables including dropout RNG states, optimizer variables including
  the step counter that drives the learning-rate schedule, the SWA accumulator
  and the history so far) into ``epoch_NNNN/`` atomically, so that a killed run
  resumes from its last complete epoch (`latest`, `load_checkpoint`).
"""

import json
import logging
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from .._util.fs import fsync_dir
from .._util.validators import check_int

__all__ = ["StochasticWeightAveraging", "EpochCheckpoint", "recompute_batchnorm",
           "batchnorm_layers", "latest", "save_checkpoint", "load_checkpoint",
           "CheckpointError"]

log = logging.getLogger("remap.train")

#: Version of the checkpoint layout written by `save_checkpoint`.
CHECKPOINT_FORMAT = 1
_PREFIX = "epoch_"


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or does not match the model being trained."""


def _strategy_scope(model):
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None:
        import contextlib

        return contextlib.nullcontext()
    return strategy.scope()


# --------------------------------------------------------------------------- batch norm

def batchnorm_layers(model, *, trainable_only=True):
    """All `keras.layers.BatchNormalization` layers of ``model``, nested ones included.

    Parameters
    ----------
    model : `keras.Model` or `keras.layers.Layer`
    trainable_only : bool
        Skip frozen layers (``trainable=False``): their statistics belong to
        the frozen part of the network and are left alone.
    """
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.trainable or not trainable_only:
                found.append(layer)
    return found


def _inputs_of(element):
    if isinstance(element, (tuple, list)):
        return element[0]
    if isinstance(element, dict):
        raise TypeError("recompute_batchnorm needs a dataset of inputs or (inputs, targets) "
                        f"tuples; received an element that is a dict with keys {sorted(element)}")
    return element


def recompute_batchnorm(model, dataset, steps=None):
    """Re-estimate the moving statistics of every trainable batch-norm layer from data.

    After weight averaging the stored moving means and variances belong to
    none of the averaged networks, so they are recomputed with one pass over
    the training data (Izmailov et al. 2018, §3.2).  During the pass the model
    runs in inference mode (no dropout) except that each batch-norm layer
    normalizes with the statistics of the current batch, as in training.  For
    every layer the per-channel mean and variance of *all* the values reaching
    it over the pass (every sample and position, pooled with Chan's parallel
    algorithm in float64) become its ``moving_mean`` and ``moving_variance``
    (the population variance, dividing by the count): they are the exact
    statistics of the data flowing into the layer, not a momentum-weighted
    estimate.

    Parameters
    ----------
    model : `keras.Model`
    dataset : iterable
        A `tf.data.Dataset` (or any iterable) of input batches or of
        ``(inputs, targets[, weights])`` tuples; only the inputs are used.
    steps : int, optional
        Use at most this many batches (default: one full pass).  The dataset
        must be finite when ``steps`` is None.

    Returns
    -------
    n_samples : int
        Number of samples (rows) that went into the statistics; 0 when the
        model has no trainable batch-norm layer (nothing is done then).
    """
    if steps is not None:
        steps = check_int("steps", steps, 1)
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    stats = {id(layer): [0.0, None, None] for layer in layers}   # count, mean, M2

    def make_hook(layer, original):
        axis = layer.axis

        def hooked(inputs, training=None, mask=None):
            if mask is not None:
                raise NotImplementedError(
                    f"recompute_batchnorm does not support masked inputs (layer {layer.name!r})")
            x = np.asarray(keras.ops.convert_to_numpy(inputs), dtype=np.float64)
            ax = axis % x.ndim
            reduce = tuple(i for i in range(x.ndim) if i != ax)
            n_b = float(np.prod([x.shape[i] for i in reduce]))
            if n_b > 0:
                mean_b = x.mean(axis=reduce)
                m2_b = ((x - np.expand_dims(mean_b, reduce)) ** 2).sum(axis=reduce)
                entry = stats[id(layer)]
                n_a, mean_a, m2_a = entry
                if mean_a is None:
                    entry[:] = [n_b, mean_b, m2_b]
                else:
                    n = n_a + n_b
                    delta = mean_b - mean_a
                    entry[:] = [n, mean_a + delta * (n_b / n),
                                m2_a + m2_b + delta ** 2 * (n_a * n_b / n)]
            # normalize with the batch statistics, as during training
            return original(inputs, training=True, mask=None)

        return hooked

    saved = {id(layer): (layer.moving_mean.numpy(), layer.moving_variance.numpy())
             for layer in layers}
    for layer in layers:
        layer.call = make_hook(layer, layer.call)
    n_samples = 0
    try:
        for k, element in enumerate(dataset):
            if steps is not None and k >= steps:
                break
            x = _inputs_of(element)
            model(x, training=False)
            n_samples += int(keras.ops.shape(x)[0])
    finally:
        for layer in layers:
            del layer.call
    if n_samples == 0:
        for layer in layers:
            layer.moving_mean.assign(saved[id(layer)][0])
            layer.moving_variance.assign(saved[id(layer)][1])
        raise ValueError("recompute_batchnorm received an empty dataset: no batch to "
                         "estimate the batch-norm statistics from")
    for layer in layers:
        n, mean, m2 = stats[id(layer)]
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign((m2 / n).astype(layer.moving_variance.dtype))
    return n_samples


# --------------------------------------------------------------------------- SWA

def _averaged_variables(model):
    """The variables that SWA averages: every floating-point weight of the model."""
    return [v for v in model.weights if "float" in str(v.dtype)]


@keras.saving.register_keras_serializable(package="remap")
class StochasticWeightAveraging(keras.callbacks.Callback):
    """Stochastic weight averaging at the end of each learning-rate cycle.

    At the end of every cycle (epoch ``e``, 0-based, with
    ``(e + 1) % cycle_epochs == 0``) whose 1-based number ``c = (e + 1) //
    cycle_epochs`` is at least ``start_cycle``, the running average is updated,
    ``w_SWA ← (w_SWA · n + w) / (n + 1)`` (Gilda 2025, Eq. 5); the first update
    copies the weights (``n = 0``).  With the default ``start_cycle=1`` the
    average starts from the weights at the end of the first cycle, as in the
    paper, and with 4 cycles it is the mean of the 4 end-of-cycle weights.

    Every floating-point weight is averaged, trainable or not (batch-norm
    moving statistics included: they are replaced by `recompute_batchnorm`
    when a dataset is given, and otherwise their average is the fallback).
    The accumulator is kept in float64.

    At the end of training (``swap_on_train_end``) the averaged weights are
    assigned to the model and, if ``dataset`` was given, the batch-norm
    statistics are recomputed from it (`apply`).

    Parameters
    ----------
    cycle_epochs : int
        Epochs per cosine cycle.
    start_cycle : int
        First cycle (1-based) whose end weights enter the average.
    dataset : iterable, optional
        Training data for `recompute_batchnorm` (inputs or (inputs, targets)
        batches, finite unless ``bn_steps`` is given).
    bn_steps : int, optional
        Batches used to recompute the batch-norm statistics (default: one pass).
    swap_on_train_end : bool
        Swap in the averaged weights in ``on_train_end``.

    Attributes
    ----------
    n_averaged : int
        Number of end-of-cycle weights in the average.
    averaged_epochs : list of int
        The (1-based) epochs whose weights entered the average.
    applied : bool
        Whether the averaged weights have been swapped in.
    """

    def __init__(self, cycle_epochs, start_cycle=1, *, dataset=None, bn_steps=None,
                 swap_on_train_end=True):
        super().__init__()
        self.cycle_epochs = check_int("cycle_epochs", cycle_epochs, 1)
        self.start_cycle = check_int("start_cycle", start_cycle, 1)
        if bn_steps is not None:
            bn_steps = check_int("bn_steps", bn_steps, 1)
        self.dataset = dataset
        self.bn_steps = bn_steps
        self.swap_on_train_end = bool(swap_on_train_end)
        self.n_averaged = 0
        self.averaged_epochs = []
        self.applied = False
        self._average = None

    # state ------------------------------------------------------------------
    def get_state(self):
        """The accumulator, for checkpoints: ``dict(n_averaged, averaged_epochs, arrays)``."""
        arrays = [] if self._average is None else [a.copy() for a in self._average]
        return {"n_averaged": self.n_averaged, "averaged_epochs": list(self.averaged_epochs),
                "arrays": arrays}

    def set_state(self, state):
        """Restore an accumulator saved by `get_state`."""
        n = int(state["n_averaged"])
        arrays = list(state["arrays"])
        if (n == 0) != (len(arrays) == 0):
            raise CheckpointError(f"inconsistent SWA state: n_averaged={n} with "
                                  f"{len(arrays)} arrays")
        self.n_averaged = n
        self.averaged_epochs = [int(e) for e in state.get("averaged_epochs", [])]
        self._average = [np.array(a, dtype=np.float64) for a in arrays] if n else None
        self.applied = False

    @property
    def average(self):
        """The averaged weights (float64 arrays in the order of the model's weights), or None."""
        return None if self._average is None else [a.copy() for a in self._average]

    # averaging --------------------------------------------------------------
    def update(self, model=None, epoch=None):
        """Add the current weights of ``model`` to the average."""
        model = model if model is not None else self.model
        current = [np.asarray(v.numpy(), dtype=np.float64) for v in _averaged_variables(model)]
        if self._average is None:
            self._average = current
        else:
            if len(current) != len(self._average) or any(
                    a.shape != c.shape for a, c in zip(self._average, current)):
                raise CheckpointError("the model's weights do not match the SWA accumulator "
                                      "(different architecture?)")
            n = self.n_averaged
            self._average = [(a * n + c) / (n + 1) for a, c in zip(self._average, current)]
        self.n_averaged += 1
        if epoch is not None:
            self.averaged_epochs.append(int(epoch))

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.cycle_epochs == 0 and done // self.cycle_epochs >= self.start_cycle:
            self.update(self.model, epoch=done)
            log.info("SWA: averaged the weights of epoch %d (%d in the average)",
                     done, self.n_averaged)

    def on_train_end(self, logs=None):
        if not self.swap_on_train_end:
            return
        if self.n_averaged == 0:
            log.warning("SWA: training ended before the end of cycle %d; the model keeps its "
                        "last weights", self.start_cycle)
            return
        self.apply(self.model)

    def apply(self, model=None, dataset=None, steps=None):
        """Swap the averaged weights into ``model`` and recompute its batch-norm statistics.

        Parameters
        ----------
        model : `keras.Model`, optional
            Default: the model this callback is attached to.
        dataset : iterable, optional
            Data for `recompute_batchnorm` (default: the callback's ``dataset``;
            without any, the averaged moving statistics are kept).
        steps : int, optional
            Batches for the re-estimation (default: ``bn_steps``).
        """
        model = model if model is not None else self.model
        if self.n_averaged == 0:
            raise RuntimeError("SWA has no averaged weights yet: no cycle from "
                               f"start_cycle={self.start_cycle} on has ended")
        variables = _averaged_variables(model)
        if len(variables) != len(self._average):
            raise CheckpointError("the model's weights do not match the SWA accumulator")
        with _strategy_scope(model):
            for v, a in zip(variables, self._average):
                v.assign(a.astype(v.dtype))
        dataset = dataset if dataset is not None else self.dataset
        if dataset is not None:
            recompute_batchnorm(model, dataset, steps if steps is not None else self.bn_steps)
        self.applied = True

    def get_config(self):
        return {"cycle_epochs": self.cycle_epochs, "start_cycle": self.start_cycle,
                "bn_steps": self.bn_steps, "swap_on_train_end": self.swap_on_train_end}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# --------------------------------------------------------------------------- checkpoints

def _checkpoint_name(epoch):
    return f"{_PREFIX}{epoch:04d}"


def latest(directory):
    """The most recent complete checkpoint in ``directory``.

    Returns
    -------
    found : tuple (epoch, path) or None
        ``epoch`` is the number of completed epochs; None when there is none
        (or the directory does not exist).  Temporary folders of an
        interrupted write are ignored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    best = None
    for p in directory.iterdir():
        name = p.name
        if not (p.is_dir() and name.startswith(_PREFIX)):
            continue
        digits = name[len(_PREFIX):]
        if not digits.isdigit() or not (p / "meta.json").is_file():
            continue
        epoch = int(digits)
        if best is None or epoch > best[0]:
            best = (epoch, p)
    return best


def _to_float(value):
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return None


def save_checkpoint(directory, epoch, model, *, swa=None, history=(), settings=None,
                    save_model=True):
    """Write the training state after ``epoch`` completed epochs, atomically.

    The state goes to a temporary folder, which is renamed to
    ``directory/epoch_NNNN`` once complete: a checkpoint either exists whole
    or not at all.

    Files: ``state.npz`` (all model variables, dropout RNG states included,
    the optimizer's variables — its step counter drives the learning-rate
    schedule — and the SWA accumulator), ``meta.json`` (epoch, history,
    settings, variable names and shapes) and, with ``save_model``, a
    ``model.keras`` copy of the model that `keras.saving.load_model` can open.

    Returns
    -------
    path : `pathlib.Path`
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    epoch = int(epoch)
    final = directory / _checkpoint_name(epoch)
    tmp = directory / f".tmp-{_checkpoint_name(epoch)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        arrays = {}
        model_vars = list(model.variables)
        for i, v in enumerate(model_vars):
            arrays[f"model_{i:05d}"] = np.asarray(v.numpy())
        optimizer = getattr(model, "optimizer", None)
        opt_vars = list(optimizer.variables) if optimizer is not None else []
        for i, v in enumerate(opt_vars):
            arrays[f"optimizer_{i:05d}"] = np.asarray(v.numpy())
        swa_meta = None
        if swa is not None:
            state = swa.get_state()
            for i, a in enumerate(state["arrays"]):
                arrays[f"swa_{i:05d}"] = a
            swa_meta = {"n_averaged": state["n_averaged"],
                        "averaged_epochs": state["averaged_epochs"],
                        "n_arrays": len(state["arrays"])}
        with open(tmp / "state.npz", "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if save_model:
            model.save(tmp / "model.keras")
        meta = {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model_variables": [[v.path, list(v.shape)] for v in model_vars],
            "optimizer_variables": [[v.path, list(v.shape)] for v in opt_vars],
            "optimizer_iterations": (int(optimizer.iterations.numpy())
                                     if optimizer is not None else None),
            "swa": swa_meta,
            "history": list(history),
            "settings": settings or {},
        }
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(tmp)
        if final.exists():
            trash = directory / f".old-{final.name}-{os.getpid()}"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _read_meta(path):
    path = Path(path)
    try:
        with open(path / "meta.json", encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format')!r}; "
                              f"this version of remap reads format {CHECKPOINT_FORMAT}")
    return meta


def _assign_all(kind, variables, arrays, recorded, path):
    if len(variables) != len(arrays):
        raise CheckpointError(
            f"checkpoint {path} holds {len(arrays)} {kind} variables but the {kind} has "
            f"{len(variables)}: it was written for a different network or optimizer")
    for v, a, (name, shape) in zip(variables, arrays, recorded):
        if tuple(v.shape) != tuple(a.shape):
            raise CheckpointError(
                f"checkpoint {path}: {kind} variable {name!r} has shape {tuple(a.shape)} but "
                f"the {kind} variable {v.path!r} has shape {tuple(v.shape)}")
    for v, a in zip(variables, arrays):
        v.assign(a)


def load_checkpoint(path, model, *, swa=None):
    """Restore a checkpoint written by `save_checkpoint` into ``model`` (and ``swa``).

    ``model`` must be built like the checkpointed one and, if the checkpoint
    holds optimizer state, compiled with the same kind of optimizer (it is
    built here if needed).

    Returns
    -------
    meta : dict
        The checkpoint's ``meta.json`` (``epoch``, ``history``, ``settings``, …).
    """
    path = Path(path)
    meta = _read_meta(path)
    try:
        with np.load(path / "state.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path / 'state.npz'}: {exc}") from exc
    n_model = len(meta["model_variables"])
    n_opt = len(meta["optimizer_variables"])
    model_arrays = [arrays[f"model_{i:05d}"] for i in range(n_model)]
    opt_arrays = [arrays[f"optimizer_{i:05d}"] for i in range(n_opt)]
    with _strategy_scope(model):
        _assign_all("model", list(model.variables), model_arrays, meta["model_variables"], path)
        if n_opt:
            optimizer = getattr(model, "optimizer", None)
            if optimizer is None:
                raise CheckpointError(f"checkpoint {path} holds optimizer state but the model "
                                      "is not compiled")
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            _assign_all("optimizer", list(optimizer.variables), opt_arrays,
                        meta["optimizer_variables"], path)
    if swa is not None:
        info = meta.get("swa") or {"n_averaged": 0, "averaged_epochs": [], "n_arrays": 0}
        swa.set_state({"n_averaged": info["n_averaged"],
                       "averaged_epochs": info["averaged_epochs"],
                       "arrays": [arrays[f"swa_{i:05d}"] for i in range(info["n_arrays"])]})
    return meta


@keras.saving.register_keras_serializable(package="remap")
class EpochCheckpoint(keras.callbacks.Callback):
    """Save the full training state after every epoch, atomically (`save_checkpoint`).

    Place it after `StochasticWeightAveraging` in the callback list so that
    the saved accumulator includes the epoch just finished.

    Parameters
    ----------
    directory : str or path
    swa : `StochasticWeightAveraging`, optional
        Its accumulator is saved with each checkpoint.
    keep : int
        Number of most recent checkpoints to keep (older ones are deleted
        after a new one is complete).
    save_model : bool
        Also write ``model.keras`` into each checkpoint.
    settings : dict, optional
        JSON-able settings stored with each checkpoint (e.g. the schedule), so
        that a resume can check it continues the same run.
    history : list of dict, optional
        Logs of earlier epochs (when resuming); each epoch's logs are appended.
    """

    def __init__(self, directory, *, swa=None, keep=2, save_model=True, settings=None,
                 history=None):
        super().__init__()
        self.directory = Path(directory)
        self.swa = swa
        self.keep = check_int("keep", keep, 1)
        self.save_model = bool(save_model)
        self.settings = dict(settings or {})
        self.history = list(history or [])
        self.last_path = None

    def on_train_begin(self, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        for p in self.directory.iterdir():   # leftovers of a killed write
            if p.is_dir() and (p.name.startswith(".tmp-") or p.name.startswith(".old-")):
                shutil.rmtree(p, ignore_errors=True)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": int(epoch)}
        for key, value in (logs or {}).items():
            value = _to_float(value)
            if value is not None:
                row[key] = value
        self.history = [h for h in self.history if h["epoch"] < epoch] + [row]
        self.last_path = save_checkpoint(self.directory, epoch + 1, self.model, swa=self.swa,
                                         history=self.history, settings=self.settings,
                                         save_model=self.save_model)
        self._prune()

    def _prune(self):
        found = []
        for p in self.directory.iterdir():
            digits = p.name[len(_PREFIX):]
            if p.is_dir() and p.name.startswith(_PREFIX) and digits.isdigit():
                found.append((int(digits), p))
        for _, p in sorted(found)[:-self.keep]:
            shutil.rmtree(p, ignore_errors=True)

    def get_config(self):
        return {"directory": str(self.directory), "keep": self.keep,
                "save_model": self.save_model, "settings": self.settings}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
