"""The ``remap`` command line: --version, plugins, normalize; and the bundled example."""

import importlib.metadata
import importlib.resources
import importlib.util
import json
import os
import shutil
from pathlib import Path

import astropy.units as u
import matplotlib.image
import numpy as np
import pytest
from astropy.table import QTable
from click.testing import CliRunner
from specutils import Spectrum

import remap
from remap.cli.app import _atomic_write, _unique_stems, cli, main
from remap.examples import EXAMPLES, PROVENANCE, example_path, load_example
from remap.spectra.io import read_beams, write_beams

BEAM_RANGES = {"A": (4850.0, 5280.0), "B": (5280.0, 5750.0)}


def _load_make_example():
    path = importlib.resources.files("remap") / "data" / "examples" / "make_example.py"
    spec = importlib.util.spec_from_file_location("remap_make_example", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_example():
    return _load_make_example()


@pytest.fixture(scope="module")
def truth(make_example):
    """The example's beams, with their noiseless continuum and normalized flux (its script)."""
    beams, truth = make_example.synthesize(seed=PROVENANCE["marvels-gdwarf"]["seed"])
    return {"beams": beams, **truth, "spikes": make_example.SPIKES}


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


def test_example_uses_the_default_models_library_physics(make_example):
    # the example is one more star of the default model's simulated survey
    manifest = json.loads((Path(remap.__file__).parent / "data" / "models" / "default"
                           / "manifest.json").read_text())
    assert manifest["library"]["options"]["physics"] == make_example.PHYSICS


def test_example_file_is_what_the_script_makes(truth):
    beams = load_example()
    assert list(beams) == ["A", "B"]
    for beam, (lo, hi) in BEAM_RANGES.items():
        made = truth["beams"][beam]
        wave = beams[beam].spectral_axis.to_value(u.AA)
        assert wave[0] == pytest.approx(lo) and wave[-1] == pytest.approx(hi)
        np.testing.assert_allclose(wave, made.spectral_axis.to_value(u.AA), rtol=0, atol=1e-9)
        # The file was written on another machine.  The linelist library evaluates its
        # opacity exponentials and depth sums in float32 (eps 1.2e-7) through BLAS
        # matrix products, whose summation order depends on the CPU's kernels (AVX2 vs
        # AVX-512 blocking); the library documents ~1e-6 relative error in the flux from
        # that, and a regenerated file differed by 1.5e-7 on one CPU.  rtol=1e-5 allows
        # ten times the documented float32 error and is still 1e-3 of the SNR-100 noise.
        np.testing.assert_allclose(beams[beam].flux.value, made.flux.value, rtol=1e-5)
        np.testing.assert_allclose(beams[beam].uncertainty.array, made.uncertainty.array,
                                   rtol=1e-5)
        assert beams[beam].flux.unit == made.flux.unit == u.Unit("erg / (s cm2 AA)")
        assert not np.any(beams[beam].mask)
        # a realistic flux at the telescope: about 1e-13 erg / (s cm2 A) in the continuum
        assert 5e-14 < np.median(truth[beam]["continuum"]) < 2e-13
    assert beams["B"].meta["simulated"] is True
    assert example_path().stat().st_size < 1_000_000


def test_example_script_is_deterministic(truth, make_example):
    again, _ = make_example.synthesize(seed=PROVENANCE["marvels-gdwarf"]["seed"])
    other, _ = make_example.synthesize(seed=7)
    n_spiked = 0
    for beam, made in truth["beams"].items():
        np.testing.assert_array_equal(again[beam].flux.value, made.flux.value)
        assert not np.allclose(other[beam].flux.value, made.flux.value, rtol=1e-3, atol=0)
        # noise at the promised signal-to-noise ratio, around the noiseless spectrum
        cont, norm = truth[beam]["continuum"], truth[beam]["normalized"]
        sigma = made.uncertainty.array
        resid = (made.flux.value - cont * norm) / sigma
        spike_free = np.abs(resid) < 10
        n_spiked += resid.size - spike_free.sum()
        assert np.std(resid[spike_free]) == pytest.approx(1.0, abs=0.05)
        assert np.median(cont / sigma) == pytest.approx(100, rel=0.05)
        # a G dwarf: strong lines (Mg b, H beta: the Sun's Mg b cores reach ~0.1 at
        # UVES resolution, ~0.25 at R 11,000), and line-free pixels at the continuum
        assert 0.1 < norm.min() < 0.7 and norm.max() == pytest.approx(1.0, abs=1e-3)
        assert np.mean(norm > 0.995) > 0.05
    assert n_spiked == sum(width for _, width, _ in truth["spikes"])


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
    # and the lock of the output directory (hidden, empty)
    assert sorted(p.name for p in outdir.iterdir()) == sorted([ecsv.name, png.name,
                                                               ".remap-normalize.lock"])

    table = QTable.read(ecsv, format="ascii.ecsv")
    assert table.colnames == ["wavelength", "beam", "flux", "continuum", "normalized_flux",
                              "uncertainty", "normalized_uncertainty", "mask", "spike"]
    assert table["wavelength"].unit == u.AA
    assert table["flux"].unit == table["continuum"].unit == truth["beams"]["A"].flux.unit
    assert table.meta["survey"] == "marvels"
    assert table.meta["continuum_fitter"] == "algorithm1"
    assert table.meta["continuum_config"]["mode"] == "fast"
    assert table.meta["source"] == "marvels_gdwarf_example.fits"
    centres = np.array([c for c, _, _ in truth["spikes"]])
    n_false = 0
    for beam, (lo, hi) in BEAM_RANGES.items():
        rows = table[table["beam"] == beam]
        wave = rows["wavelength"].to_value(u.AA)
        assert wave[0] == pytest.approx(lo) and wave[-1] == pytest.approx(hi)
        assert len(rows) == round((hi - lo) / 0.1) + 1
        ratio = (rows["flux"] / rows["continuum"]).to_value(u.one)
        np.testing.assert_allclose(rows["normalized_flux"], ratio, rtol=1e-9)

        # the fitted continuum follows the true one, and the normalized flux is ~1
        # where the star has no lines
        true_cont, true_norm = truth[beam]["continuum"], truth[beam]["normalized"]
        line_free = (true_norm > 0.995) & ~rows["mask"]
        cont = rows["continuum"].value
        assert np.median(np.abs(cont / true_cont - 1)) < 0.02
        assert np.median(rows["normalized_flux"][line_free]) == pytest.approx(1.0, abs=0.02)
        assert np.all(np.isfinite(rows["normalized_flux"]))

        # nothing flagged far from the injected spikes but, at most, narrow continuum
        # windows between dense lines, which the spike finder cannot tell from a spike
        # (in this star those at 4869 and 5017 Å: 9 pixels; 14 allowed)
        far = np.min(np.abs(wave[:, None] - centres[None, :]), axis=1) > 1.0
        false = np.asarray(rows["spike"]) & far
        assert np.all(true_norm[false] > 0.9)   # a near-continuum window (0.94-0.96 here)
        n_false += false.sum()
    assert n_false <= 14

    # the three injected spikes are found
    spike_wave = table["wavelength"][table["spike"]].to_value(u.AA)
    assert all(np.any(np.abs(spike_wave - c) < 0.6) for c in centres)
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
    assert sorted(p.name for p in outdir.iterdir() if not p.name.startswith(".")) == \
        ["star_b_normalized.ecsv", "star_b_normalized.png"]
    assert "1 file(s) normalized, 3 failed" in captured.out
    errors = [ln for ln in captured.err.splitlines() if "error:" in ln]
    assert len(errors) == 3
    assert any(str(corrupt) in ln and "damaged FITS file" in ln for ln in errors)
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


def test_normalize_reads_any_layout_and_guards_its_outputs(small_beam_file, tmp_path, capsys):
    """An IRAF-style 1-D file with BUNIT 'DU/PIXEL'; no output replaced unless --overwrite."""
    from astropy.io import fits

    beam = read_beams(str(small_beam_file))["B"]
    wave = beam.spectral_axis.to_value(u.AA)
    header = fits.Header({"CRVAL1": wave[0], "CDELT1": wave[1] - wave[0], "CRPIX1": 1.0,
                          "BUNIT": "DU/PIXEL", "AIRORVAC": "air"})
    mike = tmp_path / "mike.fits"
    fits.PrimaryHDU((beam.flux.value / np.median(beam.flux.value) * 1e3).astype("f4"),
                    header).writeto(mike)
    outdir = tmp_path / "out"
    assert main(["normalize", str(mike), "-o", str(outdir)]) in (0, None)
    table = QTable.read(outdir / "mike_normalized.ecsv", format="ascii.ecsv")
    assert set(table["beam"]) == {"B"} and table["flux"].unit == u.one
    got = table["wavelength"].to_value(u.AA)
    # the last pixel may fall 1e-9 Å beyond the beam's end (CDELT1 as a decimal card)
    assert len(got) >= len(wave) - 1
    np.testing.assert_allclose(got, wave[:len(got)], rtol=0, atol=1e-6)
    capsys.readouterr()

    before = (outdir / "mike_normalized.ecsv").read_bytes()
    assert main(["normalize", str(mike), "-o", str(outdir)]) == 1
    err = capsys.readouterr().err
    assert "mike_normalized.ecsv exists; remove it or pass --overwrite" in err
    assert (outdir / "mike_normalized.ecsv").read_bytes() == before
    assert main(["normalize", str(mike), "-o", str(outdir), "--overwrite"]) in (0, None)

    # an output that is (a link to) an input is refused even with --overwrite
    other = tmp_path / "other"
    other.mkdir()
    (other / "mike_normalized.ecsv").symlink_to(mike)
    assert main(["normalize", str(mike), "-o", str(other), "--overwrite"]) == 1
    assert "is also an input" in capsys.readouterr().err
    assert mike.read_bytes()[:6] == b"SIMPLE"


def test_normalize_warns_once_about_an_assumed_medium(small_beam_file, tmp_path, capsys):
    beam = read_beams(str(small_beam_file))["B"]
    plain = tmp_path / "plain.ecsv"
    QTable({"wave": u.Quantity(beam.spectral_axis), "flux": beam.flux}).write(plain)
    assert main(["normalize", str(plain), "-o", str(tmp_path / "out")]) in (0, None)
    err = capsys.readouterr().err
    assert err.count("declares no wavelength medium") == 1
    assert "assumed air wavelengths" in err
    assert main(["normalize", str(plain), "-o", str(tmp_path / "out2"), "--medium",
                 "air"]) in (0, None)
    assert "wavelength medium" not in capsys.readouterr().err


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
