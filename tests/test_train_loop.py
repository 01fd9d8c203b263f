"""Tests of remap.train: cosine restarts, SWA, batch-norm re-estimation, checkpoints
with resume after SIGKILL, the learning-rate range test, train_stage and MirroredStrategy."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from remap.train.callbacks import (CheckpointError, EpochCheckpoint,  # noqa: E402
                                   StochasticWeightAveraging, latest, load_checkpoint,
                                   recompute_batchnorm, save_checkpoint)
from remap.train.config import FinetuneConfig, PretrainConfig  # noqa: E402
from remap.train.loop import StageSchedule, TrainHistory, get_strategy, train_stage  # noqa: E402,E501
from remap.train.lr_finder import find_lr, suggest_lr  # noqa: E402
from remap.train.schedules import CosineRestarts  # noqa: E402


# --------------------------------------------------------------------------- helpers

def tiny_problem(n=192, npix=64, n_classes=5, seed=0):
    """A learnable toy: the class sets the depth of a broad absorption line."""
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, n_classes, n)
    x = np.linspace(0, 1, npix)
    depth = 0.1 + 0.8 * cls / (n_classes - 1)
    flux = 1 - depth[:, None] * np.exp(-0.5 * ((x[None] - 0.5) / 0.15) ** 2)
    flux = (flux + rng.normal(0, 0.05, flux.shape)).astype("float32")
    y = np.eye(n_classes, dtype="float32")[cls]
    return flux, y


def tiny_model(npix=64, n_classes=5, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((npix,), name="flux")
    x = keras.layers.Reshape((npix, 1))(inp)
    x = keras.layers.Conv1D(4, 5, padding="same", name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dropout(0.2, seed=seed, name="drop")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="a")(x)
    model = keras.Model(inp, {"a": out})
    model.compile(optimizer="adam", loss={"a": "categorical_crossentropy"})
    return model


def tiny_ds(flux, y, batch=32, seed=1):
    return (tf.data.Dataset.from_tensor_slices((flux, {"a": y}))
            .shuffle(len(flux), seed=seed, reshuffle_each_iteration=True).batch(batch))


def run_script(path, *args, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, str(path), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- schedule

def test_cosine_restarts_cycle_boundaries():
    s = CosineRestarts(1e-3, 1e-5, steps_per_cycle=10, n_cycles=3)
    lr = np.array([float(s(t)) for t in range(35)])
    assert lr[0] == pytest.approx(1e-3, rel=1e-6)               # cycle start
    assert lr[5] == pytest.approx(0.5 * (1e-3 + 1e-5), rel=1e-6)  # half way
    # last step of the cycle: cos(pi 9/10) -> close to lr_min
    assert lr[9] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(0.9 * math.pi)),
                                  rel=1e-5)
    assert lr[9] < 0.04e-3                                      # within 3 % of the range
    assert np.all(np.diff(lr[:10]) < 0)                          # monotone decay in a cycle
    assert lr[10] == pytest.approx(1e-3, rel=1e-6)               # restart
    assert lr[20] == pytest.approx(1e-3, rel=1e-6)
    np.testing.assert_allclose(lr[10:20], lr[:10], rtol=1e-6)    # cycles are identical
    np.testing.assert_allclose(lr[30:], 1e-5, rtol=1e-6)         # after the last cycle
    np.testing.assert_allclose(lr[:30], [s.value(t) for t in range(30)], rtol=1e-5)
    again = CosineRestarts.from_config(s.get_config())
    assert again.get_config() == s.get_config()
    assert keras.saving.get_registered_object("remap>CosineRestarts") is CosineRestarts


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr_max=0.0, lr_min=0.0, steps_per_cycle=5, n_cycles=1), "lr_max=0.0"),
    (dict(lr_max=1e-3, lr_min=1e-2, steps_per_cycle=5, n_cycles=1), "lr_min=0.01"),
    (dict(lr_max=1e-3, lr_min=1e-5, steps_per_cycle=0, n_cycles=1), "steps_per_cycle=0"),
    (dict(lr_max=1e-3, lr_min=1e-5, steps_per_cycle=5, n_cycles=2.5), "n_cycles=2.5"),
])
def test_cosine_restarts_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CosineRestarts(**kwargs)


# --------------------------------------------------------------------------- SWA and BN

def test_swa_is_mean_of_end_of_cycle_weights():
    flux, y = tiny_problem(n=64)
    model = tiny_model()
    snapshots = []
    snap = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(
        [v.numpy().copy() for v in model.weights]) if (e + 1) % 2 == 0 else None)
    swa_all = StochasticWeightAveraging(2, 1, swap_on_train_end=False)
    swa_late = StochasticWeightAveraging(2, 2, swap_on_train_end=False)
    model.fit(flux, {"a": y}, batch_size=16, epochs=6, verbose=0,
              callbacks=[snap, swa_all, swa_late])
    assert len(snapshots) == 3
    assert swa_all.averaged_epochs == [2, 4, 6] and swa_late.averaged_epochs == [4, 6]
    # the snapshots differ, so the averages are informative
    assert not np.allclose(snapshots[0][0], snapshots[2][0])
    for got, *snaps in zip(swa_all.average, *snapshots):
        np.testing.assert_allclose(got, np.mean(snaps, axis=0), rtol=1e-6, atol=1e-7)
    for got, _, *snaps in zip(swa_late.average, *snapshots):
        np.testing.assert_allclose(got, np.mean(snaps, axis=0), rtol=1e-6, atol=1e-7)
    swa_all.apply(model)
    for v, *snaps in zip(model.weights, *snapshots):
        np.testing.assert_allclose(v.numpy(), np.mean(snaps, axis=0), rtol=1e-6, atol=1e-7)
    with pytest.raises(RuntimeError, match="start_cycle=3"):
        StochasticWeightAveraging(2, 3).apply(model)
    with pytest.raises(ValueError, match="cycle_epochs=0"):
        StochasticWeightAveraging(0)


class _Block(keras.layers.Layer):
    """Dense + BatchNorm inside a subclassed layer (BN layers nested like in ResidualModule)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units, name="dense")
        self.bn = keras.layers.BatchNormalization(name="bn")

    def build(self, shape):
        self.dense.build(shape)
        self.bn.build(shape[:-1] + (self.dense.units,))

    def call(self, x, training=False):
        return self.bn(self.dense(x), training=training)


def test_recompute_batchnorm_matches_direct_statistics():
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    inp = keras.Input((6,))
    d1 = keras.layers.Dense(5, name="d1")
    bn1 = keras.layers.BatchNormalization(name="bn1", epsilon=1e-3)
    frozen = keras.layers.BatchNormalization(name="frozen")
    block = _Block(3, name="block")
    h = bn1(d1(inp))
    h = keras.layers.Dropout(0.5)(h)      # inactive during the re-estimation
    h = block(h)
    out = keras.layers.Dense(2)(frozen(h))
    model = keras.Model(inp, out)
    frozen.trainable = False
    # give the BN layers non-trivial affine parameters and stale statistics
    for layer in (bn1, block.bn):
        layer.gamma.assign(rng.uniform(0.5, 2, layer.gamma.shape))
        layer.beta.assign(rng.normal(0, 1, layer.beta.shape))
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 7.0))
    frozen.moving_mean.assign(np.full(3, 5.0))
    x = (rng.normal(2.0, 3.0, (50, 6))).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros((50, 2), "float32"))).batch(16)

    n = recompute_batchnorm(model, ds)
    assert n == 50

    # direct computation, batch by batch (batches of 16, 16, 16, 2)
    W1, b1 = (w.numpy().astype(float) for w in d1.weights)
    W2, b2 = (w.numpy().astype(float) for w in block.dense.weights)
    g1, be1 = bn1.gamma.numpy().astype(float), bn1.beta.numpy().astype(float)
    h1 = x.astype(float) @ W1 + b1
    np.testing.assert_allclose(bn1.moving_mean.numpy(), h1.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn1.moving_variance.numpy(), h1.var(0), rtol=1e-5, atol=1e-6)
    h2 = []
    for s in range(0, 50, 16):
        hb = h1[s:s + 16]
        nb = (hb - hb.mean(0)) / np.sqrt(hb.var(0) + 1e-3) * g1 + be1   # batch statistics
        h2.append(nb @ W2 + b2)
    h2 = np.concatenate(h2)
    np.testing.assert_allclose(block.bn.moving_mean.numpy(), h2.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(block.bn.moving_variance.numpy(), h2.var(0), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), 5.0)       # frozen: untouched
    # the hooks are gone: inference uses the new moving statistics
    direct = (h1[:4] - h1.mean(0)) / np.sqrt(h1.var(0) + 1e-3) * g1 + be1
    sub = keras.Model(inp, bn1.output)
    np.testing.assert_allclose(sub(x[:4], training=False), direct, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="empty dataset"):
        recompute_batchnorm(model, ds.take(0))


# --------------------------------------------------------------------------- LR finder

def test_find_lr_records_detects_divergence_and_restores(tmp_path):
    flux, y = tiny_problem(n=128)
    model = tiny_model()
    ds = tiny_ds(flux, y, batch=16)
    before = [v.numpy().copy() for v in model.variables]
    result = find_lr(model, ds, lr_start=1e-5, lr_end=1e3, steps=150, divergence=3.0)
    assert result.diverged
    assert 20 < len(result.lrs) < 150                       # stopped early
    assert len(result.losses) == len(result.lrs) == len(result.smoothed)
    assert np.all(np.diff(result.lrs) > 0)
    assert result.lrs[0] == pytest.approx(1e-5, rel=1e-5)
    ratio = (1e3 / 1e-5) ** (1 / 149)
    np.testing.assert_allclose(result.lrs[1:] / result.lrs[:-1], ratio, rtol=1e-4)
    # the loss fell below its starting value before blowing up
    assert np.nanmin(result.smoothed) < 0.9 * result.smoothed[0]
    i_min = int(np.nanargmin(result.smoothed))
    # default rule: steepest descent, below the minimum
    assert result.settings["rule"] == "steepest"
    assert result.lrs[0] <= result.lr_max < result.lrs[i_min]
    assert (result.lr_max, result.lr_min) == suggest_lr(result.lrs, result.smoothed)
    assert result.lr_min == pytest.approx(result.lr_max / 100, rel=1e-12)
    minimum = suggest_lr(result.lrs, result.smoothed, rule="minimum")
    assert minimum[0] == pytest.approx(result.lrs[i_min] / 10, rel=1e-9)
    for v, b in zip(model.variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    assert int(model.optimizer.iterations.numpy()) == 0      # its own optimizer is untouched
    png = result.plot(tmp_path / "plots" / "lr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert [p.name for p in png.parent.iterdir()] == ["lr.png"]
    with pytest.raises(ValueError, match="lr_end=1e-08"):
        find_lr(model, ds, lr_start=1e-5, lr_end=1e-8)
    with pytest.raises(ValueError, match="steps=2"):
        find_lr(model, ds, steps=2)


def test_suggest_lr_rules_on_a_known_curve():
    # a range-test-like curve: flat, steepest fall around 1e-3, a long slow
    # plateau down to a minimum at 0.5, then divergence
    lrs = np.logspace(-6, 0, 61)
    x = np.log10(lrs)
    loss = 5.0 - 2.0 / (1.0 + np.exp(-(x + 3.0) / 0.25)) - 0.3 * np.clip(x + 2.0, 0, None)
    loss[x > -0.3] += 40.0 * (x[x > -0.3] + 0.3) ** 2
    i_min = int(np.argmin(loss))
    assert 0.3 < lrs[i_min] < 0.8
    lr_max, lr_min = suggest_lr(lrs, loss)
    assert lr_max == pytest.approx(1e-3, rel=0.15)        # the inflection of the fall
    assert lr_min == pytest.approx(lr_max / 100)
    assert suggest_lr(lrs, loss, rule="minimum")[0] == pytest.approx(lrs[i_min] / 10)
    # a minimum too close to the start: fall back to the minimum rule, floored at lr_start
    assert suggest_lr(lrs[:3], [1.0, 0.5, 2.0])[0] == lrs[0]
    with pytest.raises(ValueError, match="rule must be"):
        suggest_lr(lrs, loss, rule="valley")
    with pytest.raises(ValueError, match="no finite loss"):
        suggest_lr(lrs[:2], [np.nan, np.nan])


# --------------------------------------------------------------------------- checkpoints

def test_checkpoint_roundtrip_and_partial_writes_ignored(tmp_path):
    flux, y = tiny_problem(n=64)
    model = tiny_model()
    model.fit(flux, {"a": y}, batch_size=16, epochs=1, verbose=0)
    swa = StochasticWeightAveraging(1)
    swa.update(model, epoch=1)
    path = save_checkpoint(tmp_path, 3, model, swa=swa, history=[{"epoch": 2, "loss": 1.0}])
    assert latest(tmp_path) == (3, path)
    # a killed write leaves a temp folder; a folder without meta.json is not complete
    (tmp_path / ".tmp-epoch_0009-1").mkdir()
    (tmp_path / ".tmp-epoch_0009-1" / "meta.json").write_text("{")
    (tmp_path / "epoch_0010").mkdir()
    assert latest(tmp_path) == (3, path)
    other = tiny_model(seed=5)
    other.optimizer.build(other.trainable_variables)
    swa2 = StochasticWeightAveraging(1)
    meta = load_checkpoint(path, other, swa=swa2)
    assert meta["epoch"] == 3 and meta["history"] == [{"epoch": 2, "loss": 1.0}]
    for a, b in zip(model.variables, other.variables):      # dropout RNG state included
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.optimizer.variables, other.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(other.optimizer.iterations.numpy()) == 4
    assert swa2.n_averaged == 1 and swa2.averaged_epochs == [1]
    loaded = keras.saving.load_model(path / "model.keras")
    np.testing.assert_array_equal(loaded.get_layer("conv").kernel.numpy(),
                                  model.get_layer("conv").kernel.numpy())
    bigger = keras.Sequential([keras.Input((64,)), keras.layers.Dense(3)])
    with pytest.raises(CheckpointError, match="different network"):
        load_checkpoint(path, bigger)
    cb = EpochCheckpoint(tmp_path)
    cb.set_model(model)
    cb.on_train_begin()
    assert not (tmp_path / ".tmp-epoch_0009-1").exists()


# --------------------------------------------------------------------------- train_stage

def test_stage_schedule_from_configs_validation_and_checkpoint_settings():
    pre = StageSchedule.from_config(PretrainConfig(), lr_max=1e-3, lr_min=1e-5)
    assert pre == StageSchedule(1e-3, 1e-5, 30, 4) and pre.total_epochs == 120
    fine = StageSchedule.from_config(
        FinetuneConfig(lr_max=2e-4, lr_min=2e-6, n_cycles=2, steps_per_epoch=7, bn_batches=3),
        swa=False)
    assert (fine.lr_max, fine.lr_min, fine.n_cycles, fine.steps_per_epoch, fine.bn_steps,
            fine.swa) == (2e-4, 2e-6, 2, 7, 3, False)
    with pytest.raises(ValueError, match="PretrainConfig.lr_max is 'auto': give the resolved"):
        StageSchedule.from_config(PretrainConfig())
    with pytest.raises(ValueError, match="FinetuneConfig.lr_min is 'pretrain'"):
        StageSchedule.from_config(FinetuneConfig(), lr_max=1e-3)
    # the checkpoint signature keeps the keys and types of the keyword form
    settings = StageSchedule(np.float32(0.5), 1, 2, 3, steps_per_epoch=np.int64(4),
                             bn_steps=9).checkpoint_settings()
    assert settings == {"lr_max": 0.5, "lr_min": 1.0, "epochs_per_cycle": 2, "n_cycles": 3,
                        "steps_per_epoch": 4, "swa": True, "swa_start_cycle": 1}
    assert [type(v) for v in settings.values()] == [float, float, int, int, int, bool, int]
    for kwargs, message in [
            ({"n_cycles": 0}, "n_cycles must be an integer >= 1; received n_cycles=0"),
            ({"lr_max": float("nan")}, "lr_max must be a finite number; received lr_max=nan"),
            ({"lr_min": True}, "lr_min must be a finite number; received lr_min=True"),
            ({"steps_per_epoch": 2.5}, "steps_per_epoch must be an integer >= 1"),
            ({"bn_steps": 0}, "bn_steps must be an integer >= 1; received bn_steps=0"),
            ({"swa_start_cycle": 4}, "swa_start_cycle=4 is after the last cycle")]:
        with pytest.raises(ValueError, match=message):
            StageSchedule(**{"lr_max": 1e-3, "lr_min": 1e-5, "epochs_per_cycle": 2,
                             "n_cycles": 3, **kwargs})
    StageSchedule(1e-3, 1e-5, 2, 3, swa=False, swa_start_cycle=4)   # no SWA: not checked
    model = tiny_model()
    ds = tiny_ds(*tiny_problem(n=32))
    with pytest.raises(TypeError, match="unexpected keyword argument.*'n_cycle'"):
        train_stage(model, ds, None, pre, n_cycle=2)
    with pytest.raises(TypeError, match="needs a StageSchedule .*epochs_per_cycle, n_cycles"):
        train_stage(model, ds, None, lr_max=1e-3, lr_min=1e-5)
    with pytest.raises(TypeError, match="schedule must be a StageSchedule; received dict"):
        train_stage(model, ds, None, {"lr_max": 1e-3})


def test_train_stage_deep_remap_learns_with_swa_and_logs(tmp_path):
    import remap
    from remap.labels import LabelEncoder
    from remap.nn.model import NetworkConfig, build_model

    heads = [remap.get_head("teff")]
    rng = np.random.default_rng(0)
    n, npix = 320, 128
    teff = rng.uniform(3200, 6800, n)
    x = np.linspace(0, 1, npix)
    centre = 0.1 + 0.8 * (teff - 3000) / 4000           # line position encodes T_eff
    flux = 1 - 0.5 * np.exp(-0.5 * ((x[None] - centre[:, None]) / 0.02) ** 2)
    flux = (flux + rng.normal(0, 0.02, flux.shape)).astype("float32")
    targets = LabelEncoder(heads, ["teff"])(teff[:, None], np.full((n, 1), 150.0))
    train = tf.data.Dataset.from_tensor_slices(
        (flux[:256], {"teff": targets["teff"][:256]})).shuffle(256, seed=2).batch(32)
    val = tf.data.Dataset.from_tensor_slices(
        (flux[256:], {"teff": targets["teff"][256:]})).batch(64)
    keras.utils.set_random_seed(0)
    cfg = NetworkConfig(stem_filters=8, stem_kernel=5, stem_strides=2, stem_pool=2,
                        modules=((8, 2), (16, 2)), kernel_size=3, embedding_size=8,
                        dense_units=32, dropout=0.0, head_dropout=0.0)
    model = build_model(cfg, heads, npix)      # compiled by train_stage (heads=...)
    snapshots = []
    snap = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(
        [v.numpy().copy() for v in model.trainable_weights]) if e in (5, 8) else None)
    schedule = StageSchedule(1e-2, 1e-4, epochs_per_cycle=3, n_cycles=3, steps_per_epoch=8,
                             swa_start_cycle=2)
    hist = train_stage(model, train, val, schedule, checkpoint_dir=tmp_path / "ckpt",
                       log_dir=tmp_path / "logs", verbose=0, callbacks=[snap], heads=heads,
                       compile_options={"triplet_weight": 1e-3})
    assert isinstance(hist, TrainHistory)
    assert hist["epoch"] == list(range(9)) and len(hist["val_teff_loss"]) == 9
    # it learns: the focal loss of the held-out stars falls by more than half
    assert hist["val_teff_loss"][-1] < 0.5 * hist["val_teff_loss"][0]
    assert hist.swa_cycles == [6, 9] and hist.swa_applied and hist.resumed_from == 0
    for v, *snaps in zip(model.trainable_weights, *snapshots):
        np.testing.assert_allclose(v.numpy(), np.mean(snaps, axis=0), rtol=1e-5, atol=1e-6)
    # the averaged model (batch-norm statistics re-estimated) has learnt as well
    assert hist.final["teff_loss"] < 0.6 * hist["val_teff_loss"][0]
    np.testing.assert_allclose(hist["lr"][2::3], CosineRestarts(1e-2, 1e-4, 24, 3).value(23),
                               rtol=1e-6)
    lines = (tmp_path / "logs" / "history.csv").read_text().splitlines()
    assert len(lines) == 10 and lines[0].startswith("epoch,") and "val_loss" in lines[0]
    kept = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert kept == ["epoch_0008", "epoch_0009"]
    # the run is complete: calling again restores it and re-applies SWA without training
    # (the keyword form of the schedule writes and reads the same checkpoint settings)
    again = train_stage(model, train, val, lr_max=1e-2, lr_min=1e-4, epochs_per_cycle=3,
                        n_cycles=3, steps_per_epoch=8, checkpoint_dir=tmp_path / "ckpt",
                        verbose=0, swa_start_cycle=2)
    assert again.resumed_from == 9 and again.swa_applied and again["epoch"] == list(range(9))
    # (the batch-norm re-estimation sees other batches of the reshuffled data: not bitwise)
    assert again.final["teff_loss"] == pytest.approx(hist.final["teff_loss"], rel=1e-3)
    with pytest.raises(CheckpointError, match="lr_max: checkpoint 0.01 vs now 0.02"):
        train_stage(model, train, val, schedule, lr_max=2e-2, checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="no checkpoint of epoch 4"):
        train_stage(model, train, val, lr_max=1e-2, lr_min=1e-4, epochs_per_cycle=3,
                    n_cycles=3, steps_per_epoch=8, checkpoint_dir=tmp_path / "ckpt",
                    initial_epoch=4, swa_start_cycle=2)


def test_train_stage_without_swa_keeps_last_weights():
    flux, y = tiny_problem(n=128)
    model = tiny_model()
    last = []
    keep = keras.callbacks.LambdaCallback(
        on_train_end=lambda logs: last.append([v.numpy().copy() for v in model.weights]))
    hist = train_stage(model, tiny_ds(flux, y), tiny_ds(flux[:64], y[:64]), lr_max=1e-2,
                       lr_min=1e-4, epochs_per_cycle=2, n_cycles=2, steps_per_epoch=None,
                       swa=False, verbose=0, callbacks=[keep])
    assert not hist.swa_applied and hist.swa_cycles == []
    assert len(hist["loss"]) == 4 and hist["loss"][-1] < hist["loss"][0]
    assert hist.final["loss"] == hist["val_loss"][-1]
    for v, w in zip(model.weights, last[0]):
        np.testing.assert_array_equal(v.numpy(), w)
    with pytest.raises(ValueError, match="initial_epoch=2 needs checkpoint_dir"):
        train_stage(model, tiny_ds(flux, y), None, lr_max=1e-2, lr_min=1e-4,
                    epochs_per_cycle=2, n_cycles=2, steps_per_epoch=4, initial_epoch=2)
    with pytest.raises(ValueError, match="swa_start_cycle=3"):
        train_stage(model, tiny_ds(flux, y), None, lr_max=1e-2, lr_min=1e-4,
                    epochs_per_cycle=2, n_cycles=2, steps_per_epoch=4, swa_start_cycle=3)
    fresh = keras.Model(model.inputs, model.outputs)
    with pytest.raises(ValueError, match="is not compiled"):
        train_stage(fresh, tiny_ds(flux, y), None, lr_max=1e-2, lr_min=1e-4,
                    epochs_per_cycle=2, n_cycles=2, steps_per_epoch=4)


# --------------------------------------------------------------------------- subprocesses

TRAIN_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from problem import tiny_problem, tiny_model, tiny_ds
    from remap.train.loop import train_stage

    def run(ckpt, out, callbacks=()):
        flux, y = tiny_problem(n=128)
        model = tiny_model()
        hist = train_stage(model, tiny_ds(flux, y), tiny_ds(flux[:32], y[:32]), lr_max=1e-2,
                           lr_min=1e-4, epochs_per_cycle=2, n_cycles=3, steps_per_epoch=3,
                           checkpoint_dir=ckpt, verbose=0, seed=0, callbacks=list(callbacks),
                           save_model_checkpoints=False)
        np.savez(out, *[v.numpy() for v in model.variables])
        return {"resumed_from": hist.resumed_from, "swa": hist.swa_cycles,
                "loss": hist["loss"]}

    if sys.argv[1] == "victim":     # slowed down so that it is killed mid-run
        run(sys.argv[2], sys.argv[3], [keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs: time.sleep(0.3))])
    else:                           # resume the killed run, then an uninterrupted one
        resumed = run(sys.argv[2], sys.argv[3])
        reference = run(sys.argv[4], sys.argv[5])
        print(json.dumps({"resumed": resumed, "reference": reference}))
""")


def _problem_module():
    import inspect

    src = ["import numpy as np, keras, tensorflow as tf"]
    src += [inspect.getsource(f) for f in (tiny_problem, tiny_model, tiny_ds)]
    return "\n\n".join(src)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    (tmp_path / "problem.py").write_text(_problem_module())
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
    ckpt = tmp_path / "ckpt"
    with open(tmp_path / "victim.log", "w") as log:
        victim = subprocess.Popen([sys.executable, str(script), "victim", ckpt,
                                   tmp_path / "x.npz"], env=env, stdout=log, stderr=log)
        deadline = time.time() + 150
        while not (ckpt / "epoch_0002" / "meta.json").exists():
            if victim.poll() is not None or time.time() > deadline:
                victim.kill()
                victim.wait()
                pytest.fail("no checkpoint of epoch 2 appeared:\n"
                            + (tmp_path / "victim.log").read_text()[-3000:])
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    done, _ = latest(ckpt)
    assert 2 <= done < 6                                     # really interrupted
    assert not (tmp_path / "x.npz").exists()
    res = run_script(script, "resume", ckpt, tmp_path / "resumed.npz", tmp_path / "ref_ckpt",
                     tmp_path / "reference.npz", timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    resumed, reference = info["resumed"], info["reference"]
    assert resumed["resumed_from"] == done and reference["resumed_from"] == 0
    assert resumed["swa"] == reference["swa"] == [2, 4, 6]
    assert resumed["loss"] == reference["loss"]              # the history is complete
    with np.load(tmp_path / "reference.npz") as a, np.load(tmp_path / "resumed.npz") as b:
        assert len(a.files) == len(b.files) > 5
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from remap.train.loop import configure_logical_cpus, get_strategy, train_stage
    configure_logical_cpus(2)
    import numpy as np, tensorflow as tf
    from problem import tiny_problem, tiny_model, tiny_ds
    strategy = get_strategy(2)
    assert isinstance(strategy, tf.distribute.MirroredStrategy), strategy
    with strategy.scope():
        model = tiny_model()
    flux, y = tiny_problem(n=128)
    hist = train_stage(model, tiny_ds(flux, y), tiny_ds(flux[:64], y[:64]), lr_max=1e-2,
                       lr_min=1e-4, epochs_per_cycle=2, n_cycles=2, steps_per_epoch=4,
                       checkpoint_dir=sys.argv[1], verbose=0)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": hist["loss"],
                      "final": hist.final, "swa": hist.swa_applied,
                      "devices": list(strategy.extended.worker_devices)}))
""")


def test_train_stage_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    (tmp_path / "problem.py").write_text(_problem_module())
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    res = run_script(script, tmp_path / "ckpt")
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["replicas"] == 2 and len(info["devices"]) == 2
    assert all(math.isfinite(v) for v in info["loss"]) and len(info["loss"]) == 4
    assert info["swa"] and math.isfinite(info["final"]["loss"])
    assert latest(tmp_path / "ckpt")[0] == 4


def test_get_strategy_default_and_bad_devices():
    if len(tf.config.list_logical_devices("GPU")) < 2:
        assert get_strategy() is tf.distribute.get_strategy()
    one = get_strategy(["/cpu:0"])
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    with pytest.raises(ValueError, match="'/gpu:7' is not visible"):
        get_strategy(["/gpu:7"])
    with pytest.raises(ValueError, match="asks for more (CPU|GPU) devices"):
        get_strategy(5 + len(tf.config.list_logical_devices("GPU")))
