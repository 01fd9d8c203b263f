"""Training configuration files (TOML → TrainConfig), the shipped configs, and k-fold CV."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

import astropy.units as u  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from remap.train.config import (ConfigError, TrainConfig, load_config,  # noqa: E402
                                parse_config)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

GOOD = """
seed = 7
beams = ["A"]
heads = ["teff", "feh"]

[data]
validation_fraction = 0.2

[data.build]
library = "linelist"
library_options = { resolution = 50000, wave_range = [4850, 5280] }
n = 12
draws = 2

[data.survey]
simulate = { set = "dwarfs", n = 40 }
validation_fraction = 0.25

[network]
stem_filters = 8
modules = [[16, 2], [32, 2]]

[loss]
triplet_weight = 0.01

[find_lr]
steps = 20

[pretrain]
lr_max = 1e-3
lr_min = 1e-5
epochs_per_cycle = 3
n_cycles = 2
swa = false

[finetune]
freeze = ["stem", "module_0"]
lr_max = 2e-3

[cv]
k = 4
epochs = 2
architectures = { small = { modules = [[8, 2]] }, big = { modules = [[16, 2], [32, 2]] } }

[ablations]
no_triplet = true
"""


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path, text):
    """The message of the ConfigError that loading ``text`` raises; it must name the file."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_good_file_parses_with_defaults_filled_in(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert isinstance(cfg, TrainConfig)
    assert cfg.seed == 7 and cfg.beams == ("A",) and cfg.heads == ("teff", "feh")
    assert cfg.data.build.n == 12 and cfg.data.build.draws == 2
    assert cfg.data.build.library_options == {"resolution": 50000, "wave_range": [4850, 5280]}
    assert cfg.data.build.shard_size == 20 and cfg.data.build.fitter == "algorithm1"
    assert cfg.data.survey.simulate.set == "dwarfs" and cfg.data.survey.simulate.n == 40
    assert cfg.data.survey.validation_fraction == 0.25
    assert cfg.network["stem_filters"] == 8
    assert cfg.network["modules"] == [[16, 2], [32, 2]]
    assert cfg.network_config().modules == ((16, 2), (32, 2))
    assert cfg.loss.triplet_weight == 0.01 and cfg.loss.gamma == 2.0
    assert cfg.pretrain.lr_max == 1e-3 and cfg.pretrain.swa is False
    assert cfg.pretrain.batch_size == 64
    assert cfg.finetune.freeze == ("stem", "module_0") and cfg.finetune.lr_max == 2e-3
    assert cfg.finetune.lr_min == "pretrain"
    assert set(cfg.cv.architectures) == {"small", "big"}
    assert cfg.cv.architectures["small"]["modules"] == [[8, 2]]
    assert cfg.ablations.no_triplet and not cfg.ablations.single_task
    assert cfg.source == str(tmp_path / "c.toml")
    # relative paths resolve against the file's directory
    assert cfg.resolve_path("sets/x") == tmp_path / "sets" / "x"
    # to_dict is plain data that parses back to the same configuration
    again = parse_config(cfg.to_dict(), source=cfg.source)
    assert again == cfg


def test_paper_defaults():
    cfg = parse_config({"data": {"dataset": "somewhere"}})
    assert (cfg.pretrain.lr_max, cfg.pretrain.epochs_per_cycle, cfg.pretrain.n_cycles) == \
        ("auto", 30, 4)
    assert cfg.loss.triplet_weight == 0.001 and cfg.cv.k == 10
    assert cfg.beams == ("A", "B") and cfg.pretrain.swa


@pytest.mark.parametrize("text, message", [
    ("sed = 1\n[data]\ndataset = 'x'\n", "unknown key 'sed'"),
    ("[data]\ndataset = 'x'\n[pretrain]\nepoch_per_cycle = 3\n",
     "unknown key [pretrain] epoch_per_cycle (known keys of [pretrain]:"),
    ("[data]\ndataset = 'x'\n[data.build]\nlibary = 'linelist'\n",
     "unknown key [data.build] libary"),
    ("[data]\ndataset = 'x'\n[network]\nfilters = 3\n", "unknown key [network] filters"),
    ("[data]\ndataset = 'x'\n[cv.architectures.a]\nstem = 3\n",
     "unknown key [cv.architectures.a] stem"),
])
def test_unknown_keys_are_named(tmp_path, text, message):
    assert message in config_error(tmp_path, text)


@pytest.mark.parametrize("text, message", [
    ("seed = 'one'\n[data]\ndataset = 'x'\n",
     "seed must be an integer >= 0; received 'one' (str)"),
    ("beams = 'A'\n[data]\ndataset = 'x'\n",
     "beams must be a list (each item a non-empty string, at least 1 item, no repeats)"),
    ("[data]\ndataset = 'x'\n[pretrain]\nepochs_per_cycle = 'ten'\n",
     "[pretrain] epochs_per_cycle must be an integer >= 1; received 'ten' (str)"),
    ("[data]\ndataset = 'x'\n[pretrain]\nepochs_per_cycle = 2.5\n",
     "[pretrain] epochs_per_cycle must be an integer >= 1; received 2.5 (float)"),
    ("[data]\ndataset = 'x'\n[pretrain]\nswa = 1\n",
     "[pretrain] swa must be true or false; received 1 (int)"),
    ("[data]\ndataset = 'x'\n[pretrain]\nlr_max = 'fast'\n",
     "[pretrain] lr_max must be a positive number or 'auto'; received 'fast' (str)"),
    ("[data]\ndataset = 'x'\nvalidation_fraction = 1.5\n",
     "[data] validation_fraction must be a finite number in (0, 1); received 1.5"),
    ("[data]\ndataset = 'x'\n[data.survey]\nsimulate = { set = 'stars' }\n",
     "[data.survey.simulate] set must be one of 'dwarfs', 'calibration', 'giants'"),
    ("[data]\ndataset = 'x'\n[network]\nmodules = 'big'\n", "[network]: NetworkConfig.modules"),
    ("[data]\ndataset = 'x'\n[finetune]\nfreeze = 'stem'\n",
     "[finetune] freeze must be a list (each item a non-empty string, no repeats)"),
    ("[data]\ndataset = 'x'\n[ablations]\nno_swa = 'yes'\n",
     "[ablations] no_swa must be true or false; received 'yes' (str)"),
    ("pretrain = 3\n[data]\ndataset = 'x'\n", "[pretrain] must be a table; received 3 (int)"),
])
def test_wrong_types_and_values_are_named(tmp_path, text, message):
    assert message in config_error(tmp_path, text)


@pytest.mark.parametrize("text, message", [
    ("seed = 1\n", "either as [data] dataset = \"path\" or as a [data.build] table"),
    ("[data]\ndataset = 'x'\n[data.build]\nn = 3\n", "(both are set)"),
    ("[data.build]\nlibrary = 'linelist'\n", "needs exactly one of n = <label points> and grid"),
    ("[data]\ndataset = 'x'\n[data.survey]\nvalidation_fraction = 0.1\n",
     "[data.survey] needs exactly one of dataset"),
    ("[data]\ndataset = 'x'\n[pretrain]\nlr_max = 1e-3\n",
     "lr_max and lr_min must both be numbers or both 'auto'"),
    ("[data]\ndataset = 'x'\n[pretrain]\nlr_max = 1e-5\nlr_min = 1e-3\n",
     "[pretrain] lr_min must be smaller than lr_max"),
    ("heads = ['teff', 'mass']\n[data]\ndataset = 'x'\n", "heads: unknown head 'mass'"),
])
def test_inconsistent_settings(tmp_path, text, message):
    assert message in config_error(tmp_path, text)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: no such configuration file"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(write(tmp_path, "seed = = 1\n", "bad.toml"))
    with pytest.raises(ConfigError, match="bin.toml: not UTF-8 text"):
        (tmp_path / "bin.toml").write_bytes(b"seed = '\xff'\n")
        load_config(tmp_path / "bin.toml")


@pytest.mark.parametrize("name", ["quick.toml", "default.toml"])
def test_shipped_configs_are_valid_and_documented(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.beams == ("A", "B") and cfg.data.build is not None
    assert cfg.data.survey is not None and cfg.data.survey.simulate is not None
    readme = (CONFIGS / "README.rst").read_text(encoding="utf-8")
    # every key of every section is documented in configs/README.rst
    sections = {"data": cfg.data, "data.build": cfg.data.build, "data.survey": cfg.data.survey,
                "data.survey.simulate": cfg.data.survey.simulate, "loss": cfg.loss,
                "find_lr": cfg.find_lr, "pretrain": cfg.pretrain, "finetune": cfg.finetune,
                "cv": cfg.cv, "ablations": cfg.ablations, "artifact": cfg.artifact}
    for section, obj in sections.items():
        assert f"``[{section}]``" in readme, section
        for field in dataclasses.fields(obj):
            assert f"``{field.name}``" in readme, f"[{section}] {field.name}"
    for key in ("seed", "beams", "heads", "deterministic"):
        assert f"``{key}``" in readme
    for key in cfg.network:
        assert f"``{key}``" in readme, f"[network] {key}"


# --------------------------------------------------------------------------- cross-validation

NPIX = 128


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory):
    """12 label points x 4 noisy spectra whose line depths follow T_eff, log g and [Fe/H]."""
    from remap.datasets import Dataset, DatasetWriter

    directory = tmp_path_factory.mktemp("cvset")
    grid = (5000 + 0.1 * np.arange(NPIX)) * u.AA
    writer = DatasetWriter(directory, survey="toy", grids={"A": grid},
                           label_names=["teff", "logg", "feh"], label_units=["K", "dex", "dex"],
                           metadata_fields={"label_point": "int64"}, compression=None)
    rng = np.random.default_rng(0)
    x = np.arange(NPIX)
    with writer.shard(0, 48) as shard:
        for point in range(12):
            teff, logg, feh = rng.uniform(4000, 6500), rng.uniform(2, 5), rng.uniform(-1, 0.5)
            lines = (0.6 * (6500 - teff) / 2500 * np.exp(-0.5 * ((x - 30) / 2) ** 2)
                     + 0.3 * logg / 5 * np.exp(-0.5 * ((x - 70) / 2) ** 2)
                     + 0.3 * (feh + 1) / 1.5 * np.exp(-0.5 * ((x - 100) / 2) ** 2))
            flux = 1 - lines + rng.normal(0, 0.01, (4, NPIX))
            shard.append(flux={"A": flux}, labels=np.tile([teff, logg, feh], (4, 1)),
                         metadata={"label_point": np.full(4, point)})
    writer.finish()
    return Dataset(directory)


def test_cross_validation_of_two_architectures_returns_a_table(toy_set):
    from remap.train.cv import cross_validate

    cfg = parse_config({"data": {"dataset": "x"}, "cv": {
        "k": 3, "epochs": 1, "batch_size": 8,
        "architectures": {
            "one_module": {"stem_filters": 4, "stem_strides": 2, "stem_pool": 2,
                           "modules": [[8, 2]], "kernel_size": 3, "embedding_size": 4,
                           "dense_units": 8},
            "two_modules": {"stem_filters": 4, "stem_strides": 2, "stem_pool": 2,
                            "modules": [[8, 2], [8, 2]], "kernel_size": 3,
                            "embedding_size": 4, "dense_units": 8}}}})
    messages = []
    table = cross_validate(toy_set, "A", cfg.cv.architectures, cfg.cv.k, epochs=cfg.cv.epochs,
                           batch_size=cfg.cv.batch_size, lr_max=3e-3, lr_min=3e-5, seed=0,
                           progress=messages.append)
    assert list(table["architecture"]) == ["one_module", "two_modules"]
    assert table["fold_loss"].shape == (2, 3)
    assert np.all(np.isfinite(table["fold_loss"])) and np.all(table["fold_loss"] > 0)
    np.testing.assert_allclose(table["mean_loss"], table["fold_loss"].mean(axis=1))
    np.testing.assert_allclose(table["std_loss"], table["fold_loss"].std(axis=1, ddof=1))
    assert table.meta["best"] == table["architecture"][np.argmin(table["mean_loss"])]
    assert table.meta["k"] == 3 and table.meta["n_samples"] == 48
    assert table["n_params"][0] < table["n_params"][1]
    assert len(messages) == 6 and "fold 3/3, two_modules" in messages[-1]
    with pytest.raises(ValueError, match="k=13 folds need at least 13 groups"):
        cross_validate(toy_set, "A", cfg.cv.architectures, 13)
