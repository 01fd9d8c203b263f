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
    # the (empty, hidden) lock file of the output stays; see remap._util.fs.output_lock
    assert sorted(p.name for p in out.iterdir()) == [".results.ecsv.lock", "plots",
                                                     "results.ecsv"]
    assert (out / ".results.ecsv.lock").stat().st_size == 0


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
    code = main(["fit", str(folder / GOOD[0]), "-o", str(out), "--no-progress", "--overwrite"])
    assert code == 1
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.ecsv.lock", "r.ecsv"]


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
    assert main(args + ["--overwrite"]) == 1
    assert "3 finished part(s) reused" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "parts").iterdir())] == stamps


# ------------------------------------------------------------------------ output safety
def test_output_that_is_an_input_is_refused(folder, tmp_path, capsys):
    """``remap fit s.fits -o s.fits`` (also through a link, also with --overwrite)."""
    star = tmp_path / "s.fits"
    star.write_bytes((folder / GOOD[0]).read_bytes())
    before = star.read_bytes()
    link = tmp_path / "link.fits"
    link.symlink_to(star)
    for out, extra in [(star, []), (star, ["--overwrite"]), (link, ["--overwrite"])]:
        assert main(["fit", str(star), "-o", str(out), "--no-progress", *extra]) == 1
        err = capsys.readouterr().err
        assert f"-o/--output {out} is also an input" in err, err
    assert main(["fit", str(tmp_path), "-o", str(star), "--no-progress"]) == 1
    assert "is also an input" in capsys.readouterr().err
    assert star.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.fits", "s.fits"]


def test_existing_output_is_replaced_only_with_overwrite(folder, tmp_path, capsys):
    out = tmp_path / "r.ecsv"
    out.write_text("results of last week\n")
    assert main(["fit", str(folder / GOOD[0]), "-o", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"-o/--output {out} exists; remove it or pass --overwrite" in err
    assert out.read_text() == "results of last week\n"
    assert main(["fit", str(folder / GOOD[0]), "-o", str(out), "--no-progress",
                 "--overwrite"]) == 0
    assert QTable.read(out)["status"][0] in ("ok", "flagged")


def test_a_second_run_on_a_locked_output_fails_at_once(folder, tmp_path, capsys):
    """Another process holds the output's lock: this run fails before fitting anything."""
    import subprocess
    import sys
    import time

    out = tmp_path / "r.ecsv"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from remap._util.fs import output_lock\n"
         "with output_lock(sys.argv[1]):\n"
         "    print('held', flush=True)\n"
         "    time.sleep(120)\n", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        code = main(["fit", str(folder / GOOD[0]), "-o", str(out), "--no-progress"])
        elapsed = time.perf_counter() - start
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert code == 1
    err = capsys.readouterr().err
    assert f"{out} is being written by another remap run" in err
    assert str(tmp_path / ".r.ecsv.lock") in err
    assert elapsed < 5.0  # refused before the model is loaded or any file read
    assert not out.exists()


def test_outputs_get_the_users_umask(folder, tmp_path):
    """Beam files and result tables: 0o666 & ~umask, not mkstemp's 0o600."""
    from remap.examples import load_example
    from remap.spectra.io import write_beams

    old = os.umask(0o002)
    try:
        write_beams(tmp_path / "b.fits", load_example(), survey="marvels", medium="air")
        assert main(["fit", str(tmp_path / "b.fits"), "-o", str(tmp_path / "r.ecsv"),
                     "--no-progress"]) == 0
        os.umask(0o027)
        write_beams(tmp_path / "c.ecsv", {"A": load_example()["A"]}, medium="air")
    finally:
        os.umask(old)
    assert (tmp_path / "b.fits").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "r.ecsv").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "c.ecsv").stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------- real layouts, end to end
def _one_d(beams):
    """The example star as one 1-D spectrum over both beams."""
    a, b = beams["A"], beams["B"]
    wave = np.concatenate([a.spectral_axis.to_value(u.AA), b.spectral_axis.to_value(u.AA)[1:]])
    flux = np.concatenate([a.flux.value, b.flux.value[1:]])
    sigma = np.concatenate([a.uncertainty.array, b.uncertainty.array[1:]])
    return wave, flux, sigma


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The bundled example star written as a MIKE-like IRAF file, a normalized tabular-fits
    file, a CSV with inverse variances and a 3-order echelle file; and the remap-beam file."""
    from astropy.io import fits
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    from remap.examples import load_example
    from remap.spectra.io import write_beams

    d = tmp_path_factory.mktemp("layouts")
    beams = load_example()
    write_beams(d / "a_beams.fits", beams, survey="marvels", medium="air")
    wave, flux, sigma = _one_d(beams)
    scale = 1e3 / np.median(flux)
    header = fits.Header({"CRVAL1": wave[0], "CDELT1": 0.1, "CRPIX1": 1.0,
                          "CTYPE1": "LINEAR", "BUNIT": "DU/PIXEL", "AIRORVAC": "air"})
    fits.HDUList([fits.PrimaryHDU(flux * scale, header),
                  fits.ImageHDU(sigma * scale, name="SIGMA")]).writeto(d / "b_mike.fits")
    Spectrum(flux=flux * scale * u.one, spectral_axis=wave * u.AA,
             uncertainty=StdDevUncertainty(sigma * scale)).write(d / "c_tab.fits",
                                                                 format="tabular-fits")
    QTable({"Wavelength": wave, "Flux": flux * scale, "IVAR": (sigma * scale) ** -2}).write(
        d / "d_table.csv")
    # three orders of 400 Å overlapping by 100 Å, each under a parabolic blaze
    starts = [4850.0, 5150.0, 5450.0]
    npix = 4000
    orders_w = np.array([s + 0.1 * np.arange(npix) for s in starts])
    x = np.linspace(-1, 1, npix)
    blaze = 1 - 0.5 * x ** 2
    orders_f = np.array([np.interp(w, wave, flux * scale, right=np.nan) * blaze
                         for w in orders_w])
    orders_s = np.array([np.interp(w, wave, sigma * scale, right=np.nan) * blaze
                         for w in orders_w])
    hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(orders_f, name="FLUX"),
                         fits.ImageHDU(orders_w, name="WAVE"),
                         fits.ImageHDU(orders_s, name="ERR")])
    hdus[0].header["AIRORVAC"] = "air"
    hdus.writeto(d / "e_echelle.fits")
    return d


def test_fit_reads_every_layout_end_to_end(layouts, tmp_path, capsys):
    out = tmp_path / "layouts.ecsv"
    code = main(["fit", str(layouts), "-o", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 spectra declare no wavelength medium" in captured.err  # c_tab, d_table
    rows = {os.path.basename(r["file"]): r for r in QTable.read(out)}
    assert sorted(rows) == ["a_beams.fits", "b_mike.fits", "c_tab.fits", "d_table.csv",
                            "e_echelle.fits"]
    ref = rows["a_beams.fits"]
    for name, row in rows.items():
        assert row["status"] in ("ok", "flagged"), (name, row["error"])
        assert row["beams"] == "A,B" or set(str(row["beams"]).split(",")) == {"A", "B"}
    # the same pixels in other files: the same answer (flux scale and unit do not matter)
    for name in ("b_mike.fits", "c_tab.fits", "d_table.csv"):
        assert abs(rows[name]["teff"].value - ref["teff"].value) < 5, name
        assert abs(rows[name]["feh"].value - ref["feh"].value) < 0.01, name
    # orders normalized, resampled and merged: close, not identical
    assert abs(rows["e_echelle.fits"]["teff"].value - ref["teff"].value) < 100
    assert abs(rows["e_echelle.fits"]["feh"].value - ref["feh"].value) < 0.1


def test_fit_medium_option(layouts, tmp_path, capsys):
    """--medium vacuum on air wavelengths moves every line by 1.4 Å: another answer."""
    table_file = str(layouts / "d_table.csv")
    assert main(["fit", table_file, "-o", str(tmp_path / "air.ecsv"), "--no-progress",
                 "--medium", "air"]) == 0
    assert "wavelength medium" not in capsys.readouterr().err
    assert main(["fit", table_file, "-o", str(tmp_path / "vac.ecsv"), "--no-progress",
                 "--medium", "vacuum"]) == 0
    air, vac = QTable.read(tmp_path / "air.ecsv"), QTable.read(tmp_path / "vac.ecsv")
    if "rv" in air.colnames:
        # the RV step takes the shift for a velocity: c (n - 1) = 83 km/s at 5300 Å
        shift = (vac["rv"][0] - air["rv"][0]).to_value(u.km / u.s)
        assert 70 < abs(shift) < 95, shift
    else:
        assert abs(air["teff"][0].value - vac["teff"][0].value) > 1.0 or \
            abs(air["feh"][0].value - vac["feh"][0].value) > 0.01
    assert main(["fit", table_file, "-o", str(tmp_path / "x.ecsv"), "--medium",
                 "glass"]) == 2
    assert "'glass' is not one of 'air', 'vacuum'" in capsys.readouterr().err


def test_fit_rv_and_resolution_options(layouts, tmp_path, capsys):
    """--rv gives a known velocity (reported as given), --resolution a known R."""
    table_file = str(layouts / "d_table.csv")
    assert main(["fit", table_file, "-o", str(tmp_path / "m.ecsv"), "--no-progress",
                 "--medium", "air"]) == 0
    assert main(["fit", table_file, "-o", str(tmp_path / "g.ecsv"), "--no-progress",
                 "--medium", "air", "--rv", "25", "--resolution", "survey"]) == 0
    measured, given = QTable.read(tmp_path / "m.ecsv"), QTable.read(tmp_path / "g.ecsv")
    assert abs(measured["rv"][0].to_value(u.km / u.s)) < 2      # the star is at rest
    assert given["rv"][0].to_value(u.km / u.s) == pytest.approx(25.0)
    # a 25 km/s (0.44 Å) wrong shift moves the labels
    assert abs(given["teff"][0].value - measured["teff"][0].value) > 20 or \
        abs(given["feh"][0].value - measured["feh"][0].value) > 0.02
    capsys.readouterr()
    assert main(["fit", table_file, "-o", str(tmp_path / "x.ecsv"), "--resolution",
                 "sharp"]) == 2
    assert "positive resolving power or 'survey'" in capsys.readouterr().err
