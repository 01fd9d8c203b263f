"""Tests of remap.model: saving, verifying and loading trained networks."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import zipfile  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import remap  # noqa: E402
from remap.model import artifact, safety  # noqa: E402
from remap.model import (ArtifactError, RemapModel, compute_embeddings,  # noqa: E402
                         load_model, save_model, verify_files)
from remap.labels import LabelEncoder  # noqa: E402
from remap.nn import NetworkConfig, build_model  # noqa: E402
from remap.train.callbacks import recompute_batchnorm  # noqa: E402

NPIX = 128
GRID = {"wave_min": 5000.0, "wave_max": 5012.7, "sampling": 0.1}
TINY = NetworkConfig(stem_filters=4, stem_kernel=5, stem_strides=2, stem_pool=2,
                     modules=((8, 2),), kernel_size=3, dropout=0.0, embedding_size=4,
                     dense_units=8, head_dropout=0.0)
LABEL_NAMES = ["teff", "logg", "feh"]


def _heads():
    return [remap.get_head(n) for n in remap.list_heads()]


def _toy_data(n, seed):
    """Spectra whose line depths follow the labels, so a tiny network can learn."""
    rng = np.random.default_rng(seed)
    labels = np.column_stack([rng.uniform(4000, 6500, n), rng.uniform(2.0, 5.0, n),
                              rng.uniform(-1.5, 0.5, n)])
    x = np.linspace(0, 1, NPIX)
    depth = ((labels[:, :1] - 4000) / 2500 * np.exp(-0.5 * ((x - 0.3) / 0.03) ** 2)
             + (labels[:, 1:2] - 2) / 3 * np.exp(-0.5 * ((x - 0.6) / 0.03) ** 2)
             + (labels[:, 2:3] + 1.5) / 2 * np.exp(-0.5 * ((x - 0.8) / 0.03) ** 2))
    flux = 1 - 0.5 * depth + rng.normal(0, 0.01, (n, NPIX))
    return flux.astype(np.float32), labels


def _tiny(seed, flux, labels=None):
    """A tiny network; trained on ``labels`` when given, with batch-norm statistics of ``flux``."""
    keras.utils.set_random_seed(seed)
    model = build_model(TINY, _heads(), NPIX, name=f"tiny{seed}")
    if labels is not None:
        # plain cross-entropy on the PMF outputs (the artifact does not care how a network
        # was trained); the embedding sub-heads keep their random projection
        for layer in model.layers:
            if layer.name.endswith("_embedding_dense"):
                layer.trainable = False
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss={name: ("categorical_crossentropy" if name in LABEL_NAMES else None)
                            for name in model.output_names})
        targets = LabelEncoder(_heads(), LABEL_NAMES)(labels)
        model.fit(flux, targets, batch_size=32, epochs=8, verbose=0, shuffle=False)
    recompute_batchnorm(model, [flux[i:i + 64] for i in range(0, len(flux), 64)])
    return model


def _manifest(**extra):
    return {"survey": "toysurvey", "beams": {"A": dict(GRID), "B": dict(GRID)},
            "fitter": remap.get_continuum_fitter("algorithm1"),
            "library": {"name": "toy"}, "training": {"epochs": 3},
            "metrics": {"val_loss": np.float32(1.5), "missing": float("nan")}, **extra}


def _resum(path):
    """Rewrite SHA256SUMS to match the files (what an editor of the artifact could do)."""
    names = sorted(p.name for p in path.iterdir() if p.name != "SHA256SUMS")
    text = "".join(f"{hashlib.sha256((path / n).read_bytes()).hexdigest()}  {n}\n"
                   for n in names)
    (path / "SHA256SUMS").write_text(text)


def _edit_manifest(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    _resum(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny trained networks (beams A and B), their data, and a saved artifact."""
    flux, labels = _toy_data(256, seed=1)
    models = {"A": _tiny(1, flux, labels), "B": _tiny(2, flux)}
    embeddings = {b: compute_embeddings(m, flux, labels, LABEL_NAMES)
                  for b, m in models.items()}
    path = tmp_path_factory.mktemp("artifacts") / "model"
    save_model(path, models, _manifest(), embeddings=embeddings)
    return {"flux": flux, "labels": labels, "models": models, "embeddings": embeddings,
            "path": path}


@pytest.fixture
def copy(trained, tmp_path):
    """A private copy of the saved artifact, free to damage."""
    dst = tmp_path / "copy"
    shutil.copytree(trained["path"], dst)
    return dst


# ------------------------------------------------------------------ round trip

def test_round_trip_predictions_and_manifest(trained):
    loaded = load_model(trained["path"])
    assert isinstance(loaded, RemapModel)
    assert loaded.beams == ["A", "B"]
    assert [h.name for h in loaded.heads] == ["teff", "logg", "feh"]
    assert loaded.survey == "toysurvey"
    assert loaded.fitter["name"] == "algorithm1"
    assert loaded.fitter["config"] == remap.get_continuum_fitter("algorithm1").get_config()
    assert loaded.continuum_fitter() == remap.get_continuum_fitter("algorithm1")
    assert loaded.bins["teff"].n_bins == 50
    m = loaded.manifest
    assert m["format"] == "remap-model" and m["format_version"] == artifact.FORMAT_VERSION
    assert m["versions"]["keras"] == keras.__version__
    assert m["metrics"] == {"val_loss": 1.5, "missing": None}
    assert m["beams"]["A"]["grid"]["npix"] == NPIX
    assert m["beams"]["A"]["n_embeddings"] == 256
    assert m["heads"][0]["edges"][:3] == [3000.0, 3080.0, 3160.0]
    np.testing.assert_allclose(loaded.wavelength("A")[[0, -1]].value, [5000.0, 5012.7])

    flux = trained["flux"][:70]
    for beam in ("A", "B"):
        got = loaded.predict(beam, flux, batch_size=32)  # ragged last batch
        want = trained["models"][beam](flux, training=False)
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_allclose(got[key], np.asarray(want[key]), atol=2e-6, rtol=1e-5)
        np.testing.assert_allclose(got["teff"].sum(axis=1), 1.0, atol=1e-5)
    # the two beams' networks differ, and each was stored under its own name
    a, b = loaded.predict("A", flux), loaded.predict("B", flux)
    assert np.abs(a["teff"] - b["teff"]).max() > 1e-3


def test_trained_network_learned_and_survives_the_round_trip(trained):
    """The loaded network (trained weights and batch-norm statistics) beats a flat guess."""
    flux, labels = _toy_data(64, seed=7)
    loaded = load_model(trained["path"])
    out = loaded.predict("A", flux)
    ratio = {}
    for j, name in enumerate(LABEL_NAMES):
        median = loaded.bins[name].decode(out[name])["median"]
        ratio[name] = np.sqrt(np.mean((median - labels[:, j]) ** 2)) / labels[:, j].std()
    assert max(ratio.values()) < 0.95 and ratio["logg"] < 0.7, ratio
    # the batch-norm moving statistics came back too (they are not trainable weights)
    original = trained["models"]["A"].get_layer("stem_bn").moving_mean.numpy()
    restored = loaded.models["A"].get_layer("stem_bn").moving_mean.numpy()
    assert np.abs(original).max() > 1e-3
    np.testing.assert_array_equal(restored, original)


def test_predict_checks_its_input(trained):
    loaded = load_model(trained["path"])
    with pytest.raises(ValueError, match=r"shape \(n, 128\); received shape \(3, 100\)"):
        loaded.predict("A", np.ones((3, 100)))
    bad = np.ones((4, NPIX))
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"rows \[2\]"):
        loaded.predict("A", bad)
    with pytest.raises(ArtifactError, match="no beam 'C'"):
        loaded.predict("C", np.ones((1, NPIX)))
    with pytest.raises(ValueError, match="batch_size"):
        loaded.predict("A", np.ones((1, NPIX)), batch_size=0)
    empty = loaded.predict("A", np.ones((0, NPIX)))
    assert empty["teff"].shape == (0, 50)


# ------------------------------------------------------------------ integrity

def test_tampered_keras_file_is_refused(copy):
    data = bytearray((copy / "beam_B.keras").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "beam_B.keras").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"'beam_B.keras' does not match its SHA-256"):
        load_model(copy)


def test_tampered_manifest_is_refused(copy):
    text = (copy / "manifest.json").read_text().replace('"toysurvey"', '"toysurvez"')
    (copy / "manifest.json").write_text(text)
    with pytest.raises(ArtifactError, match=r"'manifest.json' does not match"):
        load_model(copy)


def test_missing_file_is_refused(copy):
    (copy / "embeddings_A.npz").unlink()
    with pytest.raises(ArtifactError, match=r"'embeddings_A.npz' listed in SHA256SUMS is "
                                            r"missing"):
        load_model(copy)
    _resum(copy)  # even with the hash list rewritten, the manifest still needs the file
    with pytest.raises(ArtifactError, match=r"'embeddings_A.npz' named in manifest.json is "
                                            r"missing"):
        load_model(copy)


def test_missing_hash_list_is_refused(copy):
    (copy / "SHA256SUMS").unlink()
    with pytest.raises(ArtifactError, match="no SHA256SUMS"):
        load_model(copy)


def test_extra_file_is_refused(copy):
    (copy / "notes.txt").write_text("hello")
    with pytest.raises(ArtifactError, match=r"unexpected file 'notes.txt', not listed"):
        load_model(copy)
    _resum(copy)
    with pytest.raises(ArtifactError, match=r"unexpected file 'notes.txt', not part of"):
        load_model(copy)


def test_symlink_and_subdirectory_are_refused(copy, tmp_path):
    (copy / "sub").mkdir()
    with pytest.raises(ArtifactError, match=r"unexpected directory 'sub'"):
        load_model(copy)
    (copy / "sub").rmdir()
    target = tmp_path / "elsewhere.npz"
    shutil.move(copy / "embeddings_A.npz", target)
    (copy / "embeddings_A.npz").symlink_to(target)
    with pytest.raises(ArtifactError, match=r"'embeddings_A.npz' is a symbolic link"):
        load_model(copy)


def test_malformed_hash_list_is_refused(copy):
    (copy / "SHA256SUMS").write_text("0" * 64 + "  ../../etc/passwd\n")
    with pytest.raises(ArtifactError, match="line 1 is not"):
        verify_files(copy)


# ------------------------------------------------------------------ compatibility

def test_future_format_version_is_refused(copy):
    _edit_manifest(copy, lambda m: m.update(format_version=artifact.FORMAT_VERSION + 1))
    with pytest.raises(ArtifactError, match=r"format version 2 is newer than this remap "
                                            r"supports \(up to 1\)"):
        load_model(copy)


def test_other_format_is_refused(copy):
    _edit_manifest(copy, lambda m: m.update(format="remap-dataset"))
    with pytest.raises(ArtifactError, match=r"format is 'remap-dataset', expected "
                                            r"'remap-model'"):
        load_model(copy)


def test_other_keras_major_version_is_refused(copy):
    _edit_manifest(copy, lambda m: m["versions"].update(keras="2.15.0"))
    with pytest.raises(ArtifactError, match=r"saved with Keras 2.15.0; this is Keras 3"):
        load_model(copy)


def test_head_bins_differing_from_the_registered_plugin_are_refused(copy):
    def change(m):
        head = m["heads"][0]
        head.update(bin_width=100.0, n_bins=40,
                    edges=[3000.0 + 100.0 * i for i in range(41)])
    _edit_manifest(copy, change)
    with pytest.raises(ArtifactError, match=r"head 'teff' of the artifact has 40 bins .* "
                                            r"registered head plugin 'teff' has 50 bins"):
        load_model(copy)


def test_unregistered_head_is_refused(copy):
    _edit_manifest(copy, lambda m: m["heads"][2].update(name="vsini"))
    with pytest.raises(ArtifactError, match=r"head 'vsini', but no head plugin of that name "
                                            r"is registered"):
        load_model(copy)


# ------------------------------------------------------------------ no code execution

def _lambda_model(marker):
    """A network whose Lambda layer would create ``marker`` whenever its code runs."""
    side_effect = eval(f"lambda t: (open({str(marker)!r}, 'w').close(), t)[1]")
    inputs = keras.Input((NPIX,), name="flux")
    x = keras.layers.Reshape((NPIX, 1))(inputs)
    x = keras.layers.Conv1D(2, 3)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Lambda(side_effect, name="sneaky")(x)
    outputs = {h.name: keras.layers.Dense(h.n_bins, activation="softmax", name=h.name)(x)
               for h in _heads()}
    return keras.Model(inputs, outputs)


def test_save_refuses_a_lambda_layer(tmp_path):
    model = _lambda_model(tmp_path / "marker")
    with pytest.raises(ArtifactError, match=r"beam_A.keras: the network contains a Lambda "
                                            r"'sneaky' layer"):
        save_model(tmp_path / "art", {"A": model}, _manifest(beams={"A": GRID}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marker"]


def test_lambda_layer_with_regenerated_hashes_is_refused_without_running_it(
        copy, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    model = _lambda_model(marker)
    model.save(tmp_path / "evil.keras")
    shutil.copy(tmp_path / "evil.keras", copy / "beam_A.keras")
    _resum(copy)
    marker.unlink()  # building the model above ran the lambda once
    with pytest.raises(ArtifactError, match=r"beam_A.keras: the network contains a Lambda "
                                            r"'sneaky' layer, which stores Python code"):
        load_model(copy)
    assert not marker.exists()
    # second line of defence: Keras' safe mode refuses it even without remap's own scan,
    # and even after a global keras.config.enable_unsafe_deserialization()
    monkeypatch.setattr(safety, "check_keras_config", lambda *a, **k: None)
    keras.config.enable_unsafe_deserialization()
    try:
        with pytest.raises(ArtifactError, match=r"beam_A.keras: Keras refused to load the "
                                                r"network .*safe_mode"):
            load_model(copy)
    finally:
        from keras.src.saving import serialization_lib
        from keras.src.backend.common import global_state
        global_state.set_global_attribute("safe_mode_saving", None)
        assert serialization_lib.in_safe_mode() is None
    assert not marker.exists()


def test_extra_member_in_keras_archive_is_refused(copy):
    with zipfile.ZipFile(copy / "beam_A.keras", "a") as archive:
        archive.writestr("assets/payload.py", "import os\n")
    _resum(copy)
    with pytest.raises(ArtifactError, match=r"beam_A.keras: .*unexpected members "
                                            r"\['assets/payload.py'\]"):
        load_model(copy)


def test_class_from_a_foreign_module_is_refused(copy):
    """A config edited to name an object outside Keras is refused before Keras reads it."""
    path = copy / "beam_A.keras"
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    layer = next(x for x in config["config"]["layers"] if x["class_name"] == "Dense")
    layer.update(module="subprocess", class_name="Popen", registered_name=None)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    _resum(copy)
    with pytest.raises(ArtifactError, match=r"beam_A.keras: Popen '.*' comes from module "
                                            r"'subprocess', outside Keras"):
        load_model(copy)


def test_pickled_embeddings_are_refused(copy):
    labels = np.zeros((3, 3))
    np.savez(copy / "embeddings_A.npz", labels=labels, label_names=np.array(LABEL_NAMES),
             embedding__teff=np.array([{"a": 1}] * 3, dtype=object))
    _resum(copy)
    with pytest.raises(ArtifactError, match=r"embeddings_A.npz: cannot read .*allow_pickle"):
        load_model(copy)


PLUGIN_LAYER = """
import keras
import remap

@keras.saving.register_keras_serializable(package="remap_doubler")
class Doubler(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x

@remap.hookimpl
def remap_heads():
    return []
"""


def test_plugin_layer_resolves_through_the_plugin_manager(make_dist, tmp_path, monkeypatch):
    """A layer defined by an installed plugin loads once plugins are loaded, else is refused."""
    import sys
    make_dist("remap-doubler", {"remap_doubler.py": PLUGIN_LAYER},
              {"doubler": "remap_doubler"})
    registry = keras.saving.get_custom_objects()
    import remap_doubler
    try:
        inputs = keras.Input((NPIX,), name="flux")
        x = keras.layers.Reshape((NPIX, 1))(inputs)
        x = keras.layers.Conv1D(2, 3)(x)
        x = keras.layers.GlobalAveragePooling1D()(x)
        x = remap_doubler.Doubler(name="double")(x)
        model = keras.Model(inputs, {"teff": keras.layers.Dense(50, activation="softmax",
                                                                name="teff")(x)})
        path = save_model(tmp_path / "art", {"A": model}, _manifest(beams={"A": GRID}))
        flux = _toy_data(5, seed=3)[0]
        want = np.asarray(model(flux)["teff"])
        # a new session: the plugin module not imported, its layer not registered
        del registry["remap_doubler>Doubler"]
        del sys.modules["remap_doubler"]
        remap.plugins.reset_plugin_manager()
        loaded = load_model(path)  # loading the plugins imports remap_doubler again
        np.testing.assert_allclose(loaded.predict("A", flux)["teff"], want, atol=1e-6)
        # with the plugin blocked its layer is unknown, and the message says so
        del registry["remap_doubler>Doubler"]
        del sys.modules["remap_doubler"]
        monkeypatch.setenv("REMAP_BLOCK_PLUGINS", "doubler")
        remap.plugins.reset_plugin_manager()
        with pytest.raises(ArtifactError, match=r"custom class 'remap_doubler>Doubler', which "
                                                r"is not registered .* plugin"):
            load_model(path)
    finally:
        registry.pop("remap_doubler>Doubler", None)


# ------------------------------------------------------------------ embeddings

def test_nearest_matches_brute_force_on_a_toy_set(tmp_path, trained):
    rng = np.random.default_rng(5)
    stored = rng.normal(size=(40, 4)).astype(np.float32)
    labels = rng.normal(size=(40, 3))
    model = trained["models"]["A"]
    save_model(tmp_path / "art", {"A": model}, _manifest(beams={"A": GRID}),
               embeddings={"A": {"teff_embedding": stored, "labels": labels,
                                 "label_names": LABEL_NAMES}})
    loaded = load_model(tmp_path / "art")
    queries = rng.normal(size=(6, 4))
    found = loaded.nearest("A", "teff", queries, k=3)
    dist = np.linalg.norm(queries[:, None, :] - stored[None].astype(float), axis=2)
    order = np.argsort(dist, axis=1)[:, :3]
    np.testing.assert_array_equal(found.indices, order)
    np.testing.assert_allclose(found.distances, np.take_along_axis(dist, order, 1), rtol=1e-6)
    np.testing.assert_array_equal(found.labels, labels[order])
    assert found.label_names == LABEL_NAMES
    one = loaded.nearest("A", "teff", stored[17], k=1)
    assert one.indices.tolist() == [17] and one.distances[0] == pytest.approx(0, abs=1e-6)
    assert one.labels.shape == (1, 3)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 40\]"):
        loaded.nearest("A", "teff", queries, k=41)
    with pytest.raises(ValueError, match="d=4"):
        loaded.nearest("A", "teff", np.ones((2, 5)))
    with pytest.raises(ArtifactError, match="no stored embeddings of head 'logg'"):
        loaded.nearest("A", "logg", queries)


def test_predicted_embeddings_find_their_own_training_spectra(trained):
    loaded = load_model(trained["path"])
    flux, labels = trained["flux"][:10], trained["labels"][:10]
    emb = loaded.predict("B", flux)["logg_embedding"]
    found = loaded.nearest("B", "logg", emb, k=2)
    assert found.indices[:, 0].tolist() == list(range(10))
    np.testing.assert_allclose(found.distances[:, 0], 0, atol=1e-5)
    np.testing.assert_array_equal(found.labels[:, 0], labels)
    record = loaded.embeddings("B")
    assert record["embeddings"]["logg"].dtype == np.float32
    assert not record["labels"].flags.writeable


# ------------------------------------------------------------------ atomic writes

def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_failure_mid_save_leaves_nothing(trained, tmp_path, monkeypatch):
    def boom(path, arrays):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(artifact, "_write_npz", boom)
    target = tmp_path / "out" / "model"
    with pytest.raises(OSError, match="No space left"):
        save_model(target, trained["models"], _manifest(), embeddings=trained["embeddings"])
    assert not target.exists()
    assert _siblings(target) == []  # no temporary directory left either


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_overwrite_semantics(trained, tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(artifact, "_renameat2_exchange", lambda a, b: False)
    target = tmp_path / "model"
    save_model(target, {"A": trained["models"]["A"]}, _manifest(beams={"A": GRID}))
    with pytest.raises(ArtifactError, match="already exists; pass overwrite=True"):
        save_model(target, {"B": trained["models"]["B"]}, _manifest(beams={"B": GRID}))
    assert load_model(target).beams == ["A"]
    save_model(target, {"B": trained["models"]["B"]},
               _manifest(beams={"B": GRID}, metrics={"round": 2}), overwrite=True)
    loaded = load_model(target)
    assert loaded.beams == ["B"] and loaded.manifest["metrics"] == {"round": 2}
    assert _siblings(target) == ["model"]


def test_failed_overwrite_keeps_the_old_artifact(trained, tmp_path, monkeypatch):
    target = tmp_path / "model"
    save_model(target, {"A": trained["models"]["A"]}, _manifest(beams={"A": GRID}))
    before = (target / "SHA256SUMS").read_text()
    monkeypatch.setattr(artifact, "_write_npz", lambda p, a: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_model(target, trained["models"], _manifest(), embeddings=trained["embeddings"],
                   overwrite=True)
    assert (target / "SHA256SUMS").read_text() == before
    assert load_model(target).beams == ["A"]
    assert _siblings(target) == ["model"]


def test_overwrite_refuses_what_is_not_an_artifact(trained, tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("...")
    with pytest.raises(ArtifactError, match="not empty and not a remap artifact"):
        save_model(precious, {"A": trained["models"]["A"]}, _manifest(beams={"A": GRID}),
                   overwrite=True)
    assert (precious / "chapter1.tex").read_text() == "..."
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ArtifactError, match="is not a directory"):
        save_model(afile, {"A": trained["models"]["A"]}, _manifest(beams={"A": GRID}),
                   overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    save_model(empty, {"A": trained["models"]["A"]}, _manifest(beams={"A": GRID}),
               overwrite=True)
    assert load_model(empty).beams == ["A"]


# ------------------------------------------------------------------ bad arguments

@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(manifest={"beams": {"A": GRID}}), r"needs 'survey'"),
    (lambda a: a["manifest"].update(format_version=9), r"\['format_version'\] are written "
                                                       r"by save_model"),
    (lambda a: a["manifest"].update(beams={"A": {**GRID, "wave_max": 5020.0}}),
     r"takes 128 pixels but the beam grid has 201"),
    (lambda a: a["manifest"].update(beams={"A": {**GRID, "npix": 100}}),
     r"npix=100 does not match the grid"),
    (lambda a: a["manifest"].update(beams={}, survey="marvels"),
     r"takes 128 pixels but the beam grid has 4301"),
    (lambda a: a["manifest"].update(beams={"A": GRID, "Z": GRID}),
     r"lists \['Z'\], which have no model"),
    (lambda a: a["manifest"].update(when=object()), r"manifest value at when is a object"),
    (lambda a: a.update(models={"A/../x": a["models"]["A"]}), r"beam names must be"),
    (lambda a: a.update(models={"A": "model.keras"}), r"models\['A'\] must be a keras.Model"),
    (lambda a: a.update(embeddings={"A": {"teff": np.zeros((5, 3)), "labels": np.zeros((5, 3)),
                                          "label_names": LABEL_NAMES}}),
     r"teff_embedding output has 4 dimensions; received 3"),
    (lambda a: a.update(embeddings={"A": {"teff": np.zeros((5, 4)), "labels": np.zeros((4, 3)),
                                          "label_names": LABEL_NAMES}}),
     r"expected shape \(4, d\) like the labels; received \(5, 4\)"),
    (lambda a: a.update(embeddings={"B": {}}), r"beams \['B'\] that have no model"),
])
def test_save_model_rejects_bad_arguments(trained, tmp_path, change, message):
    args = {"models": {"A": trained["models"]["A"]}, "manifest": _manifest(beams={"A": GRID}),
            "embeddings": None}
    change(args)
    with pytest.raises(ArtifactError, match=message):
        save_model(tmp_path / "art", args["models"], args["manifest"],
                   embeddings=args["embeddings"])
    assert not (tmp_path / "art").exists()


def test_load_model_of_a_missing_directory(tmp_path):
    with pytest.raises(ArtifactError, match="no such artifact directory"):
        load_model(tmp_path / "nope")


# ------------------------------------------------------------------ templates

def _templates(seed=0, n=4):
    rng = np.random.default_rng(seed)
    flux = 1 - 0.3 * rng.random((n, NPIX)) ** 6
    labels = np.column_stack([np.linspace(4000, 6500, n), np.full(n, 4.5), np.zeros(n)])
    return {"flux": np.vstack([flux.mean(0), flux]),
            "labels": np.vstack([np.full((1, 3), np.nan), labels]),
            "label_names": LABEL_NAMES, "meta": {"library": "toy"}}


def test_templates_round_trip_through_save_and_load(trained, tmp_path):
    path = tmp_path / "with_templates"
    rec = _templates()
    save_model(path, trained["models"], _manifest(), templates={"A": rec})
    model = load_model(path)
    assert model.has_templates("A") and not model.has_templates("B")
    t = model.templates("A")
    np.testing.assert_allclose(t.wave.to_value("AA"), GRID["wave_min"] + 0.1 * np.arange(NPIX))
    np.testing.assert_array_equal(t.flux, rec["flux"].astype(np.float32))
    np.testing.assert_array_equal(t.labels[1:], rec["labels"][1:])
    assert t.label_names == LABEL_NAMES and t.meta == {"library": "toy"}
    assert not t.flux.flags.writeable
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["beams"]["A"]["templates"] == "templates_A.npz"
    assert manifest["beams"]["A"]["n_templates"] == 5
    with pytest.raises(ArtifactError, match="stores no templates for beam 'B'"):
        model.templates("B")


def test_write_templates_adds_them_rehashed_keeping_the_networks(copy):
    before = (copy / "beam_A.keras").read_bytes()
    artifact.write_templates(copy, {"A": _templates(1), "B": _templates(2)})
    assert (copy / "beam_A.keras").read_bytes() == before
    sums = (copy / "SHA256SUMS").read_text()
    assert "templates_A.npz" in sums and "templates_B.npz" in sums
    model = load_model(copy)          # verifies every hash
    assert model.templates("B").flux.shape == (5, NPIX)


def test_tampered_templates_file_is_refused(copy):
    artifact.write_templates(copy, {"A": _templates(1)})
    data = bytearray((copy / "templates_A.npz").read_bytes())
    data[-40] ^= 0xFF
    (copy / "templates_A.npz").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="'templates_A.npz' does not match its SHA-256"):
        load_model(copy)


def test_templates_with_a_pickled_array_are_refused(copy):
    artifact.write_templates(copy, {"A": _templates(1)})
    arrays = dict(np.load(copy / "templates_A.npz"))
    arrays["meta"] = np.array([{"x": 1}], dtype=object)
    with open(copy / "templates_A.npz", "wb") as fh:
        np.savez(fh, **arrays)
    _resum(copy)
    with pytest.raises(ArtifactError, match="cannot read the templates"):
        load_model(copy)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(flux=np.ones((2, 7))), r"flux must have shape \(n, 128\)"),
    (lambda r: r.update(labels=np.ones((5, 2))), r"labels must have shape \(5, 3\)"),
    (lambda r: r.update(wave=np.arange(128.0)), r"must be on the beam's model grid"),
    (lambda r: r.update(extra=1), r"unexpected keys \['extra'\]"),
])
def test_bad_templates_are_refused_when_written(copy, change, message):
    rec = _templates()
    change(rec)
    with pytest.raises(ArtifactError, match=message):
        artifact.write_templates(copy, {"A": rec})
    load_model(copy)   # left as it was


def test_cli_add_templates_to_a_copy_of_the_default_model(tmp_path):
    from click.testing import CliRunner

    from remap.cli import cli
    from remap.inference.pipeline import DEFAULT_MODEL_PATH
    dst = tmp_path / "default"
    shutil.copytree(DEFAULT_MODEL_PATH, dst)
    for beam in ("A", "B"):                 # start from an artifact without templates
        (dst / f"templates_{beam}.npz").unlink(missing_ok=True)
    _edit_manifest(dst, lambda m: [r.pop(k, None) for r in m["beams"].values()
                                   for k in ("templates", "n_templates")])
    assert not load_model(dst).has_templates("A")
    result = CliRunner().invoke(cli, [
        "model", "add-templates", str(dst), "--library", "linelist", "--library-options",
        '{"resolution": 50000, "linelist": "laboratory", "wave_range": [4830, 5770]}'])
    assert result.exit_code == 0, result.output
    assert "templates added (A: 31, B: 31)" in result.output
    model = load_model(dst)
    t = model.templates("B")
    assert t.flux.shape == (31, 4701) and np.all(np.isnan(t.labels[0]))
    np.testing.assert_allclose(t.flux[0], t.flux[1:].mean(axis=0), rtol=1e-6)
    bad = CliRunner().invoke(cli, ["model", "add-templates", str(dst), "--library-options",
                                   "[1"])
    assert bad.exit_code != 0 and "not JSON" in bad.output
