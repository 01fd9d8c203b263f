"""One training stage of a deep-REMAP network, and pre-training with the paper's settings.

`train_stage` trains a compiled model, for the `StageSchedule` it is given
(learning-rate limits, cycles, steps per epoch, SWA; built from a
``[pretrain]`` / ``[finetune]`` configuration with `StageSchedule.from_config`),
with Adam (Kingma & Ba 2014) under
cosine annealing with warm restarts (`~remap.train.schedules.CosineRestarts`),
stochastic weight averaging at the end of each cycle
(`~remap.train.callbacks.StochasticWeightAveraging`), a checkpoint after every
epoch from which an interrupted run resumes
(`~remap.train.callbacks.EpochCheckpoint`), a CSV log and optionally
TensorBoard.  `pretrain` is `train_stage` with the settings of Gilda (2025,
§5): learning rates 1e-3 → 1e-5, 4 cycles of 30 epochs.  `get_strategy`
returns a `tf.distribute.MirroredStrategy` when several GPUs are visible.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import shutil
from pathlib import Path

import keras

from .._util.fs import mkstemp
from .._util.validators import check_int, check_real, is_int
from ..nn.model import compile_model, head_names
from .callbacks import (CheckpointError, EpochCheckpoint, StochasticWeightAveraging,
                        latest, load_checkpoint)
from .schedules import CosineRestarts

__all__ = ["train_stage", "pretrain", "StageSchedule", "get_strategy",
           "configure_logical_cpus", "TrainHistory", "PRETRAIN_DEFAULTS"]

log = logging.getLogger("remap.train")

#: Pre-training settings of Gilda (2025, §5): LR range-test limits and the cosine cycles.
PRETRAIN_DEFAULTS = {"lr_max": 1e-3, "lr_min": 1e-5, "epochs_per_cycle": 30, "n_cycles": 4}

_EMBEDDING_SUFFIX = "_embedding"


# --------------------------------------------------------------------------- devices

def configure_logical_cpus(n):
    """Split the host CPU into ``n`` logical devices (e.g. to try `MirroredStrategy` on a CPU).

    Must be called before TensorFlow initializes its devices (before any
    tensor is created).
    """
    import tensorflow as tf

    n = check_int("n", n, 1)
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(int(n))])
    except RuntimeError as exc:
        raise RuntimeError(f"cannot split the CPU into {n} logical devices: TensorFlow has "
                           f"already initialized its devices ({exc}); call "
                           "configure_logical_cpus first thing in the process") from exc
    return tf.config.list_logical_devices("CPU")


def _same_device(a, b):
    import tensorflow as tf

    da, db = tf.DeviceSpec.from_string(a), tf.DeviceSpec.from_string(b)
    return ((da.device_type or "").upper() == (db.device_type or "").upper()
            and (da.device_index or 0) == (db.device_index or 0))


def get_strategy(devices=None):
    """The distribution strategy to build and train a model under.

    Parameters
    ----------
    devices : None, int or sequence of str
        None: a `tf.distribute.MirroredStrategy` over all GPUs when more than
        one is visible, else the default strategy.  An int ``n``: the first
        ``n`` GPUs, or the first ``n`` logical CPUs when there is no GPU (see
        `configure_logical_cpus`).  A sequence of device names (``"/gpu:0"``,
        ``"/cpu:1"``, …): those devices.  Several devices give a
        `~tf.distribute.MirroredStrategy`, one a
        `~tf.distribute.OneDeviceStrategy`.

    Returns
    -------
    strategy : `tf.distribute.Strategy`
        Build (and compile) the model inside ``with strategy.scope():``;
        `train_stage` then trains it under that strategy.
    """
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if devices is None:
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy(gpus)
        return tf.distribute.get_strategy()
    if is_int(devices):
        pool, kind = (gpus, "GPU") if gpus else (cpus, "CPU")
        if not 1 <= devices <= len(pool):
            raise ValueError(f"devices={devices} asks for more {kind} devices than the "
                             f"{len(pool)} visible: {pool}")
        names = pool[:int(devices)]
    elif isinstance(devices, (list, tuple)) and devices and all(
            isinstance(d, str) for d in devices):
        names = []
        for d in devices:
            match = [n for n in gpus + cpus if _same_device(n, d)]
            if not match:
                raise ValueError(f"device {d!r} is not visible; visible devices: {gpus + cpus}")
            names.append(match[0])
    else:
        raise TypeError(f"devices must be None, an int or a non-empty list of device names; "
                        f"received devices={devices!r}")
    if len(names) == 1:
        return tf.distribute.OneDeviceStrategy(names[0])
    return tf.distribute.MirroredStrategy(names)


# --------------------------------------------------------------------------- helpers

class TrainHistory(dict):
    """Per-epoch logs of a training stage: ``history[key]`` is a list over epochs.

    Like `keras.callbacks.History.history` (keys ``loss``, ``val_loss``, one
    per output loss and metric, plus ``lr`` and ``epoch``), covering all epochs
    of the stage, those before a resume included.

    Attributes
    ----------
    epochs : int
        Epochs of the stage (cycles × epochs per cycle).
    resumed_from : int
        Completed epochs restored from a checkpoint (0 for a fresh start).
    swa_cycles : list of int
        Epochs whose weights entered the SWA average.
    swa_applied : bool
        Whether the returned model carries the averaged weights.
    final : dict
        Validation metrics of the returned model (after SWA and batch-norm
        re-estimation), keyed without the ``val_`` prefix; empty without
        validation data.
    checkpoint : str or None
        Path of the last checkpoint.
    """

    def __init__(self, rows, *, epochs, resumed_from, swa_cycles, swa_applied, final,
                 checkpoint):
        keys = []
        for row in rows:
            keys += [k for k in row if k not in keys]
        super().__init__({k: [row.get(k, math.nan) for row in rows] for k in keys})
        self.epochs = epochs
        self.resumed_from = resumed_from
        self.swa_cycles = list(swa_cycles)
        self.swa_applied = swa_applied
        self.final = dict(final)
        self.checkpoint = checkpoint


class _EpochRecorder(keras.callbacks.Callback):
    """Adds ``lr`` (the learning rate of the epoch's last step) to the logs and keeps them."""

    def __init__(self, schedule, rows):
        super().__init__()
        self.schedule = schedule
        self.rows = list(rows)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            step = int(self.model.optimizer.iterations.numpy())
            logs["lr"] = self.schedule.value(max(step - 1, 0))
        row = {"epoch": int(epoch)}
        for key, value in (logs or {}).items():
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                pass
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]


def _complete_targets_fn(model):
    """A tf.data map function adding ``{head}_embedding`` targets the model expects."""
    outputs = list(model.output_names)

    def complete(y):
        if not isinstance(y, dict):
            return y
        out = dict(y)
        for name in outputs:
            base = name[:-len(_EMBEDDING_SUFFIX)]
            if name not in out and name.endswith(_EMBEDDING_SUFFIX) and base in y:
                out[name] = y[base]
        return out

    def fn(*element):
        if len(element) == 1:
            return element[0]
        return (element[0], complete(element[1])) + tuple(element[2:])

    return fn


def _prepare(ds, model, name):
    import tensorflow as tf

    if not isinstance(ds, tf.data.Dataset):
        raise TypeError(f"{name} must be a tf.data.Dataset of (inputs, targets) batches; "
                        f"received {type(ds).__name__}")
    spec = ds.element_spec
    if isinstance(spec, tuple) and len(spec) >= 2 and isinstance(spec[1], dict):
        return ds.map(_complete_targets_fn(model))
    return ds


def _recompile(model, optimizer):
    if not getattr(model, "compiled", False):
        raise ValueError(f"model {model.name!r} is not compiled: compile it with its losses "
                         "first (remap.nn.model.compile_model); train_stage replaces only "
                         "the optimizer")
    kwargs = keras.saving.deserialize_keras_object(model.get_compile_config())
    kwargs["optimizer"] = optimizer
    model.compile(**kwargs)


def _write_csv(path, rows):
    """Rewrite the CSV log from checkpointed rows (before appending the resumed epochs)."""
    path = Path(path)
    keys = sorted({k for r in rows for k in r if k != "epoch"})
    fd, tmp = mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=["epoch"] + keys)
                writer.writeheader()
                for r in rows:
                    writer.writerow({k: r.get(k, "") for k in ["epoch"] + keys})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _drop_checkpoints_after(directory, epoch):
    for p in Path(directory).glob("epoch_*"):
        digits = p.name[len("epoch_"):]
        if p.is_dir() and digits.isdigit() and int(digits) > epoch:
            shutil.rmtree(p)


# --------------------------------------------------------------------------- schedule

#: The `StageSchedule` fields, also accepted by `train_stage` as keywords.
_SCHEDULE_FIELDS = ("lr_max", "lr_min", "epochs_per_cycle", "n_cycles", "steps_per_epoch",
                    "swa", "swa_start_cycle", "bn_steps")


@dataclasses.dataclass(frozen=True)
class StageSchedule:
    """What one training stage runs: the cosine cycles, their learning rates and SWA.

    The fields that enter a checkpoint's settings (all but ``bn_steps``) must
    match for a run to resume from it (`train_stage`).

    Parameters
    ----------
    lr_max, lr_min : float
        Learning-rate limits of every cosine cycle
        (`~remap.train.lr_finder.find_lr`; paper: 1e-3 and 1e-5).
    epochs_per_cycle, n_cycles : int
        Length and number of the cosine cycles (paper: 30 and 4), >= 1.
    steps_per_epoch : int or None
        Batches per epoch; None: one pass over the training set (its
        cardinality, or counted by reading it once).
    swa : bool
        Stochastic weight averaging at the end of each cycle (False: the "no
        SWA" ablation, the model keeps its last weights).
    swa_start_cycle : int
        First cycle (1-based) averaged by SWA; with ``swa`` at most
        ``n_cycles``.
    bn_steps : int or None
        Batches for the batch-norm re-estimation after SWA (default one pass
        over the training set, or ``steps_per_epoch`` batches if it is
        infinite).

    Raises
    ------
    ValueError
        A field out of range, e.g. ``n_cycles must be an integer >= 1;
        received n_cycles=0``.

    Examples
    --------
    >>> from remap.train.config import PretrainConfig
    >>> StageSchedule.from_config(PretrainConfig(), lr_max=1e-3, lr_min=1e-5).total_epochs
    120
    """

    lr_max: float
    lr_min: float
    epochs_per_cycle: int
    n_cycles: int
    steps_per_epoch: int | None = None
    swa: bool = True
    swa_start_cycle: int = 1
    bn_steps: int | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "lr_max", check_real("lr_max", self.lr_max))
        set_(self, "lr_min", check_real("lr_min", self.lr_min))
        for name in ("epochs_per_cycle", "n_cycles", "swa_start_cycle"):
            set_(self, name, check_int(name, getattr(self, name), 1))
        for name in ("steps_per_epoch", "bn_steps"):
            if getattr(self, name) is not None:
                set_(self, name, check_int(name, getattr(self, name), 1))
        set_(self, "swa", bool(self.swa))
        if self.swa and self.swa_start_cycle > self.n_cycles:
            raise ValueError(f"swa_start_cycle={self.swa_start_cycle} is after the last cycle "
                             f"(n_cycles={self.n_cycles}): SWA would average nothing")

    @classmethod
    def from_config(cls, config, *, lr_max: float | None = None, lr_min: float | None = None,
                    swa: bool | None = None) -> "StageSchedule":
        """The schedule of a ``[pretrain]`` or ``[finetune]`` configuration.

        Parameters
        ----------
        config : `~remap.train.config.PretrainConfig` or `~remap.train.config.FinetuneConfig`
            Gives ``epochs_per_cycle``, ``n_cycles``, ``steps_per_epoch``,
            ``swa`` and ``bn_batches`` (as ``bn_steps``).
        lr_max, lr_min : float, optional
            The limits, where the configuration's are not numbers (``"auto"``:
            from the range test; ``"pretrain"``: the pre-training limits) or
            to override them.
        swa : bool, optional
            Overrides ``config.swa`` (e.g. the ``no_swa`` ablation).

        Returns
        -------
        StageSchedule

        Raises
        ------
        ValueError
            A limit is left to a rule (``"auto"``, ``"pretrain"``) and not given.
        """
        limits = {}
        for name, given in (("lr_max", lr_max), ("lr_min", lr_min)):
            value = getattr(config, name) if given is None else given
            if isinstance(value, str):
                raise ValueError(f"{type(config).__name__}.{name} is {value!r}: give the "
                                 f"resolved limit as {name}=")
            limits[name] = value
        return cls(epochs_per_cycle=config.epochs_per_cycle, n_cycles=config.n_cycles,
                   steps_per_epoch=config.steps_per_epoch,
                   swa=config.swa if swa is None else swa, bn_steps=config.bn_batches,
                   **limits)

    @property
    def total_epochs(self) -> int:
        """Epochs of the stage: ``epochs_per_cycle × n_cycles``."""
        return self.epochs_per_cycle * self.n_cycles

    def checkpoint_settings(self) -> dict:
        """The settings stored in (and compared against) every checkpoint of the stage."""
        return {"lr_max": self.lr_max, "lr_min": self.lr_min,
                "epochs_per_cycle": self.epochs_per_cycle, "n_cycles": self.n_cycles,
                "steps_per_epoch": self.steps_per_epoch, "swa": self.swa,
                "swa_start_cycle": self.swa_start_cycle}


def _schedule(schedule, options):
    """The stage's `StageSchedule`: ``schedule`` with any schedule keywords applied."""
    unknown = sorted(set(options) - set(_SCHEDULE_FIELDS))
    if unknown:
        raise TypeError(f"train_stage() got unexpected keyword argument(s) "
                        f"{', '.join(map(repr, unknown))}")
    if schedule is None:
        missing = [k for k in ("lr_max", "lr_min", "epochs_per_cycle", "n_cycles")
                   if k not in options]
        if missing:
            raise TypeError(f"train_stage() needs a StageSchedule (or the keywords "
                            f"{', '.join(missing)})")
        return StageSchedule(**options)
    if not isinstance(schedule, StageSchedule):
        raise TypeError(f"schedule must be a StageSchedule; received "
                        f"{type(schedule).__name__}")
    return dataclasses.replace(schedule, **options) if options else schedule


# --------------------------------------------------------------------------- training

def train_stage(model, train_ds, val_ds, schedule: StageSchedule | None = None, *,
                checkpoint_dir=None, log_dir=None, seed: int = 0, verbose="auto",
                callbacks=(), initial_epoch: int | None = None, optimizer_factory=None,
                validation_steps: int | None = None, tensorboard: bool = False,
                keep_checkpoints: int = 2, save_model_checkpoints: bool = True, heads=None,
                compile_options: dict | None = None, **schedule_options) -> "TrainHistory":
    """Train a compiled model for ``schedule.n_cycles`` cosine cycles, with SWA and checkpoints.

    The model keeps its losses (unless ``heads`` or ``compile_options`` are
    given: it is then compiled anew with `remap.nn.model.compile_model`); its
    optimizer is replaced by ``optimizer_factory(learning_rate)`` (default
    `keras.optimizers.Adam`), the learning rate a
    `~remap.train.schedules.CosineRestarts` (``schedule.lr_max`` →
    ``schedule.lr_min`` in each cycle of ``epochs_per_cycle ×
    steps_per_epoch`` steps).

    Data: ``train_ds`` is repeated and read as one stream of batches,
    ``steps_per_epoch`` per epoch.  Targets given as a dict of head PMFs are
    completed with the ``{head}_embedding`` targets that the model's triplet
    losses need.

    Resume: with ``checkpoint_dir`` a checkpoint is written after every epoch
    and, when the directory already holds one, training continues from the
    last complete epoch: the model and optimizer variables (so the schedule
    step), the dropout RNG states and the SWA accumulator are restored, and
    the batch stream is advanced past the batches already consumed (for a
    freshly built, seeded ``train_ds`` the resumed run then sees the same
    batches as an uninterrupted one; skipping reads those batches once).  The
    checkpoint must come from the same settings
    (`StageSchedule.checkpoint_settings`: learning rates, cycles, steps per
    epoch, SWA), otherwise `~remap.train.callbacks.CheckpointError` is raised.

    Parameters
    ----------
    model : `keras.Model`
        Compiled (e.g. with `remap.nn.model.compile_model`); built under the
        strategy it should train with (`get_strategy`).
    train_ds : `tf.data.Dataset`
        Training batches ``(flux, targets)``.
    val_ds : `tf.data.Dataset` or None
        Validation batches, evaluated after every epoch.
    schedule : `StageSchedule`
        Learning-rate limits, cycles, steps per epoch, SWA
        (`StageSchedule.from_config` builds it from a ``[pretrain]`` or
        ``[finetune]`` configuration).
    checkpoint_dir : str or path, optional
        Where to write per-epoch checkpoints and resume from.
    log_dir : str or path, optional
        Writes ``history.csv`` (keras `~keras.callbacks.CSVLogger`) and, with
        ``tensorboard``, TensorBoard logs in ``tensorboard/``.
    seed : int
        Seeds Python, NumPy and the Keras/TF global generators
        (`keras.utils.set_random_seed`) before training; the model's weights
        and the data order are seeded where they are built.
    verbose : "auto", 0, 1 or 2
        Keras progress output.
    callbacks : sequence of `keras.callbacks.Callback`
        Extra callbacks, called after the built-in ones.
    initial_epoch : int, optional
        None: resume from the latest checkpoint if any; 0: start afresh
        (dropping existing checkpoints); k > 0: resume from the checkpoint of
        epoch k (requires ``checkpoint_dir``), dropping later ones.
    optimizer_factory : callable, optional
        ``optimizer_factory(learning_rate_schedule) -> optimizer``.
    validation_steps : int, optional
    tensorboard : bool
    keep_checkpoints : int
        Checkpoints kept on disk.
    save_model_checkpoints : bool
        Also write a ``model.keras`` into each checkpoint.
    heads : sequence of `remap.heads.HeadSpec` or str, optional
        Compile with `remap.nn.model.compile_model` for these heads (default
        with ``compile_options`` alone: all heads of the model).
    compile_options : dict, optional
        Keyword arguments of `remap.nn.model.compile_model` (``use_triplet``,
        ``triplet_weight``, ``gamma``, ``margin``, …).
    **schedule_options
        `StageSchedule` fields (``lr_max=``, ``n_cycles=``, …): without
        ``schedule`` they make it (the keyword form of earlier versions), with
        it they replace its fields.

    Returns
    -------
    history : `TrainHistory`

    Examples
    --------
    ``train_stage(model, train, val, StageSchedule(1e-3, 1e-5, 30, 4),
    checkpoint_dir="ckpt")`` is the same run as ``train_stage(model, train,
    val, lr_max=1e-3, lr_min=1e-5, epochs_per_cycle=30, n_cycles=4,
    checkpoint_dir="ckpt")``, and either resumes the other's checkpoints.
    """
    import tensorflow as tf

    schedule = _schedule(schedule, schedule_options)
    total = schedule.total_epochs
    if initial_epoch is not None:
        if not (is_int(initial_epoch) and 0 <= initial_epoch <= total):
            raise ValueError(f"initial_epoch must be None or an integer in [0, {total}]; "
                             f"received initial_epoch={initial_epoch!r}")
        if initial_epoch > 0 and checkpoint_dir is None:
            raise ValueError(f"initial_epoch={initial_epoch} needs checkpoint_dir (the state "
                             "of that epoch is read from its checkpoint)")

    train = _prepare(train_ds, model, "train_ds")
    val = _prepare(val_ds, model, "val_ds") if val_ds is not None else None
    if schedule.steps_per_epoch is None:
        n = int(train_ds.cardinality())
        if n == tf.data.INFINITE_CARDINALITY:
            raise ValueError("train_ds is infinite: give steps_per_epoch")
        if n < 0:
            n = sum(1 for _ in train_ds)
        if n < 1:
            raise ValueError("train_ds is empty")
        schedule = dataclasses.replace(schedule, steps_per_epoch=n)
    if (schedule.bn_steps is None
            and int(train_ds.cardinality()) == tf.data.INFINITE_CARDINALITY):
        schedule = dataclasses.replace(schedule, bn_steps=schedule.steps_per_epoch)
    steps_per_epoch = schedule.steps_per_epoch
    epochs_per_cycle = schedule.epochs_per_cycle

    keras.utils.set_random_seed(int(seed))
    lr_schedule = CosineRestarts(schedule.lr_max, schedule.lr_min,
                                 epochs_per_cycle * steps_per_epoch, schedule.n_cycles)
    factory = optimizer_factory or (lambda lr: keras.optimizers.Adam(learning_rate=lr))
    strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    with strategy.scope():
        optimizer = factory(lr_schedule)
        if heads is not None or compile_options:
            compile_model(model, head_names(model) if heads is None else heads,
                          optimizer=optimizer, **dict(compile_options or {}))
        else:
            _recompile(model, optimizer)
        optimizer.build(model.trainable_variables)

    settings = schedule.checkpoint_settings()
    swa_cb = (StochasticWeightAveraging(epochs_per_cycle, schedule.swa_start_cycle,
                                        dataset=train_ds, bn_steps=schedule.bn_steps)
              if schedule.swa else None)

    # ---- resume
    start, rows, ckpt_path = 0, [], None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        if initial_epoch == 0:
            _drop_checkpoints_after(checkpoint_dir, 0)
        elif initial_epoch is None:
            found = latest(checkpoint_dir)
            if found is not None:
                start, ckpt_path = found
        else:
            ckpt_path = checkpoint_dir / f"epoch_{initial_epoch:04d}"
            if not (ckpt_path / "meta.json").is_file():
                found = latest(checkpoint_dir)
                raise CheckpointError(
                    f"no checkpoint of epoch {initial_epoch} in {checkpoint_dir} (latest: "
                    f"{'none' if found is None else found[0]})")
            start = initial_epoch
            _drop_checkpoints_after(checkpoint_dir, start)
        if ckpt_path is not None:
            meta = load_checkpoint(ckpt_path, model, swa=swa_cb)
            old = meta.get("settings", {})
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            if diff:
                text = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in
                                 diff.items())
                raise CheckpointError(f"checkpoint {ckpt_path} was written with other "
                                      f"settings ({text}); use another checkpoint_dir or "
                                      "initial_epoch=0 to start afresh")
            rows = [r for r in meta.get("history", []) if r["epoch"] < start]
            log.info("resuming from %s (%d of %d epochs done)", ckpt_path, start, total)

    # ---- callbacks
    recorder = _EpochRecorder(lr_schedule, rows)
    cbs = [recorder]
    if swa_cb is not None:
        cbs.append(swa_cb)
    checkpoint_cb = None
    if checkpoint_dir is not None:
        checkpoint_cb = EpochCheckpoint(checkpoint_dir, swa=swa_cb, keep=keep_checkpoints,
                                        save_model=save_model_checkpoints, settings=settings,
                                        history=rows)
        cbs.append(checkpoint_cb)
    if log_dir is not None:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        csv_path = log_dir / "history.csv"
        if start > 0:
            _write_csv(csv_path, rows)
        cbs.append(keras.callbacks.CSVLogger(str(csv_path), append=start > 0))
        if tensorboard:
            cbs.append(keras.callbacks.TensorBoard(log_dir=str(log_dir / "tensorboard")))
    cbs += list(callbacks)

    if start < total:
        stream = train.repeat()
        if start:
            stream = stream.skip(start * steps_per_epoch)
        model.fit(stream, validation_data=val, epochs=total, initial_epoch=start,
                  steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                  callbacks=cbs, verbose=verbose, shuffle=False)
    elif swa_cb is not None and swa_cb.n_averaged:
        swa_cb.apply(model)   # the run had finished; its checkpoint precedes the swap

    rows = recorder.rows
    final = {}
    if swa_cb is not None and swa_cb.applied:
        if val is not None:
            final = model.evaluate(val, steps=validation_steps, verbose=0, return_dict=True)
            final = {k: float(v) for k, v in final.items()}
    elif rows:
        final = {k[4:]: v for k, v in rows[-1].items() if k.startswith("val_")}
    return TrainHistory(rows, epochs=total, resumed_from=start,
                        swa_cycles=swa_cb.averaged_epochs if swa_cb is not None else [],
                        swa_applied=bool(swa_cb is not None and swa_cb.applied), final=final,
                        checkpoint=(str(checkpoint_cb.last_path) if checkpoint_cb is not None
                                    and checkpoint_cb.last_path is not None
                                    else (str(ckpt_path) if ckpt_path else None)))


def pretrain(model, train_ds, val_ds, *, steps_per_epoch, lr_max=PRETRAIN_DEFAULTS["lr_max"],
             lr_min=PRETRAIN_DEFAULTS["lr_min"],
             epochs_per_cycle=PRETRAIN_DEFAULTS["epochs_per_cycle"],
             n_cycles=PRETRAIN_DEFAULTS["n_cycles"], swa=True, swa_start_cycle=1, bn_steps=None,
             **kwargs):
    """Pre-train on the synthetic set: `train_stage` with the paper's settings.

    Gilda (2025, §5): learning rates 1e-3 → 1e-5 (from the range test, §4.6),
    4 cosine cycles of 30 epochs, SWA over the 4 end-of-cycle weights.  The
    `StageSchedule` fields are keywords here (with those defaults); all other
    keyword arguments of `train_stage` are accepted.
    """
    schedule = StageSchedule(lr_max=lr_max, lr_min=lr_min, epochs_per_cycle=epochs_per_cycle,
                             n_cycles=n_cycles, steps_per_epoch=steps_per_epoch, swa=swa,
                             swa_start_cycle=swa_start_cycle, bn_steps=bn_steps)
    return train_stage(model, train_ds, val_ds, schedule, **kwargs)
