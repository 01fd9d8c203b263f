"""The deep-REMAP network: layers, losses, model builder, saving, and a tiny net that learns."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import astropy.units as u  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from remap.datasets import Dataset, DatasetWriter  # noqa: E402
from remap.heads import FEH, LOGG, TEFF, HeadSpec  # noqa: E402
from remap.labels import LabelBins, LabelEncoder  # noqa: E402
from remap.nn import (L2Normalize, MaskedFocalLoss, NetworkConfig, ResidualModule,  # noqa: E402
                      TemperatureScaling, TripletLoss, build_model, compile_model,
                      expand_targets, head_names, module_layers)

HEADS = [TEFF, LOGG, FEH]
#: A head as a third-party plugin would declare it.
ALPHA = HeadSpec("alpha_fe", "[alpha/Fe]", u.dex, -0.2, 0.6, 0.1, 0.04)
TINY = NetworkConfig(stem_filters=8, stem_kernel=7, stem_strides=2, stem_pool=2,
                     modules=((16, 2), (32, 2)), kernel_size=5, dropout=0.0, embedding_size=8,
                     dense_units=32, head_dropout=0.0)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _roundtrip_config(obj):
    cfg = obj.get_config()
    json.dumps(cfg)  # plain JSON values only
    clone = type(obj).from_config(cfg)
    assert clone.get_config() == cfg
    return clone


# --------------------------------------------------------------------------- layers

def test_temperature_scaling_divides_and_stays_positive():
    layer = TemperatureScaling(initial=2.0, name="t")
    logits = np.array([[1.0, -2.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(_np(layer(logits)), logits / 2.0, rtol=1e-6)
    assert float(_np(layer.temperature)) == pytest.approx(2.0)
    # whatever the optimizer does to the weight, T stays above its floor
    layer.raw_temperature.assign(-1e4)
    assert float(_np(layer.temperature)) == pytest.approx(1e-3)
    assert np.all(np.isfinite(_np(layer(logits))))
    clone = _roundtrip_config(TemperatureScaling(initial=1.5, minimum=0.01, name="u"))
    assert (clone.initial, clone.minimum, clone.name) == (1.5, 0.01, "u")
    with pytest.raises(ValueError, match=r"initial must be .* received initial=0.0"):
        TemperatureScaling(initial=0.0)
    with pytest.raises(ValueError, match="minimum=-1"):
        TemperatureScaling(minimum=-1)


def test_temperature_is_learnable():
    layer = TemperatureScaling()
    x = tf.constant([[3.0, 0.0, -3.0]])
    target = tf.constant([[0.6, 0.3, 0.1]])
    opt = keras.optimizers.Adam(0.05)
    for _ in range(100):
        with tf.GradientTape() as tape:
            loss = keras.losses.categorical_crossentropy(target, tf.nn.softmax(layer(x)))
        opt.apply_gradients(zip(tape.gradient(loss, layer.trainable_weights),
                                layer.trainable_weights))
    # over-confident logits are softened: the fitted temperature grows above 1
    assert float(_np(layer.temperature)) > 2.0


def test_l2_normalize():
    layer = L2Normalize(name="n")
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], dtype=np.float32)
    y = _np(layer(x))
    np.testing.assert_allclose(y[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(y[1], [0.0, 0.0])
    np.testing.assert_allclose(np.linalg.norm(y[2]), 1.0, rtol=1e-5)
    assert _roundtrip_config(L2Normalize(axis=1, epsilon=1e-8)).axis == 1
    with pytest.raises(ValueError, match="axis=1.5"):
        L2Normalize(axis=1.5)


def test_residual_module_identity_and_projection():
    x = np.random.default_rng(0).normal(size=(2, 32, 8)).astype(np.float32)
    ident = ResidualModule(8, kernel_size=3, name="m")
    assert _np(ident(x)).shape == (2, 32, 8) and not ident.is_projection
    assert len(ident.weights) == 2 + 2 * 4  # two kernels and two batch norms, no projection
    proj = ResidualModule(16, kernel_size=3, strides=2, name="p")
    assert _np(proj(x)).shape == (2, 16, 16) and proj.is_projection
    widen = ResidualModule(16, name="w")
    widen(x)
    assert widen.is_projection
    forced = ResidualModule(8, projection=True, name="f")
    forced(x)
    assert forced.is_projection
    with pytest.raises(ValueError, match="need a projection, but projection=False"):
        ResidualModule(16, strides=2, projection=False, name="x")(x)
    clone = _roundtrip_config(ResidualModule(16, kernel_size=5, strides=2, dropout=0.1,
                                             seed=3, momentum=0.9, name="c"))
    assert (clone.filters, clone.kernel_size, clone.strides, clone.dropout, clone.seed,
            clone.momentum) == (16, 5, 2, 0.1, 3, 0.9)
    for kwargs, match in [({"filters": 0}, "filters=0"), ({"filters": 4, "strides": 0},
                                                          "strides=0"),
                          ({"filters": 4, "dropout": 1.0}, "dropout=1.0"),
                          ({"filters": 4, "projection": "yes"}, "projection='yes'")]:
        with pytest.raises(ValueError, match=match):
            ResidualModule(**kwargs)


# --------------------------------------------------------------------------- losses

def test_masked_focal_loss_matches_keras_and_skips_nan_rows():
    bins = LabelBins(TEFF)
    y_true = bins.encode([4000.0, 5000.0, 6000.0, 5500.0], [100.0, 60.0, 200.0, 80.0])
    y_pred = tf.nn.softmax(np.random.default_rng(1).normal(size=(4, 50)).astype(np.float32))
    loss = MaskedFocalLoss()
    reference = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0)
    assert float(loss(y_true, y_pred)) == pytest.approx(float(reference(y_true, y_pred)),
                                                        rel=1e-6)
    # NaN rows are left out of the mean, not counted as zeros
    masked = y_true.copy()
    masked[[1, 3]] = np.nan
    expected = float(reference(y_true[[0, 2]], tf.gather(y_pred, [0, 2])))
    assert float(loss(masked, y_pred)) == pytest.approx(expected, rel=1e-6)
    assert float(loss(np.full_like(y_true, np.nan), y_pred)) == 0.0
    per_row = _np(MaskedFocalLoss(reduction="none")(masked, y_pred))
    assert per_row.shape == (4,) and per_row[1] == 0.0 and per_row[3] == 0.0 and per_row[0] > 0
    weights = np.array([2.0, 1.0, 0.0, 1.0], dtype=np.float32)
    weighted = float(loss(masked, y_pred, sample_weight=weights))
    assert weighted == pytest.approx(2.0 * per_row[0] / 2, rel=1e-6)
    # soft labels: a prediction equal to the label beats a one-hot guess at the peak
    onehot = np.eye(50, dtype=np.float32)[np.argmax(y_true, axis=1)]
    assert float(loss(y_true, y_true)) < float(loss(y_true, onehot * 0.99 + 0.0002))
    clone = _roundtrip_config(MaskedFocalLoss(gamma=1.0, alpha=0.5, name="f"))
    assert (clone.gamma, clone.alpha, clone.name) == (1.0, 0.5, "f")
    with pytest.raises(ValueError, match="gamma=-1"):
        MaskedFocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="alpha=0"):
        MaskedFocalLoss(alpha=0)


def _reference_batch_hard(classes, emb, margin):
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    out = []
    for i, c in enumerate(classes):
        pos = [j for j in range(len(classes)) if classes[j] == c and j != i]
        neg = [j for j in range(len(classes)) if classes[j] != c]
        if pos and neg:
            out.append(max(0.0, d[i, pos].max() - d[i, neg].min() + margin))
    return np.mean(out) if out else 0.0


def test_triplet_loss_batch_hard():
    bins = LabelBins(TEFF)
    values = np.array([4000.0, 4010.0, 5000.0, 5020.0, 6000.0, 6030.0])
    y = bins.encode(values, 30.0)
    classes = np.argmax(y, axis=1)
    loss = TripletLoss(margin=0.2, n_bins=50)
    # clusters far apart on the unit sphere: every triplet satisfied, loss 0
    centres = np.eye(4, dtype=np.float32)[:3]
    separated = np.repeat(centres, 2, axis=0) + 0.01 * np.random.default_rng(0).normal(
        size=(6, 4)).astype(np.float32)
    separated /= np.linalg.norm(separated, axis=1, keepdims=True)
    assert float(loss(y, separated)) == 0.0
    # mixed-up embeddings: positive, and equal to a direct numpy computation
    mixed = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    value = float(loss(y, mixed))
    assert value > 0
    assert value == pytest.approx(_reference_batch_hard(classes, mixed, 0.2), rel=1e-5)
    # batch-all is positive too and no larger than the hardest triplets
    all_value = float(TripletLoss(mining="batch_all")(y, mixed))
    assert 0 < all_value <= value + 1e-6


def test_triplet_loss_without_valid_triplets_is_zero_and_finite():
    bins = LabelBins(TEFF)
    emb = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    loss = TripletLoss()
    singletons = bins.encode([3500.0, 4500.0, 5500.0, 6500.0], 20.0)  # no positives
    assert float(loss(singletons, emb)) == 0.0
    one_class = bins.encode([5000.0] * 4, 20.0)  # no negatives
    assert float(loss(one_class, emb)) == 0.0
    assert float(loss(np.full((4, 50), np.nan, dtype=np.float32), emb)) == 0.0
    # a NaN row is no anchor, positive or negative
    y = bins.encode([5000.0, 5000.0, 6000.0, np.nan], 20.0)
    expected = _reference_batch_hard([0, 0, 1], emb[:3], 0.2)
    assert float(loss(y, emb)) == pytest.approx(expected, rel=1e-5)
    # identical embeddings (zero distances): finite gradients
    same = tf.Variable(np.tile(emb[:1], (4, 1)))
    y2 = bins.encode([5000.0, 5000.0, 6000.0, 6000.0], 20.0)
    with tf.GradientTape() as tape:
        value = loss(y2, same)
    grad = _np(tape.gradient(value, same))
    assert float(value) == pytest.approx(0.2) and np.all(np.isfinite(grad))
    clone = _roundtrip_config(TripletLoss(margin=0.3, n_bins=50, mining="batch_all", name="t"))
    assert (clone.margin, clone.n_bins, clone.mining) == (0.3, 50, "batch_all")
    with pytest.raises(ValueError, match="mining='semi'"):
        TripletLoss(mining="semi")
    with pytest.raises(ValueError, match="margin=0"):
        TripletLoss(margin=0)
    with pytest.raises(ValueError, match="n_bins=50 columns"):
        TripletLoss(n_bins=50)(np.ones((4, 45), np.float32), emb)


# --------------------------------------------------------------------------- config

def test_network_config_validation_and_dicts():
    cfg = NetworkConfig.from_dict({"modules": [[8, 2], [16, 1]], "blocks_per_stage": 2})
    assert cfg.modules == ((8, 2), (16, 1))
    assert cfg.expanded_modules() == [(8, 2), (8, 1), (16, 1), (16, 1)]
    d = cfg.to_dict()
    assert NetworkConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert NetworkConfig.from_dict(NetworkConfig().to_dict()) == NetworkConfig()
    for bad, match in [({"stem_filters": 0}, "stem_filters=0"),
                       ({"kernel_size": 2.5}, "kernel_size=2.5"),
                       ({"dropout": 1.0}, "dropout=1.0"),
                       ({"head_dropout": -0.1}, "head_dropout=-0.1"),
                       ({"modules": []}, "at least one"),
                       ({"modules": [[8, 2, 1]]}, r"modules\[0\]"),
                       ({"modules": [[8, 0]]}, r"modules\[0\]"),
                       ({"modules": "abc"}, "modules='abc'"),
                       ({"embedding_size": True}, "embedding_size=True")]:
        with pytest.raises(ValueError, match=match):
            NetworkConfig.from_dict(bad)
    with pytest.raises(ValueError, match=r"unknown network config keys \['filterz'\]"):
        NetworkConfig.from_dict({"filterz": 3})


# --------------------------------------------------------------------------- model

def test_build_model_structure_plugin_head_and_module_layers():
    keras.utils.set_random_seed(0)
    cfg = NetworkConfig.from_dict({**TINY.to_dict(), "blocks_per_stage": 2})
    model = build_model(cfg, [TEFF, LOGG, FEH, ALPHA], 256, name="tiny")
    assert model.name == "tiny" and model.input_shape == (None, 256)
    assert set(model.output_names) == {"teff", "logg", "feh", "alpha_fe", "teff_embedding",
                                       "logg_embedding", "feh_embedding", "alpha_fe_embedding"}
    assert sorted(head_names(model)) == ["alpha_fe", "feh", "logg", "teff"]
    out = model(np.ones((3, 256), np.float32))
    assert _np(out["alpha_fe"]).shape == (3, ALPHA.n_bins) == (3, 8)
    np.testing.assert_allclose(_np(out["teff"]).sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(_np(out["logg_embedding"]), axis=1), 1.0,
                               rtol=1e-5)
    # (batch, npix, 1) as streamed by Dataset.to_tf is accepted too
    out3 = model(np.ones((3, 256, 1), np.float32))
    np.testing.assert_allclose(_np(out3["teff"]), _np(out["teff"]), rtol=1e-6)

    groups = module_layers(model)
    assert len(groups) == 1 + 4 + 1  # heads, four modules (two identity), stem
    head_group = {layer.name for layer in groups[0]}
    assert {"alpha_fe_logits", "alpha_fe_temperature", "alpha_fe", "teff_embedding",
            "teff_embedding_dense", "feh_dense"} <= head_group
    assert all(any(n == h or n.startswith(h + "_") for h in head_names(model))
               for n in head_group)
    assert [g[0].name for g in groups[1:5]] == ["module_3", "module_2", "module_1", "module_0"]
    assert [m.is_projection for m in (groups[4][0], groups[3][0], groups[2][0],
                                      groups[1][0])] == [True, False, True, False]
    assert {layer.name for layer in groups[-1]} >= {"stem_conv", "stem_bn", "stem_pool"}
    grouped = [layer for g in groups for layer in g]
    assert len(grouped) == len(model.layers) == len({id(x) for x in grouped})
    # every trainable variable belongs to exactly one group
    n_vars = sum(len(layer.trainable_weights) for layer in grouped)
    assert n_vars == len(model.trainable_weights)


def test_build_model_errors_and_determinism():
    with pytest.raises(ValueError, match="npix=8 is shorter"):
        build_model(TINY, HEADS, 8)
    with pytest.raises(ValueError, match="npix must be an integer"):
        build_model(TINY, HEADS, 256.0)
    with pytest.raises(ValueError, match="'stem_x' clashes"):
        build_model(TINY, [HeadSpec("stem_x", "s", u.K, 0, 1, 0.5, 0.1)], 256)
    with pytest.raises(ValueError, match="duplicate head"):
        build_model(TINY, [TEFF, TEFF], 256)
    with pytest.raises(ValueError, match="unknown network config keys"):
        build_model({"layers": 3}, HEADS, 256)
    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        weights.append([_np(w) for w in build_model(TINY, HEADS, 256).weights])
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def test_default_config_is_fast_shaped():
    model = build_model(None, HEADS, 4301)
    cfg = NetworkConfig()
    # the stem reduces a 4,301-pixel beam 8-fold before the first residual module
    assert model.get_layer("stem_pool").output.shape[1] == int(np.ceil(4301 / 8))
    assert cfg.downsampling() == 64
    assert model.count_params() < 500_000


def test_compile_save_and_load_keras_file(tmp_path):
    keras.utils.set_random_seed(1)
    heads = [TEFF, LOGG, FEH, ALPHA]
    model = build_model(TINY, heads, 256)
    compile_model(model, heads, optimizer=keras.optimizers.Adam(1e-3), triplet_weight=0.01,
                  margin=0.3, gamma=1.5)
    x = np.random.default_rng(0).normal(1.0, 0.05, (32, 256)).astype(np.float32)
    # non-default weights and batch-norm statistics, so that restoring them is checked
    model.get_layer("teff_temperature").raw_temperature.assign(0.3)
    bn = model.get_layer("module_1").bn2
    bn.moving_mean.assign(np.linspace(-1, 1, 32))
    bn.moving_variance.assign(np.linspace(0.5, 2, 32))
    # as after training: keras cannot reload the state of an optimizer that was never built
    model.optimizer.build(model.trainable_variables)
    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    assert set(before) == set(after)
    for key in before:
        np.testing.assert_allclose(after[key], before[key], rtol=1e-5, atol=1e-6)
    assert isinstance(loaded.get_layer("module_0"), ResidualModule)
    assert isinstance(loaded.get_layer("teff_temperature"), TemperatureScaling)
    assert isinstance(loaded.loss["teff"], MaskedFocalLoss) and loaded.loss["teff"].gamma == 1.5
    assert isinstance(loaded.loss["feh_embedding"], TripletLoss)
    assert loaded.loss["feh_embedding"].margin == 0.3
    assert loaded.loss["feh_embedding"].n_bins == 30
    loaded_plain = keras.saving.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(loaded_plain.predict(x, verbose=0)["alpha_fe"],
                               before["alpha_fe"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="exactly the heads"):
        compile_model(model, HEADS, optimizer="adam")
    with pytest.raises(ValueError, match="triplet_weight=-1"):
        compile_model(model, heads, optimizer="adam", triplet_weight=-1)


def test_expand_targets():
    t = {"teff": np.zeros((2, 50)), "logg": np.ones((2, 45))}
    out = expand_targets(t)
    assert set(out) == {"teff", "logg", "teff_embedding", "logg_embedding"}
    assert out["teff_embedding"] is t["teff"]
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((2, 4)), t)).map(
        lambda x, y: (x, expand_targets(y)))
    assert set(ds.element_spec[1]) == set(out)
    with pytest.raises(TypeError, match="dict"):
        expand_targets(np.zeros(3))


# --------------------------------------------------------------------------- learning

def _toy_spectra(n, seed, npix=256):
    """Spectra whose line depths/widths encode T_eff, log g and [Fe/H]."""
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4000, 6500, n)
    logg = rng.uniform(2.0, 5.0, n)
    feh = rng.uniform(-1.5, 0.5, n)
    x = np.arange(npix)

    def line(centre, width, depth):
        return depth[:, None] * np.exp(-0.5 * ((x[None, :] - centre) / width[:, None]) ** 2)

    flux = (1.0 - line(60, np.full(n, 3.0), 0.1 + 0.7 * (teff - 4000) / 2500)
            - line(140, 1.5 + (logg - 2.0), np.full(n, 0.5))
            - line(210, np.full(n, 2.5), 0.15 + 0.3 * (feh + 1.5)))
    flux += rng.normal(0.0, 0.01, flux.shape)
    return flux.astype(np.float32), np.column_stack([teff, logg, feh])


def _write_set(directory, n, seed):
    flux, labels = _toy_spectra(n, seed)
    grid = np.linspace(5000.0, 5255.0, 256) * u.AA
    writer = DatasetWriter(directory, survey="toy", grids={"A": grid},
                           label_names=["teff", "logg", "feh"], label_units=["K", "dex", "dex"])
    with writer.shard(0, n) as shard:
        shard.append(flux={"A": flux}, labels=labels)
    writer.finish()
    return Dataset(directory)


def test_tiny_network_learns_from_a_dataset(tmp_path):
    keras.utils.set_random_seed(0)
    train = _write_set(tmp_path / "train", 1536, seed=1)
    val = _write_set(tmp_path / "val", 384, seed=2)
    heads = HEADS + [ALPHA]  # a plugin head without labels in the set: NaN targets
    enc = LabelEncoder(heads, train.label_names)

    def stream(ds, shuffle):
        # to_tf streams from a generator (unknown length); declaring the number of
        # batches spares keras' "ran out of data" warning
        stream = ds.to_tf("A", 64, shuffle=shuffle, seed=0, label_encoder=enc)
        stream = stream.apply(tf.data.experimental.assert_cardinality(-(-len(ds) // 64)))
        return stream.map(lambda x, y: (x, expand_targets(y)))

    model = build_model(TINY, heads, 256)
    compile_model(model, heads, optimizer=keras.optimizers.Adam(3e-3))
    val_ds = stream(val, False)
    start = model.evaluate(val_ds, verbose=0, return_dict=True)
    history = model.fit(stream(train, True), validation_data=val_ds, epochs=6, verbose=0,
                        shuffle=False)
    end = history.history
    assert end["alpha_fe_loss"] == [0.0] * 6 and end["alpha_fe_embedding_loss"] == [0.0] * 6
    assert all(np.all(np.isfinite(_np(w))) for w in model.weights)
    assert end["val_loss"][-1] < 0.5 * start["loss"]
    for h in ("teff", "logg", "feh"):
        assert end[f"val_{h}_loss"][-1] < 0.5 * start[f"{h}_loss"]
    flux, _, labels, _ = val.read_arrays(np.arange(len(val)), "A")
    table = enc.decode(model.predict(flux, batch_size=128, verbose=0))
    for j, h in enumerate(("teff", "logg", "feh")):
        scatter = np.std(table[f"{h}_median"].value - labels[:, j])
        # predicting the mean would scatter by the labels' std (720 K for T_eff)
        assert scatter < 0.3 * np.std(labels[:, j]), (h, scatter)
    assert np.all(table["teff_p16"] <= table["teff_median"])
    assert np.all(table["teff_median"] <= table["teff_p84"])
