"""Tests of remap.spectra.io: the remap-beam FITS/ECSV format and its specutils registration."""

import importlib
import os

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import InverseVariance, StdDevUncertainty
from astropy.table import Table
from astropy.tests.helper import assert_quantity_allclose
from specutils import Spectrum, SpectrumList
from specutils.io.registers import identify_spectrum_format

import remap
import remap.spectra.io
from remap.spectra.io import BeamFileError, read_beams, register, write_beams

FLAM = u.erg / u.s / u.cm ** 2 / u.AA


@pytest.fixture(scope="module")
def beams():
    """Two single spectra from the MARVELS split of a seeded spectrum."""
    rng = np.random.default_rng(42)
    wave = 4800 + 0.1 * np.arange(10001)
    flux = (1 + 0.02 * rng.normal(size=wave.size)) * FLAM
    mask = rng.random(wave.size) < 0.02
    spec = Spectrum(flux=flux, spectral_axis=wave * u.AA, mask=mask,
                    uncertainty=StdDevUncertainty(np.full(wave.size, 0.02) * FLAM))
    return remap.get_survey("marvels").split(spec)


def assert_same(a, b):
    assert_quantity_allclose(a.spectral_axis, b.spectral_axis, rtol=0, atol=0 * u.AA)
    assert a.flux.unit == b.flux.unit
    np.testing.assert_array_equal(a.flux.value, b.flux.value)
    np.testing.assert_array_equal(a.mask, b.mask)
    if b.uncertainty is None:
        assert a.uncertainty is None
    else:
        assert isinstance(a.uncertainty, StdDevUncertainty)
        assert_quantity_allclose(a.uncertainty.quantity, b.uncertainty.quantity, rtol=1e-12)


@pytest.mark.parametrize("ext", ["fits", "ecsv"])
def test_write_read_beams_round_trip(tmp_path, beams, ext):
    path = tmp_path / f"star.{ext}"
    assert write_beams(path, beams) == path
    back = read_beams(path)
    assert list(back) == ["A", "B"]
    for name in beams:
        assert_same(back[name], beams[name])
        meta = back[name].meta
        assert meta["beam"] == name and type(meta["beam"]) is str
        assert meta["survey"] == "marvels" and meta["wavelength_medium"] == "air"
        assert meta["coverage"] == pytest.approx(beams[name].meta["coverage"])
        assert meta["file"] == str(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


@pytest.mark.parametrize("ext", ["fits", "ecsv"])
def test_specutils_spectrumlist_and_spectrum(tmp_path, beams, ext):
    path = tmp_path / f"star.{ext}"
    SpectrumList(beams.values()).write(path, format="remap-beam")
    for fmt in ({"format": "remap-beam"}, {}):  # identified without format= too
        both = SpectrumList.read(path, **fmt)
        assert isinstance(both, SpectrumList) and len(both) == 2
        assert [s.meta["beam"] for s in both] == ["A", "B"]
        assert_same(both[1], beams["B"])
    with pytest.raises(BeamFileError, match=r"holds 2 beams \(A, B\); pass beam="):
        Spectrum.read(path, format="remap-beam")
    assert_same(Spectrum.read(path, format="remap-beam", beam="B"), beams["B"])
    with pytest.raises(KeyError, match="no beam 'C'"):
        Spectrum.read(path, format="remap-beam", beam="C")


@pytest.mark.parametrize("ext", ["fits", "ecsv"])
@pytest.mark.parametrize("unit", [FLAM, u.Jy, u.dimensionless_unscaled, u.ct])
def test_single_beam_spectrum_round_trip(tmp_path, ext, unit):
    wave = np.linspace(500.0, 510.0, 101) * u.nm  # the axis unit is kept
    flux = np.linspace(1.0, 2.0, 101) * unit
    spec = Spectrum(flux=flux, spectral_axis=wave, meta={"beam": "A"},
                    uncertainty=InverseVariance(np.full(101, 100.0) / unit ** 2))
    path = tmp_path / f"a.{ext}"
    spec.write(path, format="remap-beam")
    back = Spectrum.read(path)
    assert back.spectral_axis.unit == u.nm and back.flux.unit == unit
    np.testing.assert_array_equal(back.flux.value, flux.value)
    np.testing.assert_allclose(back.uncertainty.array, 0.1)
    assert back.mask is None
    assert back.meta["beam"] == "A" and "survey" not in back.meta
    assert identify_spectrum_format(path) == "remap-beam" or \
        "remap-beam" in identify_spectrum_format(path)


def test_batch_round_trip_fits(tmp_path):
    rng = np.random.default_rng(1)
    wave = 5000 + 0.1 * np.arange(300)
    spec = Spectrum(flux=rng.uniform(1, 2, (3, 300)) * u.Jy, spectral_axis=wave * u.AA,
                    mask=rng.random((3, 300)) < 0.1,
                    uncertainty=StdDevUncertainty(rng.uniform(0.01, 0.02, (3, 300))))
    path = write_beams(tmp_path / "batch.fits", {"A": spec}, medium="vacuum", survey="x")
    back = read_beams(path)["A"]
    assert back.flux.shape == (3, 300)
    assert_same(back, spec)
    assert back.meta["wavelength_medium"] == "vacuum" and back.meta["survey"] == "x"
    with pytest.raises(ValueError, match="several beams holds single spectra"):
        write_beams(tmp_path / "batch.ecsv", {"A": spec, "B": spec})
    assert not (tmp_path / "batch.ecsv").exists()


def test_other_files_are_not_taken(tmp_path):
    spec = Spectrum(flux=np.ones(50) * u.Jy, spectral_axis=(5000 + np.arange(50.0)) * u.AA)
    fits_path = tmp_path / "plain.fits"
    spec.write(fits_path, format="tabular-fits")
    ecsv_path = tmp_path / "plain.ecsv"
    Table({"wavelength": np.arange(5.0) * u.AA, "flux": np.ones(5) * u.Jy}).write(ecsv_path)
    for path in (fits_path, ecsv_path):
        found = identify_spectrum_format(path)
        assert "remap-beam" not in np.atleast_1d(found)
        with pytest.raises(BeamFileError, match=f"{path.name}: not a remap-beam file"):
            read_beams(path)
    assert Spectrum.read(fits_path).flux.shape == (50,)  # specutils' own reader still works
    assert not remap.spectra.io.identify_remap_beam("read", str(tmp_path / "x.txt"))
    assert not remap.spectra.io.identify_remap_beam("read", str(tmp_path / "missing.fits"))


def test_corrupt_and_truncated_files(tmp_path, beams):
    good = write_beams(tmp_path / "good.fits", beams)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(BeamFileError, match="truncated.fits"):
        read_beams(truncated)
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"SIMPLE  = nonsense" + bytes(range(256)) * 20)
    with pytest.raises(BeamFileError, match="garbage.fits: cannot read"):
        read_beams(garbage)
    ecsv = write_beams(tmp_path / "good.ecsv", beams)
    lines = ecsv.read_text().splitlines()
    broken = tmp_path / "broken.ecsv"
    broken.write_text("\n".join(lines[:30] + ["4850.0 oops"] + lines[31:40]) + "\n")
    with pytest.raises(BeamFileError, match="broken.ecsv: cannot read as a remap-beam ECSV"):
        read_beams(broken)
    with pytest.raises(FileNotFoundError, match="missing.fits"):
        read_beams(tmp_path / "missing.fits")
    with pytest.raises(ValueError, match="extension"):
        read_beams(tmp_path / "star.txt")


def test_missing_beam_extension_detected(tmp_path, beams):
    path = write_beams(tmp_path / "s.fits", beams)
    with fits.open(path) as hdul:
        fits.HDUList([hdul[0].copy(), hdul[1].copy()]).writeto(tmp_path / "cut.fits")
    with pytest.raises(BeamFileError, match="announces 2 beams but 1"):
        read_beams(tmp_path / "cut.fits")
    table = Table({"flux": np.ones(5)}, meta={"REMAPFMT": "remap-beam", "BEAM": "A"})
    table.write(tmp_path / "nowave.ecsv")
    with pytest.raises(BeamFileError, match="lacks the column.*wavelength"):
        read_beams(tmp_path / "nowave.ecsv")


def test_overwrite_and_atomic_write(tmp_path, beams, monkeypatch):
    path = write_beams(tmp_path / "s.fits", beams)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_beams(path, beams)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", fail)
    with pytest.raises(BeamFileError, match="s.fits: writing the remap-beam file failed: "
                                            "OSError: disk full"):
        write_beams(path, beams, overwrite=True)
    assert path.read_bytes() == before  # the old file is intact
    with pytest.raises(BeamFileError):
        write_beams(tmp_path / "new.fits", beams)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.fits"]  # no partial/temp file
    monkeypatch.undo()
    write_beams(path, {"A": beams["A"]}, overwrite=True)
    assert list(read_beams(path)) == ["A"]


def test_write_argument_errors(tmp_path, beams):
    with pytest.raises(ValueError, match="non-empty dict"):
        write_beams(tmp_path / "x.fits", {})
    with pytest.raises(ValueError, match="without spaces"):
        write_beams(tmp_path / "x.fits", {"beam A": beams["A"]})
    with pytest.raises(TypeError, match="expected a specutils.Spectrum"):
        write_beams(tmp_path / "x.fits", {"A": np.ones(5)})
    with pytest.raises(ValueError, match="'air' or 'vacuum'"):
        write_beams(tmp_path / "x.fits", beams, medium="glass")
    other = Spectrum(flux=beams["B"].flux, spectral_axis=beams["B"].spectral_axis,
                     meta={"survey": "other"})
    with pytest.raises(ValueError, match="disagree on meta\\['survey'\\]"):
        write_beams(tmp_path / "x.fits", {"A": beams["A"], "B": other})
    nobeam = Spectrum(flux=np.ones(20) * u.Jy, spectral_axis=(5000 + np.arange(20.0)) * u.AA)
    with pytest.raises(ValueError, match="no meta\\['beam'\\]"):
        nobeam.write(tmp_path / "x.fits", format="remap-beam")
    assert sorted(os.listdir(tmp_path)) == []


def test_registration_is_idempotent():
    # pytest turns warnings into errors: re-registering must neither warn nor raise
    assert register() is True
    assert register() is True
    importlib.reload(remap.spectra.io)
    from astropy.io import registry
    assert registry.get_reader("remap-beam", Spectrum).__module__ == "remap.spectra.io"
    assert registry.get_reader("remap-beam", SpectrumList).__module__ == "remap.spectra.io"
    assert registry.get_writer("remap-beam", Spectrum).__module__ == "remap.spectra.io"


# --------------------------------------------------------------- remap._util.fs helpers
def test_mkstemp_and_mkdtemp_honour_the_umask(tmp_path):
    from remap._util.fs import current_umask, mkdtemp, mkstemp

    old = os.umask(0o022)
    try:
        assert current_umask() == 0o022
        fd, path = mkstemp(dir=tmp_path)
        os.close(fd)
        assert os.stat(path).st_mode & 0o777 == 0o644
        assert os.stat(mkdtemp(dir=tmp_path)).st_mode & 0o777 == 0o755
        os.umask(0o077)
        fd, path = mkstemp(dir=tmp_path)
        os.close(fd)
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_beam_files_get_the_umask(tmp_path, beams):
    old = os.umask(0o002)
    try:
        write_beams(tmp_path / "s.fits", beams)
    finally:
        os.umask(old)
    assert (tmp_path / "s.fits").stat().st_mode & 0o777 == 0o664


def test_check_output(tmp_path):
    from remap._util.fs import check_output
    from remap.exceptions import OutputError

    src = tmp_path / "in.fits"
    src.write_bytes(b"x")
    (tmp_path / "hard.fits").hardlink_to(src)
    check_output(tmp_path / "new.ecsv", [src])  # fine
    for alias in (src, tmp_path / "hard.fits", tmp_path / "." / "in.fits"):
        with pytest.raises(OutputError, match="is also an input"):
            check_output(alias, [src], overwrite=True)
    with pytest.raises(OutputError, match="exists; remove it or pass --overwrite"):
        check_output(tmp_path / "hard.fits", [])
    check_output(tmp_path / "hard.fits", [], overwrite=True)
    with pytest.raises(OutputError, match="is a directory"):
        check_output(tmp_path, [], overwrite=True)


def test_output_lock_is_exclusive_and_released(tmp_path):
    import subprocess
    import sys

    from remap._util.fs import output_lock
    from remap.exceptions import OutputError

    out = tmp_path / "r.ecsv"
    probe = ("import sys\nfrom remap._util.fs import output_lock\n"
             "from remap.exceptions import OutputError\n"
             "try:\n    with output_lock(sys.argv[1]):\n        print('got it')\n"
             "except OutputError as exc:\n    print(exc)\n")
    with output_lock(out) as lock_path:
        assert lock_path == str(tmp_path / ".r.ecsv.lock")
        other = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True,
                               text=True, timeout=120)
        assert "is being written by another remap run" in other.stdout
        assert lock_path in other.stdout
    again = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True,
                           text=True, timeout=120)
    assert again.stdout.strip() == "got it"
    assert issubclass(OutputError, OSError)
