"""``remap train`` end to end on a tiny configuration, resuming, and the CV folds.

The runs use a toy two-beam survey of 251-pixel beams (registered as a
plugin for this module) and the built-in line-list library restricted to
5150-5220 Å, so that the whole chain (build the training set, simulate a
survey set, pre-train, fine-tune, write the artifact) runs in seconds.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import textwrap  # noqa: E402

import astropy.units as u  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from remap.cli.app import cli  # noqa: E402
from remap.datasets import Dataset  # noqa: E402
from remap import hookimpl  # noqa: E402
from remap.plugins import get_plugin_manager, reset_plugin_manager  # noqa: E402
from remap.surveys.base import Beam, Survey  # noqa: E402


class ToySurvey(Survey):
    """Two short beams on a 0.1 Å grid (251 pixels each)."""

    name = "toysurvey"
    wavelength_medium = "air"
    beams = {"A": Beam("A", 5160 * u.AA, 5185 * u.AA, resolution=11000,
                       resolution_range=(10000, 12000), sampling=0.1 * u.AA),
             "B": Beam("B", 5185 * u.AA, 5210 * u.AA, resolution=11000,
                       resolution_range=(10000, 12000), sampling=0.1 * u.AA)}


class ToySurveyPlugin:
    @hookimpl
    def remap_surveys(self):
        return [ToySurvey]


TINY = """
seed = 3
beams = {beams}

[data]
survey_name = "toysurvey"
validation_fraction = 0.25

[data.build]
library_options = {{ resolution = 50000, wave_range = [5150, 5220] }}
n = 8
resolutions = [11000]
noise_levels = [0.01]
draws = 3

{survey}
[network]
stem_filters = 4
stem_strides = 2
stem_pool = 2
modules = [[8, 2], [8, 2]]
kernel_size = 3
embedding_size = 4
dense_units = 8

[find_lr]
steps = 10

[pretrain]
lr_max = {lr_max}
lr_min = {lr_min}
epochs_per_cycle = 2
n_cycles = 1
batch_size = 8

[finetune]
epochs_per_cycle = 1
batch_size = 4
freeze = ["stem"]

[artifact]
embeddings_sample = 10
{extra}
"""


SURVEY = """
[data.survey]
simulate = { set = "dwarfs", n = 16, library_options = { resolution = 50000, \
wave_range = [5150, 5220] } }
validation_fraction = 0.25
"""


def write_config(path, *, beams=("A",), lr_max="3e-3", lr_min="3e-5", extra="", survey=True):
    path.write_text(TINY.format(beams=json.dumps(list(beams)), lr_max=lr_max, lr_min=lr_min,
                                extra=textwrap.dedent(extra), survey=SURVEY if survey else ""),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def toy_survey():
    reset_plugin_manager()
    get_plugin_manager().register(ToySurveyPlugin(), name="toy-survey-plugin")
    yield ToySurvey
    reset_plugin_manager()


def train(*args):
    return CliRunner().invoke(cli, ["train", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_run(toy_survey, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    config = write_config(root / "tiny.toml")
    out = root / "out"
    result = train("--config", config, "--out", out)
    return config, out, result


def model_weights(path):
    return [w.copy() for w in keras.saving.load_model(path, compile=False).get_weights()]


def test_train_writes_an_artifact_that_loads_and_predicts(tiny_run):
    from remap.model import load_model

    config, out, result = tiny_run
    assert result.exit_code == 0, result.output
    assert "beam A: pretrain: 1 cycles x 2 epochs, lr 0.003 -> 3e-05, SWA on" in result.output
    assert "frozen: stem" in result.output
    artifact = load_model(out / "model")
    assert artifact.beams == ["A"] and artifact.survey == "toysurvey"
    assert [h.name for h in artifact.heads] == ["teff", "logg", "feh"]
    man = artifact.manifest
    assert man["fitter"]["name"] == "algorithm1"
    assert man["library"]["name"] == "linelist"
    assert man["dataset"]["train"]["n_samples"] == 24
    assert man["dataset"]["survey"]["n_samples"] == 16
    assert man["training"]["config"]["pretrain"]["epochs_per_cycle"] == 2
    stages = man["training"]["stages"]["A"]
    assert stages["pretrain"]["lr_max"] == pytest.approx(3e-3)
    assert stages["finetune"]["frozen"][:3] == ["flux", "stem_reshape", "stem_conv"]
    metrics = man["metrics"]["A"]
    assert metrics["train"]["n"] == 6 and metrics["survey"]["n"] == 4
    for which in ("train", "survey"):
        assert np.isfinite(metrics[which]["loss"]["loss"])
        assert np.isfinite(metrics[which]["teff"]["scatter"])
    # the artifact's network is the fine-tuned stage model, and it predicts PMFs
    stage = model_weights(out / "beam_A" / "finetune" / "model.keras")
    shipped = artifact.models["A"].get_weights() if hasattr(artifact, "models") else None
    if shipped is not None:
        for a, b in zip(stage, shipped):
            np.testing.assert_array_equal(a, b)
    survey = Dataset(out / "data" / "survey_dwarfs")
    flux, _, _, _ = survey.read_arrays(np.arange(3), "A")
    pmf = artifact.predict("A", flux)
    assert pmf["teff"].shape == (3, 50)
    np.testing.assert_allclose(pmf["teff"].sum(axis=1), 1.0, rtol=1e-5)
    emb = np.load(out / "model" / "embeddings_A.npz", allow_pickle=False)
    assert emb["labels"].shape == (10, 3)
    # the recorded history shows the stages trained
    pre = json.loads((out / "beam_A" / "pretrain" / "stage.json").read_text())
    assert pre["complete"] and len(pre["history"]["loss"]) == 2
    # the objective is L = Σ_p (focal_p + λ triplet_p) with λ = 0.001
    hist = pre["history"]
    objective = sum(np.asarray(hist[f"{h}_loss"]) + 0.001 * np.asarray(hist[f"{h}_embedding_loss"])
                    for h in ("teff", "logg", "feh"))
    np.testing.assert_allclose(hist["loss"], objective, rtol=1e-4)


def test_rerun_resumes_and_no_resume_reproduces_the_stage(tiny_run):
    config, out, first = tiny_run
    assert first.exit_code == 0, first.output
    before = model_weights(out / "beam_A" / "finetune" / "model.keras")
    again = train("--config", config, "--out", out)
    assert again.exit_code == 0, again.output
    assert "training set: 24 spectra (0 shards written, 1 reused)" in again.output
    assert "beam A: pretrain: reused" in again.output
    assert "beam A: finetune: reused" in again.output
    # --no-resume redoes the requested stage only; same seed -> same weights (CPU)
    redo = train("--config", config, "--out", out, "--stage", "finetune", "--no-resume")
    assert redo.exit_code == 0, redo.output
    assert "beam A: pretrain: reused" in redo.output
    assert "finetune: starting over (--no-resume)" in redo.output
    after = model_weights(out / "beam_A" / "finetune" / "model.keras")
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_changed_settings_redo_the_stage(tiny_run, tmp_path):
    config, out, first = tiny_run
    assert first.exit_code == 0, first.output
    changed = write_config(tmp_path / "changed.toml",
                           extra="[ablations]\nno_finetune = true\n")
    result = train("--config", changed, "--out", out, "--stage", "pretrain")
    assert result.exit_code == 0, result.output
    assert "beam A: pretrain: reused" in result.output   # no_finetune does not touch it
    assert "finetune" not in result.output


def test_train_errors_are_reported(toy_survey, tmp_path):
    missing = train("--config", tmp_path / "nope.toml", "--out", tmp_path / "o")
    assert missing.exit_code == 1 and "nope.toml: no such configuration file" in missing.output
    config = write_config(tmp_path / "c.toml")
    bad_beam = train("--config", config, "--out", tmp_path / "o", "--beam", "C")
    assert bad_beam.exit_code == 1
    assert "beam 'C' is not in the configuration's beams ['A']" in bad_beam.output
    no_survey = write_config(tmp_path / "nosurvey.toml", survey=False)
    result = train("--config", no_survey, "--out", tmp_path / "o", "--stage", "finetune")
    assert result.exit_code == 1 and "the finetune stage needs a survey set" in result.output


def test_make_folds_and_split_keep_label_points_together():
    from remap.train.cv import make_folds, split_groups

    groups = np.repeat(np.arange(10), 4)
    folds = make_folds(groups, 3, seed=1)
    seen = np.concatenate([va for _, va in folds])
    assert np.array_equal(np.sort(seen), np.arange(40))
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])
    assert sorted(len(set(groups[va])) for _, va in folds) == [3, 3, 4]
    again = make_folds(groups, 3, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    tr, va = split_groups(groups, 0.2, seed=0)
    assert len(set(groups[va])) == 2 and not set(groups[tr]) & set(groups[va])
    with pytest.raises(ValueError, match="k=11 folds need at least 11 groups"):
        make_folds(groups, 11, seed=0)


@pytest.mark.slow
def test_ablations_single_task_no_swa_no_triplet_both_beams(toy_survey, tmp_path):
    from remap.model import load_model

    config = write_config(tmp_path / "abl.toml", beams=("A", "B"), lr_max='"auto"',
                          lr_min='"auto"', extra="""
                          [ablations]
                          single_task = true
                          no_swa = true
                          no_triplet = true
                          """)
    result = train("--config", config, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    for beam in ("A", "B"):
        for head in ("teff", "logg", "feh"):
            assert f"beam {beam}: pretrain ({head}): 1 cycles x 2 epochs" in result.output
            assert (tmp_path / "out" / f"beam_{beam}" / f"find_lr_{head}" /
                    "lr_finder.png").is_file()
            stage = json.loads((tmp_path / "out" / f"beam_{beam}" / f"pretrain_{head}" /
                                "stage.json").read_text())
            # one head per network, and no triplet loss in the objective
            hist = stage["history"]
            assert not [k for k in hist if k.endswith("_loss") and not k.startswith("val_")
                        and k not in (f"{head}_loss", f"{head}_embedding_loss")]
            np.testing.assert_allclose(hist["loss"], hist[f"{head}_loss"], rtol=1e-6)
    assert "SWA off" in result.output and "SWA on" not in result.output
    artifact = load_model(tmp_path / "out" / "model")
    assert artifact.beams == ["A", "B"]
    pmf = artifact.predict("B", np.ones((2, 251), dtype=np.float32))
    assert {k: v.shape[1] for k, v in pmf.items() if not k.endswith("_embedding")} == \
        {"teff": 50, "logg": 45, "feh": 30}


@pytest.mark.slow
def test_cv_enabled_runs_in_the_chain_and_selects_the_best_architecture(toy_survey, tmp_path):
    from astropy.table import Table

    from remap.model import load_model
    from remap.heads import FEH, LOGG, TEFF
    from remap.nn.model import NetworkConfig, build_model

    common = dict(stem_strides=2, stem_pool=2, kernel_size=3, embedding_size=4, dense_units=8)
    archs = {"narrow": dict(stem_filters=2, modules=[[4, 2]], **common),
             "wide": dict(stem_filters=4, modules=[[8, 2], [8, 2]], **common)}
    tables = "".join(f"\n[cv.architectures.{name}]\n" +
                     "".join(f"{key} = {json.dumps(value)}\n" for key, value in arch.items())
                     for name, arch in archs.items())
    config = write_config(tmp_path / "cv.toml", survey=False, extra=textwrap.dedent("""
                          [cv]
                          enabled = true
                          select = true
                          k = 2
                          epochs = 1
                          batch_size = 8
                          """) + tables)
    out = tmp_path / "out"
    result = train("--config", config, "--out", out)
    assert result.exit_code == 0, result.output
    table = Table.read(out / "cv" / "cv_A.ecsv")
    assert sorted(table["architecture"]) == ["narrow", "wide"]
    losses = np.asarray(table["mean_loss"], dtype=float)
    assert np.all(np.isfinite(losses)) and np.all(losses > 0)
    best = str(table["architecture"][int(np.argmin(losses))])
    # cross-validation ran before the range test and pre-training, in one command
    text = result.output
    assert text.index("cross-validation") < text.index("range test") < text.index("pretrain")
    # the artifact was trained with the selected architecture
    artifact = load_model(out / "model")
    counts = {name: build_model(NetworkConfig(**a), [TEFF, LOGG, FEH], 251).count_params()
              for name, a in archs.items()}
    assert counts["narrow"] != counts["wide"]
    assert artifact.models["A"].count_params() == counts[best]
    assert f"using architecture {best!r} chosen by cross-validation" in text
