"""Fine-tuning: layer-wise learning rates, the per-variable Adam, freezing, `finetune`."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from remap.heads import LOGG, TEFF  # noqa: E402
from remap.labels import LabelEncoder  # noqa: E402
from remap.nn.model import NetworkConfig, build_model, compile_model, expand_targets  # noqa: E402
from remap.train.finetune import (LayerwiseAdam, freeze_parts, finetune,  # noqa: E402
                                  group_factor, layerwise_learning_rates, layerwise_multipliers,
                                  parameter_groups)
from remap.train.loop import StageSchedule  # noqa: E402

NPIX = 256
HEADS = (TEFF, LOGG)
CFG = NetworkConfig(stem_filters=4, stem_kernel=5, stem_strides=2, stem_pool=2,
                    modules=((8, 2), (8, 1), (16, 2)), kernel_size=3, dropout=0.0,
                    embedding_size=4, dense_units=8, head_dropout=0.0)


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    return build_model(CFG, HEADS, NPIX, name="tiny")


def toy_batch(n=16, seed=1):
    """Spectra with one absorption line whose depth follows T_eff, and their PMF targets."""
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4000, 6500, n)
    logg = rng.uniform(2.0, 5.0, n)
    x = np.arange(NPIX)
    depth = (teff - 3500) / 4000
    flux = 1 - depth[:, None] * np.exp(-0.5 * ((x - 100) / 3.0) ** 2)
    flux = flux - 0.2 * (logg[:, None] / 5) * np.exp(-0.5 * ((x - 180) / 3.0) ** 2)
    flux += rng.normal(0, 0.01, flux.shape)
    enc = LabelEncoder(HEADS, ["teff", "logg"])
    return flux.astype(np.float32), expand_targets(enc(np.column_stack([teff, logg])))


def gradients(model, x, y):
    compile_model(model, HEADS, optimizer="adam")
    with tf.GradientTape() as tape:
        pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=pred)
    return tape.gradient(loss, model.trainable_weights)


def test_group_factors_follow_the_paper():
    # heads 1/10, last module 1/20, the one before 1/30, ...; stem like the deepest module
    assert group_factor(0, 5) == pytest.approx(1 / 10)
    assert group_factor(1, 5) == pytest.approx(1 / 20)
    assert group_factor(2, 5) == pytest.approx(1 / 30)
    assert group_factor(3, 5) == pytest.approx(1 / 40)
    assert group_factor(4, 5) == pytest.approx(1 / 40)
    with pytest.raises(ValueError, match="position must lie in"):
        group_factor(5, 5)


def test_layerwise_learning_rates_per_variable():
    model = tiny_model()
    groups = parameter_groups(model)
    assert [g[0] for g in groups] == ["heads", "module_2", "module_1", "module_0", "stem"]
    rates = layerwise_learning_rates(model, 1e-3, 1e-5)
    assert set(rates) == {v.path for v in model.trainable_weights}
    assert rates["teff_logits/kernel"] == pytest.approx((1e-4, 1e-6))
    assert rates["logg_temperature/raw_temperature"] == pytest.approx((1e-4, 1e-6))
    assert rates["module_2/conv1/kernel"] == pytest.approx((1e-3 / 20, 1e-5 / 20))
    assert rates["module_1/conv1/kernel"] == pytest.approx((1e-3 / 30, 1e-5 / 30))
    assert rates["module_0/conv1/kernel"] == pytest.approx((1e-3 / 40, 1e-5 / 40))
    assert rates["stem_conv/kernel"] == pytest.approx((1e-3 / 40, 1e-5 / 40))
    with pytest.raises(ValueError, match="lr_min must not exceed lr_max"):
        layerwise_learning_rates(model, 1e-5, 1e-3)
    with pytest.raises(ValueError, match="lr_max must be a finite number > 0"):
        layerwise_learning_rates(model, -1.0, 1e-5)


def test_update_sizes_follow_the_multipliers():
    """One step of LayerwiseAdam moves each variable by multiplier × a plain Adam step.

    Adam's first step is lr · g / (|g| + ε') ≈ lr per weight, so with lr = 1e-2 a
    head weight moves by ≈ 1e-3, the last module by ≈ 5e-4, the one before by
    ≈ 3.3e-4 and the deepest module and the stem by 2.5e-4.
    """
    lr = 1e-2
    x, y = toy_batch()
    model = tiny_model()
    grads = gradients(model, x, y)
    start = [v.numpy().copy() for v in model.trainable_weights]
    mult = layerwise_multipliers(model)

    plain = keras.optimizers.Adam(learning_rate=lr)
    plain.apply_gradients(zip(grads, model.trainable_weights))
    step_plain = [v.numpy() - w for v, w in zip(model.trainable_weights, start)]
    for v, w in zip(model.trainable_weights, start):
        v.assign(w)
    layerwise = LayerwiseAdam(mult, learning_rate=lr)
    layerwise.apply_gradients(zip(grads, model.trainable_weights))
    step_lw = [v.numpy() - w for v, w in zip(model.trainable_weights, start)]

    sizes = {}
    for var, g, dp, dl in zip(model.trainable_weights, grads, step_plain, step_lw):
        moved = np.abs(dp) > 0
        assert moved.any(), var.path
        np.testing.assert_allclose(dl[moved] / dp[moved], mult[var.path], rtol=1e-3,
                                   err_msg=var.path)
        # Keras' first Adam step is lr·|g| / (|g| + ε/√(1-β2)) ≈ lr for |g| >> 3e-6
        big = np.abs(g.numpy()) > 1e-3
        if not big.any():
            continue
        np.testing.assert_allclose(np.abs(dp[big]), lr, rtol=0.01, err_msg=var.path)
        sizes.setdefault(var.path.split("/")[0], []).append(np.median(np.abs(dl[big])))
    assert np.median(sizes["teff_logits"]) == pytest.approx(lr / 10, rel=0.05)
    assert np.median(sizes["module_2"]) == pytest.approx(lr / 20, rel=0.05)
    assert np.median(sizes["module_1"]) == pytest.approx(lr / 30, rel=0.05)
    assert np.median(sizes["module_0"]) == pytest.approx(lr / 40, rel=0.05)
    assert np.median(sizes["stem_conv"]) == pytest.approx(lr / 40, rel=0.05)


def test_layerwise_adam_serializes_and_checks_its_multipliers(tmp_path):
    model = tiny_model()
    mult = layerwise_multipliers(model)
    opt = LayerwiseAdam(mult, learning_rate=3e-4, beta_1=0.8)
    clone = LayerwiseAdam.from_config(opt.get_config())
    assert clone.multipliers == mult and clone.beta_1 == pytest.approx(0.8)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(restored, LayerwiseAdam) and restored.multipliers == mult
    # compiled into a model (its state built), it survives a .keras round trip
    compile_model(model, HEADS, optimizer=opt)
    opt.build(model.trainable_weights)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, LayerwiseAdam)
    assert loaded.optimizer.multipliers == mult
    assert len(loaded.optimizer.variables) == len(opt.variables)
    # a variable without a multiplier is an error naming it
    partial = {k: v for k, v in mult.items() if not k.startswith("stem_conv")}
    with pytest.raises(ValueError, match="no learning-rate multiplier for stem_conv/kernel"):
        LayerwiseAdam(partial).build(model.trainable_weights)
    with pytest.raises(ValueError, match="multiplier of 'a' must be a finite number >= 0"):
        LayerwiseAdam({"a": -1.0})


def test_freeze_parts_leaves_frozen_weights_and_bn_statistics_unchanged():
    x, y = toy_batch(32)
    model = tiny_model()
    frozen = freeze_parts(model, ["stem", "module_0"])
    assert frozen == ["flux", "stem_reshape", "stem_conv", "stem_bn", "stem_act", "stem_pool",
                      "module_0"]
    mult = layerwise_multipliers(model)
    assert not any(k.startswith(("stem", "module_0")) for k in mult)
    before = {v.path: v.numpy().copy() for v in model.weights}
    opt = LayerwiseAdam(mult, learning_rate=1e-2)
    for _ in range(2):   # training-mode steps: trainable BN layers update their statistics
        grads = gradients(model, x, y)
        opt.apply_gradients(zip(grads, model.trainable_weights))
    after = {v.path: v.numpy() for v in model.weights}
    for path in before:
        changed = not np.array_equal(before[path], after[path])
        if path.startswith(("stem", "module_0")):
            # kernels, gamma/beta and the BN moving statistics all stay put
            assert not changed, path
    assert not np.array_equal(before["module_1/bn1/moving_mean"], after["module_1/bn1/moving_mean"])
    assert not np.array_equal(before["teff_logits/kernel"], after["teff_logits/kernel"])
    with pytest.raises(ValueError, match="cannot freeze 'module_7'"):
        freeze_parts(tiny_model(), ["module_7"])


def test_finetune_trains_with_layerwise_rates_and_keeps_frozen_parts(tmp_path):
    x, y = toy_batch(96, seed=3)
    xv, yv = toy_batch(32, seed=4)
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, seed=0).batch(16)
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(32)
    model = tiny_model(seed=5)
    compile_model(model, HEADS, optimizer="adam")
    before_loss = model.evaluate(val, verbose=0, return_dict=True)["loss"]
    before = {v.path: v.numpy().copy() for v in model.weights}
    result = finetune(model, train, val, lr_max=0.1, lr_min=0.001, freeze=("stem",),
                      epochs_per_cycle=6, n_cycles=1, swa=True, seed=0,
                      checkpoint_dir=tmp_path / "ckpt", verbose=0)
    assert result["frozen"][:3] == ["flux", "stem_reshape", "stem_conv"]
    assert result["multipliers"]["teff_logits/kernel"] == pytest.approx(0.1)
    assert result["multipliers"]["module_2/conv1/kernel"] == pytest.approx(0.05)
    assert not any(k.startswith("stem") for k in result["multipliers"])
    assert isinstance(model.optimizer, LayerwiseAdam)
    after = {v.path: v.numpy() for v in model.weights}
    for path in before:
        if path.startswith("stem"):   # kernel, BN gamma/beta and moving statistics
            np.testing.assert_array_equal(before[path], after[path], err_msg=path)
    assert not np.array_equal(before["module_0/conv1/kernel"], after["module_0/conv1/kernel"])
    after_loss = model.evaluate(val, verbose=0, return_dict=True)["loss"]
    # it learns: the training loss falls by > 8 % and the validation loss falls too
    assert len(result["loss"]) == 6
    assert result["loss"][-1] < 0.92 * result["loss"][0], result["loss"]
    assert after_loss < before_loss, (before_loss, after_loss)


def test_finetune_takes_a_stage_schedule_or_its_keywords():
    model = tiny_model(seed=5)
    compile_model(model, HEADS, optimizer="adam")
    x, y = toy_batch(16, seed=3)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    with pytest.raises(TypeError, match=r"needs a StageSchedule \(or the keywords lr_max, lr_min"):
        finetune(model, train, None, epochs_per_cycle=2)
    with pytest.raises(ValueError, match="lr_min must not exceed lr_max"):
        finetune(model, train, None, StageSchedule(1e-5, 1e-3, 1, 1))
    with pytest.raises(ValueError, match="lr_max must be a finite number > 0"):
        finetune(model, train, None, lr_max=-1.0, lr_min=-2.0)
