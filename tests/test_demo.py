"""Tests of ``remap demo`` and the in-memory simulated stars it fits."""

import numpy as np
import pytest
from astropy.table import QTable
from click.testing import CliRunner

from remap.cli.app import cli
from remap.cli.demo import PAPER_TABLE1, format_table, summarize
from remap.datasets import Dataset
from remap.simulate import build_simulated, simulated_stars


def test_simulated_stars_match_build_simulated(tmp_path):
    made = list(simulated_stars("calibration", n=2, seed=3))
    build_simulated(tmp_path / "cal", "calibration", n=2, seed=3, shard_size=2)
    table = Dataset(tmp_path / "cal").labels
    for i, (spectra, lab) in enumerate(made):
        assert set(spectra) == {"A", "B"}
        assert spectra["A"].uncertainty is not None
        for name in ("teff", "logg", "feh"):
            assert float(table[f"{name}_true"][i]) == pytest.approx(lab[name], rel=1e-12)
            assert float(np.asarray(table[name])[i]) == pytest.approx(lab[f"{name}_obs"],
                                                                      rel=1e-12)
        assert float(table["snr"][i]) == pytest.approx(lab["snr"], rel=1e-6)
        assert 4700 <= lab["teff"] <= 6000 and 3.5 <= lab["logg"] <= 4.7
    again = list(simulated_stars("calibration", n=2, seed=3))
    np.testing.assert_array_equal(again[1][0]["B"].flux, made[1][0]["B"].flux)


def test_simulated_stars_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown set"):
        next(simulated_stars("nope"))
    with pytest.raises(ValueError, match="n must be"):
        next(simulated_stars(n=0))


def test_demo_cli_prints_table_and_writes_figures(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--n", "2", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.output
    for label in ("T_eff", "log g", "[Fe/H]", "bias", "scatter", "coverage", "Gilda"):
        assert label in text
    assert "-10 K" in text and "75 K" in text  # the paper's T_eff bias and scatter
    for name in ("one_to_one.png", "pmf_star0.png", "demo_results.ecsv"):
        assert (out / name).stat().st_size > 0
    table = QTable.read(out / "demo_results.ecsv")
    assert len(table) == 2
    assert {"teff", "teff_true", "logg_true", "feh_true", "teff_catalogue",
            "flags"} <= set(table.colnames)
    assert "catalogue labels" in text
    assert np.all(np.abs(table["teff"] - table["teff_true"]).value < 600)
    assert (out / "one_to_one.png").read_bytes()[:4] == b"\x89PNG"


def test_summarize_and_format_table():
    class P:
        def __init__(self, med, lo, hi, label, unit):
            import astropy.units as u
            self.median, self.p16, self.p84 = (np.asarray(v) * u.Unit(unit)
                                               for v in (med, lo, hi))
            self.label, self.unit = label, u.Unit(unit)

    class R:
        parameters = ["teff"]

        def __getitem__(self, name):
            return P([5000, 5100, np.nan], [4900, 5050, np.nan], [5100, 5150, np.nan],
                     "T_eff", "K")

    rows = summarize(R(), {"teff": [5050, 5200, 5000]})
    assert rows[0]["n"] == 2
    assert rows[0]["bias"] == pytest.approx(-75.0)
    assert rows[0]["scatter"] == pytest.approx(25.0)
    assert rows[0]["coverage"] == pytest.approx(0.5)
    text = format_table(rows)
    assert "-75 K" in text and "50%" in text
    assert set(PAPER_TABLE1) == {"teff", "logg", "feh"}
