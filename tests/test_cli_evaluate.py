"""``remap evaluate`` and ``remap embed`` on a small simulated set with the default model."""

import astropy.units as u
import matplotlib.image
import numpy as np
import pytest
from astropy.table import QTable
from click.testing import CliRunner

import remap.cli.evaluate
from remap.cli.app import cli, main
from remap.cli.evaluate import REPORT_FILES
from remap.datasets import DatasetWriter
from remap.evaluation.report import resolve_model
from remap.model.cache import DEFAULT_MODEL_PATH


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from remap.simulate import build_simulated
    path = tmp_path_factory.mktemp("sim") / "calibration"
    build_simulated(path, "calibration", n=6, seed=0)
    return path


@pytest.fixture(scope="module")
def loaded_model():
    return resolve_model(None)


@pytest.fixture
def cached_model(monkeypatch, loaded_model):
    """Let the commands use the already loaded default model (its path is what they get)."""
    seen = []

    def model(path):
        seen.append(path)
        assert path is None or path.resolve() == loaded_model.path.resolve()
        return loaded_model

    monkeypatch.setattr(remap.cli.evaluate, "_model", model)
    return seen


def write_dataset(path, grids, n):
    writer = DatasetWriter(path, survey="marvels", grids=grids,
                           label_names=["teff", "logg", "feh"], label_units=["K", "dex", "dex"],
                           metadata_fields={})
    if n:
        with writer.shard(0, n) as shard:
            shard.append(flux={b: np.ones((n, len(g))) for b, g in grids.items()},
                         labels=np.tile([5500.0, 4.3, 0.0], (n, 1)))
        writer.finish()
    return path


def test_commands_are_registered():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "evaluate" in result.output and "embed" in result.output


def test_evaluate_writes_the_report_with_the_default_model(simulated, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(simulated), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)   # no temp files
    table = QTable.read(out / "report.ecsv")
    assert len(table) == 9 and set(table["source"]) == {"A", "B", "conflated"}
    assert (table["n"] == 6).all()
    assert table.meta["model"].endswith("default") and table.meta["truth"] == "labels"
    stars = QTable.read(out / "predictions.ecsv")
    assert len(stars) == 6 and stars["teff"].unit == u.K
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Conflated (A + B)" in md and "| T_eff (K) | 6 |" in md
    assert "| T_eff (K) | 6 |" in result.output and "Gilda (2025), Table 1" in result.output
    for name in ("one_to_one.png", "calibration.png"):
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600


def test_evaluate_options(simulated, tmp_path, cached_model):
    out = tmp_path / "subset"
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(DEFAULT_MODEL_PATH),
                                      "--data", str(simulated), "-o", str(out), "--rows", "2:5",
                                      "--beam", "A", "--truth", "true", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    table = QTable.read(out / "report.ecsv")
    assert set(table["source"]) == {"A", "conflated"} and (table["n"] == 3).all()
    assert table.meta["rows"] == "2:5" and table.meta["truth"] == "true"
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(simulated), "-o", str(out),
                                      "--rows", "two"])
    assert result.exit_code == 2 and "expected START:STOP" in result.output
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(simulated), "-o", str(out),
                                      "--rows", "50:"])
    assert result.exit_code == 2 and "selects no row" in result.output


def test_evaluate_errors_name_the_problem(loaded_model, tmp_path, cached_model, capsys):
    grid_a = loaded_model.wavelength("A")
    shifted = write_dataset(tmp_path / "shifted", {"A": grid_a + 0.05 * u.AA}, 2)
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(shifted), "-o",
                                      str(tmp_path / "r1")])
    assert result.exit_code == 1
    assert "the data set's beam A grid (4301 px, 4850.050-5280.050 Å) does not match the " \
           "model's (4301 px, 4850.000-5280.000 Å" in result.output
    only_a = write_dataset(tmp_path / "only_a", {"A": grid_a}, 2)
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(only_a), "--beam", "B", "-o",
                                      str(tmp_path / "r2")])
    assert result.exit_code == 1 and "the data set has no beam 'B'" in result.output
    empty = write_dataset(tmp_path / "empty", {"A": grid_a}, 0)
    assert main(["evaluate", "--data", str(empty), "-o", str(tmp_path / "r3")]) == 1
    assert "is empty (0 samples" in capsys.readouterr().err
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r3").exists()


def test_embed_writes_a_deterministic_png(simulated, tmp_path, cached_model):
    args = ["embed", "--data", str(simulated), "--perplexity", "2", "--seed", "3"]
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    result = CliRunner().invoke(cli, args + ["-o", str(first)])
    assert result.exit_code == 0, result.output
    assert "embedded 6 spectra of beam A" in result.output
    assert CliRunner().invoke(cli, args + ["-o", str(second)]).exit_code == 0
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(matplotlib.image.imread(first), matplotlib.image.imread(second))
    stored = tmp_path / "stored.png"
    result = CliRunner().invoke(cli, ["embed", "--stored", "--beam", "B", "--head", "feh",
                                      "--n", "40", "--perplexity", "5", "-o", str(stored)])
    assert result.exit_code == 0, result.output
    assert "panels: feh/teff, feh/logg, feh" in result.output and stored.is_file()


def test_embed_errors(simulated, tmp_path, cached_model):
    out = str(tmp_path / "x.png")
    result = CliRunner().invoke(cli, ["embed", "-o", out])
    assert result.exit_code == 2 and "give --data DATASET" in result.output
    result = CliRunner().invoke(cli, ["embed", "--stored", "--data", str(simulated), "-o", out])
    assert result.exit_code == 2 and "not both" in result.output
    result = CliRunner().invoke(cli, ["embed", "--data", str(simulated), "-o", out])
    assert result.exit_code == 1
    assert "perplexity 30 must be smaller than the number of spectra embedded (6)" in \
        result.output
    result = CliRunner().invoke(cli, ["embed", "--data", str(simulated), "--head", "mass",
                                      "--perplexity", "2", "-o", out])
    assert result.exit_code == 1 and "no head 'mass'" in result.output
    assert not (tmp_path / "x.png").exists()
