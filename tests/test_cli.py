"""The ``remap`` command line: --version, plugins, normalize; and the bundled example."""

import importlib.metadata
import importlib.resources
import importlib.util
import os
import shutil

import astropy.units as u
import matplotlib.image
import numpy as np
import pytest
from astropy.table import QTable
from click.testing import CliRunner
from specutils import Spectrum

import remap
from remap.cli import _atomic_write, _unique_stems, cli, main
from remap.examples import EXAMPLES, PROVENANCE, example_path, load_example
from remap.io import read_beams, write_beams

BEAM_RANGES = {"A": (4850.0, 5280.0), "B": (5280.0, 5750.0)}


def _load_make_example():
    path = importlib.resources.files("remap") / "data" / "examples" / "make_example.py"
    spec = importlib.util.spec_from_file_location("remap_make_example", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def truth():
    """The noiseless continuum and normalized spectrum of the example, from its script."""
    make_example = _load_make_example()
    data = importlib.resources.files("remap") / "data" / "linelist"
    wave, flux, sigma, truth = make_example.synthesize(
        data / "linelist_4800_5800.csv", data / "elements.csv",
        seed=PROVENANCE["marvels-gdwarf"]["seed"])
    return {"wavelength": wave, "flux": flux, "sigma": sigma, **truth,
            "spikes": make_example.SPIKES}


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """``remap normalize --example`` run once for the whole module."""
    outdir = tmp_path_factory.mktemp("example-out")
    runner = CliRunner()
    result = runner.invoke(cli, ["normalize", "--example", "-o", str(outdir)])
    return result, outdir


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"remap, version {remap.__version__}"


def test_help_lists_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "normalize" in result.output and "plugins" in result.output


def test_plugins_lists_builtins(fresh_plugins):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in ("marvels", "algorithm1", "teff"):
        line = next(ln for ln in lines if ln.strip().startswith(name + " "))
        assert f"remap {importlib.metadata.version('remap')}" in line


# --- the bundled example -------------------------------------------------------------------


def test_example_file_is_what_the_script_makes(truth):
    beams = load_example()
    assert list(beams) == ["A", "B"]
    wave = np.concatenate([b.spectral_axis.to_value(u.AA) for b in beams.values()])
    flux = np.concatenate([b.flux.value for b in beams.values()])
    # both beams hold the pixel at 5280 Å; the script's grid holds it once
    keep = np.r_[True, np.diff(wave) > 0]
    np.testing.assert_allclose(wave[keep], truth["wavelength"].to_value(u.AA), rtol=0, atol=1e-9)
    np.testing.assert_allclose(flux[keep], truth["flux"].value, rtol=1e-12)
    assert beams["A"].flux.unit == truth["flux"].unit
    assert beams["B"].meta["simulated"] is True
    assert example_path().stat().st_size < 1_000_000


def test_example_script_is_deterministic(truth):
    make_example = _load_make_example()
    data = importlib.resources.files("remap") / "data" / "linelist"
    _, flux_other, _, _ = make_example.synthesize(
        data / "linelist_4800_5800.csv", data / "elements.csv", seed=7)
    assert not np.allclose(flux_other.value, truth["flux"].value, rtol=1e-3, atol=0)
    # noise at the promised signal-to-noise ratio, around the noiseless spectrum
    clean = truth["continuum"] * truth["normalized"]
    resid = (truth["flux"].value - clean) / truth["sigma"].value
    spike_free = np.abs(resid) < 10
    assert spike_free.sum() >= resid.size - 8
    assert np.std(resid[spike_free]) == pytest.approx(1.0, abs=0.05)
    snr = np.median(truth["continuum"] / truth["sigma"].value)
    assert snr == pytest.approx(100, rel=0.05)


def test_unknown_example_name():
    with pytest.raises(KeyError, match="known examples: marvels-gdwarf"):
        example_path("nope")
    assert set(EXAMPLES) == set(PROVENANCE)


# --- remap normalize ---------------------------------------------------------------------


def test_normalize_example_writes_table_and_plot(example_run, truth):
    result, outdir = example_run
    assert result.exit_code == 0, result.output
    ecsv = outdir / "marvels_gdwarf_example_normalized.ecsv"
    png = outdir / "marvels_gdwarf_example_normalized.png"
    assert sorted(p.name for p in outdir.iterdir()) == sorted([ecsv.name, png.name])

    table = QTable.read(ecsv, format="ascii.ecsv")
    assert table.colnames == ["wavelength", "beam", "flux", "continuum", "normalized_flux",
                              "uncertainty", "normalized_uncertainty", "mask", "spike"]
    assert table["wavelength"].unit == u.AA
    assert table["flux"].unit == table["continuum"].unit == truth["flux"].unit
    assert table.meta["survey"] == "marvels"
    assert table.meta["continuum_fitter"] == "algorithm1"
    assert table.meta["continuum_config"]["mode"] == "fast"
    assert table.meta["source"] == "marvels_gdwarf_example.fits"
    for beam, (lo, hi) in BEAM_RANGES.items():
        rows = table[table["beam"] == beam]
        wave = rows["wavelength"].to_value(u.AA)
        assert wave[0] == pytest.approx(lo) and wave[-1] == pytest.approx(hi)
        assert len(rows) == round((hi - lo) / 0.1) + 1
        ratio = (rows["flux"] / rows["continuum"]).to_value(u.one)
        np.testing.assert_allclose(rows["normalized_flux"], ratio, rtol=1e-9)

        # the fitted continuum follows the true one, and the normalized flux is ~1
        # where the star has no lines
        true_cont = np.interp(wave, truth["wavelength"].to_value(u.AA), truth["continuum"])
        true_norm = np.interp(wave, truth["wavelength"].to_value(u.AA), truth["normalized"])
        line_free = (true_norm > 0.995) & ~rows["mask"]
        cont = rows["continuum"].value
        assert np.median(np.abs(cont / true_cont - 1)) < 0.02
        assert np.median(rows["normalized_flux"][line_free]) == pytest.approx(1.0, abs=0.02)
        assert np.all(np.isfinite(rows["normalized_flux"]))

    # the three injected spikes are found, and nothing far from them
    spike_wave = table["wavelength"][table["spike"]].to_value(u.AA)
    centres = np.array([c for c, _, _ in truth["spikes"]])
    assert all(np.any(np.abs(spike_wave - c) < 0.6) for c in centres)
    assert np.all(np.min(np.abs(spike_wave[:, None] - centres[None, :]), axis=1) < 1.0)
    assert np.all(table["mask"][table["spike"]])

    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[1] > image.shape[0] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas

    assert "marvels_gdwarf_example.fits  A" in result.output
    assert "marvels_gdwarf_example.fits  B" in result.output
    assert "1 file(s) normalized, 0 failed" in result.output


@pytest.fixture(scope="module")
def small_beam_file(tmp_path_factory):
    """A one-beam (B) remap-beam file cut from the example: quick to normalize."""
    path = tmp_path_factory.mktemp("small") / "star_b.fits"
    beams = read_beams(str(example_path()))
    write_beams(path, {"B": beams["B"]})
    return path


def test_bad_file_does_not_stop_the_others(small_beam_file, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"SIMPLE  = T this is not a FITS file" + bytes(range(256)) * 4)
    red = tmp_path / "red_star.fits"
    wave = np.linspace(6000, 6500, 500) * u.AA
    Spectrum(flux=np.ones(500) * u.Jy, spectral_axis=wave).write(red, format="tabular-fits")
    missing = tmp_path / "missing.fits"
    outdir = tmp_path / "out"

    code = main(["normalize", str(corrupt), str(small_beam_file), str(red), str(missing),
                 "-o", str(outdir)])
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in outdir.iterdir()) == ["star_b_normalized.ecsv",
                                                        "star_b_normalized.png"]
    assert "1 file(s) normalized, 3 failed" in captured.out
    errors = [ln for ln in captured.err.splitlines() if "error:" in ln]
    assert len(errors) == 3
    assert any(str(corrupt) in ln and "format" in ln.lower() for ln in errors)
    assert any(str(red) in ln and "NoOverlapError" in ln and "overlaps no beam" in ln
               for ln in errors)
    assert any(str(missing) in ln and "no such file" in ln for ln in errors)
    table = QTable.read(outdir / "star_b_normalized.ecsv", format="ascii.ecsv")
    assert set(table["beam"]) == {"B"}


def test_normalize_options(small_beam_file, tmp_path, capsys):
    outdir = tmp_path / "out"
    code = main(["normalize", str(small_beam_file), "--format", "remap-beam", "--no-spikes",
                 "--fitter", "chebyshev", "-o", str(outdir)])
    captured = capsys.readouterr()
    assert code in (0, None), captured.err
    table = QTable.read(outdir / "star_b_normalized.ecsv", format="ascii.ecsv")
    assert table.meta["continuum_fitter"] == "chebyshev"
    assert table.meta["spikes_removed"] is False
    assert not table["spike"].any()
    # the 5-pixel spike at 5611 Å was left in
    near = np.abs(table["wavelength"].to_value(u.AA) - 5611.2) < 0.3
    assert np.all(table["normalized_flux"][near] > 1.1)
    line = next(ln for ln in captured.out.splitlines() if ln.startswith("star_b.fits"))
    assert line.split()[1:4] == ["B", "4701", "-"]


def test_normalize_usage_errors(tmp_path, fresh_plugins):
    runner = CliRunner()
    result = runner.invoke(cli, ["normalize", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "give at least one FILE, or --example" in result.output

    result = runner.invoke(cli, ["normalize", "--example", "--survey", "hst", "-o",
                                 str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown survey 'hst'" in result.output and "marvels" in result.output

    result = runner.invoke(cli, ["normalize", "--example", "--fitter", "nope", "-o",
                                 str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown continuum 'nope'" in result.output and "algorithm1" in result.output

    result = runner.invoke(cli, ["normalize", "--example", "--mode", "slow", "-o",
                                 str(tmp_path)])
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []  # nothing written on a usage error


def test_output_names_are_unique(tmp_path):
    paths = [tmp_path / "a" / "star.fits", tmp_path / "b" / "star.fits",
             tmp_path / "star.ecsv", tmp_path / "other.fits"]
    assert _unique_stems(paths) == ["star", "star-2", "star-3", "other"]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "table.ecsv"
    target.write_text("old content")

    def failing(tmp):
        with open(tmp, "w") as fh:
            fh.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _atomic_write(target, failing)
    assert target.read_text() == "old content"
    assert os.listdir(tmp_path) == ["table.ecsv"]

    _atomic_write(target, lambda tmp: shutil.copyfile(__file__, tmp))
    assert target.read_text().startswith('"""The ``remap`` command line')
    assert os.listdir(tmp_path) == ["table.ecsv"]
