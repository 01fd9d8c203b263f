"""``remap fit``: a folder of mixed good and bad files, output formats, atomic output, Dask."""

import contextlib
import io
import json
import os

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from remap.cli.app import main
from remap.testing import write_mixed_catalogue

GOOD = ["a_star.fits", "b_star.ecsv", "c_beamA.fits"]
BAD = {"d_corrupt.fits": "truncated", "e_empty.fits": "empty (0 bytes)",
       "f_notes.txt": "reader failed",
       "g_velocity.ecsv": "SpectrumError: spectrum: the spectral axis is a velocity",
       "h_red.fits": "NoCoverage"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Good files (noisy copies of the bundled example) and bad ones, in one folder."""
    return write_mixed_catalogue(tmp_path_factory.mktemp("cli-fit") / "spectra",
                                 two_beam=GOOD[:2], beam_a=GOOD[2], corrupt="d_corrupt.fits",
                                 empty="e_empty.fits", text="f_notes.txt",
                                 velocity="g_velocity.ecsv", no_overlap="h_red.fits", seed=7)


@pytest.fixture(scope="module")
def folder_run(folder, tmp_path_factory):
    """``remap fit FOLDER -o results.ecsv --plot DIR`` run once for the module."""
    out = tmp_path_factory.mktemp("cli-fit-out")
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        code = main(["fit", str(folder), "-o", str(out / "results.ecsv"), "--plot",
                     str(out / "plots"), "--batch-size", "2", "--no-progress"])
    return code, std.getvalue(), err.getvalue(), out


def test_folder_of_mixed_files_gives_one_row_per_file(folder, folder_run):
    code, stdout, stderr, out = folder_run
    assert code == 1  # some files failed; the table is written all the same
    table = QTable.read(out / "results.ecsv")
    names = sorted(GOOD + list(BAD))
    assert [os.path.basename(f) for f in table["file"]] == names
    rows = {os.path.basename(r["file"]): r for r in table}
    for name in GOOD:
        assert rows[name]["status"] in ("ok", "flagged"), rows[name]["error"]
        assert np.isfinite(rows[name]["teff"].value) and np.isfinite(rows[name]["feh_std"])
    assert "MISSING_BEAM" in rows["c_beamA.fits"]["flag_names"]
    for name, match in BAD.items():
        assert rows[name]["status"] == "error"
        assert match in rows[name]["error"]
        assert np.isnan(rows[name]["logg"].value)
    assert table["teff"].unit == u.K
    assert f"{len(names)} file(s):" in stdout and f"{len(BAD)} error(s)" in stdout
    errors = [line for line in stderr.splitlines() if line.startswith("remap fit: error:")]
    assert len(errors) == len(BAD)
    assert any("e_empty.fits" in line and "empty" in line for line in errors)


def test_plots_are_written_for_fitted_files_only(folder_run):
    out = folder_run[3]
    assert sorted(p.name for p in (out / "plots").iterdir()) == \
        ["a_star.png", "b_star.png", "c_beamA.png"]
    assert all(p.stat().st_size > 1000 for p in (out / "plots").iterdir())


def test_no_temporary_files_left(folder_run):
    out = folder_run[3]
    assert sorted(p.name for p in out.iterdir()) == ["plots", "results.ecsv"]


def test_fits_output_round_trips(folder, tmp_path, capsys):
    files = [str(folder / GOOD[0]), str(folder / "e_empty.fits")]
    code = main(["fit", *files, "-o", str(tmp_path / "r.fits"), "--no-progress"])
    assert code == 1
    table = QTable.read(tmp_path / "r.fits")
    assert list(table["status"]) in (["ok", "error"], ["flagged", "error"])
    assert table["teff"].unit == u.K and table["logg"].unit == u.dex
    edges = json.loads(table.meta["EDGES"])
    assert set(edges) == {"teff", "logg", "feh"} and len(edges["teff"]) > 2
    assert table.meta["NERROR"] == 1


def test_all_good_files_exit_zero(folder, tmp_path, capsys):
    code = main(["fit", str(folder / GOOD[0]), "-o", str(tmp_path / "r.ecsv"),
                 "--no-progress"])
    assert code == 0
    assert "1 file(s): " in capsys.readouterr().out


def test_failed_write_leaves_the_old_output(folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.ecsv"
    out.write_text("previous results\n")

    def broken_write(self, path, **kwargs):
        with open(path, "w") as fh:
            fh.write("half a table")
        raise OSError("No space left on device")

    monkeypatch.setattr(QTable, "write", broken_write)
    code = main(["fit", str(folder / GOOD[0]), "-o", str(out), "--no-progress"])
    assert code == 1
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.ecsv"]


@pytest.mark.parametrize("args, message", [
    (["-o", "r.csv"], "cannot tell the table format"),
    (["-o", "r.ecsv", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
])
def test_usage_errors(folder, tmp_path, capsys, args, message):
    args = [a if not a.startswith("r.") else str(tmp_path / a) for a in args]
    code = main(["fit", str(folder / GOOD[0]), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_empty_directory_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "none").mkdir()
    code = main(["fit", str(tmp_path / "none"), "-o", str(tmp_path / "r.ecsv")])
    assert code == 2
    assert "no input files" in capsys.readouterr().err


@pytest.mark.slow
def test_workers_and_parts_give_the_same_table_and_resume(folder, folder_run, tmp_path,
                                                          capsys):
    """--workers 2 --parts DIR: a local 2-process Dask cluster, then a resumed re-run."""
    reference = QTable.read(folder_run[3] / "results.ecsv")
    args = ["fit", str(folder), "-o", str(tmp_path / "dask.ecsv"), "--workers", "2",
            "--parts", str(tmp_path / "parts"), "--partition-size", "3", "--no-progress"]
    assert main(args) == 1
    table = QTable.read(tmp_path / "dask.ecsv")
    assert list(table["file"]) == list(reference["file"])
    assert list(table["status"]) == list(reference["status"])
    assert list(table["error"]) == list(reference["error"])
    np.testing.assert_allclose(table["teff"].value, reference["teff"].value, rtol=1e-6)
    parts = sorted((tmp_path / "parts").iterdir())
    assert len(parts) == 3
    stamps = [p.stat().st_mtime_ns for p in parts]
    capsys.readouterr()
    assert main(args) == 1
    assert "3 finished part(s) reused" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "parts").iterdir())] == stamps
