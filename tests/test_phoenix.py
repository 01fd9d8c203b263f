"""Tests of the PHOENIX HiRes reader on small files in exactly the Göttingen format."""

import os

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import remap
from remap.libraries import phoenix
from remap.libraries.base import Domain
from remap.libraries.phoenix import (GridPointError, PhoenixFileNotFoundError,
                                     PhoenixFormatError, PhoenixLibrary, WaveRangeError)

# a WAVE file of 3,000 points over 4700-5900 Å (0.4 Å steps): covers 4800-5800 Å with room
WAVE = np.linspace(4700.0, 5900.0, 3001)

# (teff, logg, feh, alpha): two metallicity folders and one alpha folder; Z-1.0 lacks one
# point (5800, 4.0), Z-0.0.Alpha=+0.40 has only two points
POINTS = [(t, g, 0.0, 0.0) for t in (5700, 5800) for g in (4.0, 4.5)] + \
         [(5700, 4.0, -1.0, 0.0), (5700, 4.5, -1.0, 0.0), (5800, 4.5, -1.0, 0.0)] + \
         [(5800, 4.5, 0.0, 0.4), (5700, 4.5, 0.0, 0.4)]


def model_flux(teff, logg, feh, alpha, wave=WAVE):
    """A smooth positive flux in erg/s/cm2/cm that depends on every label."""
    line = 1 - 0.3 * (1 + feh / 4) * np.exp(-0.5 * ((wave - 5200 - 10 * logg) / 2.0) ** 2)
    return (teff ** 4 * 1e-2 * (1 + alpha) * line * (wave / 5000) ** -2).astype(">f4")


def write_phoenix(path, teff, logg, feh, alpha, flux=None, drop=(), extra=None):
    """Write one HiRes spectrum file with the PHOENIX header keywords."""
    flux = model_flux(teff, logg, feh, alpha) if flux is None else flux
    hdu = fits.PrimaryHDU(flux)
    cards = {"PHXTEFF": float(teff), "PHXLOGG": float(logg), "PHXM_H": float(feh),
             "PHXALPHA": float(alpha), "BUNIT": "erg/s/cm^2/cm", **(extra or {})}
    for key, value in cards.items():
        if key not in drop:
            hdu.header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu.writeto(path, overwrite=True)
    return path


def make_grid(root, points=POINTS, wave=WAVE):
    """A miniature Göttingen HiResFITS folder."""
    root.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.asarray(wave, dtype=">f8")).writeto(root / phoenix.WAVE_FILE_NAME)
    for p in points:
        write_phoenix(root / phoenix.grid_relative_path(*p), *p)
    return root


@pytest.fixture
def grid_dir(tmp_path):
    return make_grid(tmp_path / "phoenix")


def point_path(root, teff, logg, feh, alpha=0.0):
    return root / phoenix.grid_relative_path(teff, logg, feh, alpha)


# ----------------------------------------------------------------------------- names

@pytest.mark.parametrize("labels, expected", [
    ((5800, 4.5, 0.0, 0.0), "Z-0.0/lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"),
    ((5800, 4.5, -0.0, 0.0), "Z-0.0/lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"),
    ((3500, 0.0, 0.5, 0.0), "Z+0.5/lte03500-0.00+0.5.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"),
    ((12000, 2.0, -1.0, 0.4),
     "Z-1.0.Alpha=+0.40/lte12000-2.00-1.0.Alpha=+0.40.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"),
    ((4200, 5.5, -1.0, -0.2),
     "Z-1.0.Alpha=-0.20/lte04200-5.50-1.0.Alpha=-0.20.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"),
])
def test_names_follow_goettingen_convention(labels, expected):
    assert phoenix.grid_relative_path(*labels) == expected
    folder, name = expected.split("/")
    assert phoenix.parse_grid_folder_name(folder) == (labels[2] + 0.0, labels[3])
    parsed = phoenix.parse_grid_file_name(name)
    assert parsed == {"teff": labels[0], "logg": labels[1], "feh": labels[2] + 0.0,
                      "alpha": labels[3]}


@pytest.mark.parametrize("bad", [
    dict(teff=5800.5, logg=4.5, feh=0.0), dict(teff=5800, logg=-0.5, feh=0.0),
    dict(teff=5800, logg=4.555, feh=0.0), dict(teff=5800, logg=4.5, feh=0.25),
    dict(teff=123456, logg=4.5, feh=0.0), dict(teff=5800, logg=4.5, feh=float("nan")),
])
def test_names_refuse_unwritable_labels(bad):
    with pytest.raises(ValueError, match=r"teff|logg|feh"):
        phoenix.grid_file_name(**bad)


def test_parse_rejects_other_names():
    assert phoenix.parse_grid_file_name("lte5800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits") \
        is None
    assert phoenix.parse_grid_file_name("lte05800-4.50-0.0.BT-Settl.fits") is None
    assert phoenix.parse_grid_folder_name("Z0.0") is None
    assert phoenix.parse_grid_folder_name("Z-0.0.Alpha=0.4") is None


def test_nominal_resolution_follows_husser2013():
    assert phoenix.nominal_resolution(5000.0) == 500_000
    assert phoenix.nominal_resolution(30000.0) == 100_000
    assert phoenix.nominal_resolution(2000.0) == pytest.approx(20_000)


# ----------------------------------------------------------------------------- reading

def test_registered_and_grid_discovered(grid_dir):
    assert "phoenix" in remap.list_libraries()
    lib = remap.get_library("phoenix", directory=grid_dir, wave_range=(4850, 5750))
    assert isinstance(lib, PhoenixLibrary)
    grid = lib.grid
    assert isinstance(grid, Table)
    assert len(grid) == len(POINTS)
    got = sorted(tuple(float(r[k]) for k in ("teff", "logg", "feh", "alpha")) for r in grid)
    assert got == sorted(tuple(map(float, p)) for p in POINTS)
    for row in grid:
        assert os.path.isfile(row["path"])
    assert lib.domain == Domain(teff=(5700.0, 5800.0), logg=(4.0, 4.5), feh=(-1.0, 0.0),
                                alpha=(0.0, 0.4))
    assert lib.wavelength_medium == "vacuum"


def test_spectrum_cut_and_units(grid_dir):
    lib = PhoenixLibrary(grid_dir, wave_range=(4850, 5750), margin=5.0)
    spec = lib.spectrum(teff=5800, logg=4.5, feh=0.0)
    wave = spec.spectral_axis.to_value(u.AA)
    # the cut: requested range plus the margin, on the WAVE file's own pixels
    inside = WAVE[(WAVE >= 4845.0) & (WAVE <= 5755.0)]
    np.testing.assert_array_equal(wave, inside)
    assert spec.flux.unit == u.erg / u.s / u.cm ** 2 / u.AA
    expected = model_flux(5800, 4.5, 0.0, 0.0)[(WAVE >= 4845.0) & (WAVE <= 5755.0)]
    # erg/s/cm2/cm -> erg/s/cm2/Å is a factor 1e-8
    np.testing.assert_allclose(spec.flux.value, expected.astype(float) * 1e-8, rtol=1e-6)
    assert spec.meta["teff"] == 5800 and spec.meta["logg"] == 4.5
    assert spec.meta["feh"] == 0.0 and spec.meta["alpha"] == 0.0
    assert spec.meta["wavelength_medium"] == "vacuum"
    # 0.4 Å sampling near 5800 Å: R = λ/Δλ ~ 12,000-14,000, below the nominal 500,000
    assert spec.meta["resolution"] == pytest.approx(np.median(inside[1:] / np.diff(inside)))
    assert lib.resolution < 500_000
    assert u.allclose(lib.wavelength_range, [4850, 5750] * u.AA)


def test_alpha_and_other_metallicity_differ(grid_dir):
    lib = PhoenixLibrary(grid_dir)
    a0 = lib.spectrum(5800, 4.5, 0.0, 0.0)
    a4 = lib.spectrum(5800, 4.5, 0.0, alpha=0.4)
    m1 = lib.spectrum(5800, 4.5, -1.0)
    assert a4.meta["alpha"] == pytest.approx(0.4)
    np.testing.assert_allclose(a4.flux.value, 1.4 * a0.flux.value, rtol=1e-6)
    assert m1.meta["feh"] == -1.0
    assert not np.allclose(m1.flux.value, a0.flux.value)


def test_wave_range_quantity_and_full(grid_dir):
    lib = PhoenixLibrary(grid_dir, wave_range=u.Quantity([500, 520], u.nm), margin=0)
    wave = lib.spectrum(5700, 4.0, 0.0).spectral_axis.to_value(u.AA)
    assert wave[0] >= 5000 and wave[-1] <= 5200 and len(wave) == 501
    full = PhoenixLibrary(grid_dir, wave_range=None)
    assert len(full.spectrum(5700, 4.0, 0.0).flux) == len(WAVE)
    # the margin is clipped at the file's edges
    edge = PhoenixLibrary(grid_dir, wave_range=(4700, 5900), margin=50)
    assert len(edge.wavelength) == len(WAVE)


@pytest.mark.parametrize("wave_range", [
    (5000 * u.AA, 5200 * u.AA),                       # a pair of Quantities (astropy style)
    (500 * u.nm, 5200 * u.AA),                        # ... in different units
    u.Quantity([5000, 5200], u.AA),                   # a Quantity array of 2
    u.Quantity([5000, 5200], u.AA).to(u.THz, equivalencies=u.spectral()),  # frequencies
    [5000, 5200],                                     # plain numbers: Å
])
def test_wave_range_quantity_pairs(grid_dir, wave_range):
    lib = PhoenixLibrary(grid_dir, wave_range=wave_range, margin=0)
    wave = lib.spectrum(5700, 4.0, 0.0).spectral_axis.to_value(u.AA)
    assert len(wave) == 501 and wave[0] == pytest.approx(5000) and wave[-1] == pytest.approx(5200)
    # the same through the plugin API
    via_plugin = remap.get_library("phoenix", directory=grid_dir, wave_range=wave_range,
                                   margin=0)
    np.testing.assert_array_equal(via_plugin.wavelength.to_value(u.AA), lib.wavelength.value)


@pytest.mark.parametrize("wave_range, error, match", [
    ((5000 * u.AA, 5200 * u.s), ValueError, "unit s, which is not spectral"),
    ((5000 * u.AA, 5200 * u.AA, 5300 * u.AA), ValueError, "received 3 values"),
    (u.Quantity([[5000, 5200]], u.AA), ValueError, r"shape \(1, 2\)"),
    ((5200 * u.AA, 5000 * u.AA), ValueError, "min < max"),
    ((-5 * u.AA, 5000 * u.AA), ValueError, "finite positive"),
    ("5000-5200", TypeError, "pair of wavelengths"),
])
def test_wave_range_bad_pairs(grid_dir, wave_range, error, match):
    with pytest.raises(error, match=match):
        PhoenixLibrary(grid_dir, wave_range=wave_range)


def test_server_layout_is_read(tmp_path):
    root = tmp_path / "HiResFITS"
    root.mkdir()
    fits.PrimaryHDU(WAVE.astype(">f8")).writeto(root / phoenix.WAVE_FILE_NAME)
    p = (5700, 4.5, 0.0, 0.0)
    write_phoenix(root / phoenix.GRID_NAME / phoenix.grid_relative_path(*p), *p)
    lib = PhoenixLibrary(root)
    assert len(lib.grid) == 1
    assert lib.spectrum(*p).meta["teff"] == 5700


def test_holes_and_summary(grid_dir):
    lib = PhoenixLibrary(grid_dir)
    holes = lib.holes()
    got = sorted(tuple(float(r[k]) for k in ("teff", "logg", "feh", "alpha")) for r in holes)
    # product of the axes (2 teff x 2 logg x 2 feh x 2 alpha = 16) minus the 9 files present
    assert len(got) == 16 - len(POINTS)
    assert (5800.0, 4.0, -1.0, 0.0) in got
    assert (5700.0, 4.0, 0.0, 0.4) in got
    assert all(c[2] == -1.0 and c[3] == 0.4 for c in got
               if c not in {(5800.0, 4.0, -1.0, 0.0), (5700.0, 4.0, 0.0, 0.4),
                            (5800.0, 4.0, 0.0, 0.4)})
    row = holes[(holes["teff"] == 5800) & (holes["logg"] == 4.0) & (holes["feh"] == -1.0)][0]
    assert row["file"] == "lte05800-4.00-1.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"
    assert row["folder"] == "Z-1.0"
    text = lib.summary()
    assert f"{len(POINTS)} spectra" in text
    assert "Z-1.0: 1 missing (teff, logg): (5800, 4)" in text
    assert "Z-1.0.Alpha=+0.40: folder absent or empty (4 points)" in text
    assert "Z-0.0.Alpha=+0.40: 2 missing" in text


def test_complete_grid_has_no_holes(tmp_path):
    pts = [(t, 4.5, f, 0.0) for t in (5700, 5800) for f in (0.0, 0.5)]
    lib = PhoenixLibrary(make_grid(tmp_path / "g", points=pts))
    assert len(lib.holes()) == 0
    assert "holes: none" in lib.summary()


# ----------------------------------------------------------------------------- bad input

def test_point_not_on_grid_lists_nearest(grid_dir):
    lib = PhoenixLibrary(grid_dir)
    # the two points one grid step away come first (ties in grid order)
    with pytest.raises(GridPointError, match=r"not a point.*nearest available: "
                                             r"teff=5700, logg=4, feh=-1, alpha=0; "
                                             r"teff=5800, logg=4.5, feh=-1, alpha=0;"):
        lib.spectrum(teff=5800, logg=4.0, feh=-1.0)
    with pytest.raises(GridPointError, match="teff=5800, logg=4.5, feh=0, alpha=0"):
        lib.spectrum(teff=5900, logg=4.5, feh=0.0)
    with pytest.raises(ValueError, match="teff must be a finite number"):
        lib.spectrum(teff=float("nan"), logg=4.5, feh=0.0)


def test_wave_range_outside_coverage(grid_dir):
    with pytest.raises(WaveRangeError, match=r"6000-6500 Å is not inside .* 4700-5900 Å"):
        PhoenixLibrary(grid_dir, wave_range=(6000, 6500))
    with pytest.raises(WaveRangeError, match="not inside"):
        PhoenixLibrary(grid_dir, wave_range=(4600, 5000))
    with pytest.raises(ValueError, match="min < max"):
        PhoenixLibrary(grid_dir, wave_range=(5500, 5000))
    with pytest.raises(ValueError, match="not spectral"):
        PhoenixLibrary(grid_dir, wave_range=[1, 2] * u.s)
    with pytest.raises(ValueError, match="margin"):
        PhoenixLibrary(grid_dir, margin=-1)


def test_missing_wave_file(grid_dir):
    (grid_dir / phoenix.WAVE_FILE_NAME).unlink()
    with pytest.raises(PhoenixFileNotFoundError, match="WAVE_PHOENIX-ACES-AGSS-COND-2011.fits "
                                                       "is missing"):
        PhoenixLibrary(grid_dir)


def test_empty_and_missing_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PhoenixFormatError, match="the directory is empty"):
        PhoenixLibrary(tmp_path / "empty")
    with pytest.raises(PhoenixFileNotFoundError, match="does not exist"):
        PhoenixLibrary(tmp_path / "nowhere")
    only_wave = tmp_path / "only_wave"
    only_wave.mkdir()
    fits.PrimaryHDU(WAVE).writeto(only_wave / phoenix.WAVE_FILE_NAME)
    with pytest.raises(PhoenixFormatError, match="holds no PHOENIX spectra"):
        PhoenixLibrary(only_wave)


def test_flux_wave_length_mismatch(grid_dir):
    write_phoenix(point_path(grid_dir, 5700, 4.0, 0.0), 5700, 4.0, 0.0, 0.0,
                  flux=np.ones(len(WAVE) - 1, dtype=">f4"))
    lib = PhoenixLibrary(grid_dir)
    with pytest.raises(PhoenixFormatError, match="holds 3000 flux values but .* 3001"):
        lib.spectrum(5700, 4.0, 0.0)
    lib.spectrum(5800, 4.0, 0.0)  # the other files are still readable


@pytest.mark.parametrize("key", ["PHXTEFF", "PHXLOGG", "PHXM_H", "PHXALPHA"])
def test_missing_header_key(grid_dir, key):
    write_phoenix(point_path(grid_dir, 5700, 4.0, 0.0), 5700, 4.0, 0.0, 0.0, drop=(key,))
    with pytest.raises(PhoenixFormatError, match=f"header lacks {key}"):
        PhoenixLibrary(grid_dir).spectrum(5700, 4.0, 0.0)


def test_header_disagrees_with_name(grid_dir):
    write_phoenix(point_path(grid_dir, 5700, 4.0, 0.0), 5700, 4.0, 0.0, 0.0,
                  extra={"PHXLOGG": 4.5})
    with pytest.raises(PhoenixFormatError, match="PHXLOGG=4.5 disagrees with the file name"):
        PhoenixLibrary(grid_dir).spectrum(5700, 4.0, 0.0)


def test_wrong_bunit(grid_dir):
    write_phoenix(point_path(grid_dir, 5700, 4.0, 0.0), 5700, 4.0, 0.0, 0.0,
                  extra={"BUNIT": "Jy"})
    with pytest.raises(PhoenixFormatError, match="BUNIT='Jy'"):
        PhoenixLibrary(grid_dir).spectrum(5700, 4.0, 0.0)


def test_truncated_flux_file(grid_dir):
    path = point_path(grid_dir, 5700, 4.0, 0.0)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    lib = PhoenixLibrary(grid_dir)  # discovery only reads names
    with pytest.raises(PhoenixFormatError, match="truncated: it has .* bytes but its header "
                                                 "promises"):
        lib.spectrum(5700, 4.0, 0.0)


def test_garbage_flux_file(grid_dir):
    path = point_path(grid_dir, 5700, 4.0, 0.0)
    path.write_bytes(np.random.default_rng(1).bytes(6000))
    with pytest.raises(PhoenixFormatError, match="not a FITS file"):
        PhoenixLibrary(grid_dir).spectrum(5700, 4.0, 0.0)


def test_garbage_in_header(grid_dir):
    path = point_path(grid_dir, 5700, 4.0, 0.0)
    data = bytearray(path.read_bytes())
    data[400:480] = np.random.default_rng(2).integers(128, 256, 80, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(PhoenixFormatError, match="non-ASCII bytes in header"):
        PhoenixLibrary(grid_dir).spectrum(5700, 4.0, 0.0)


def test_nan_flux_is_corrupt(grid_dir):
    flux = model_flux(5700, 4.0, 0.0, 0.0)
    flux[1000:1010] = np.nan
    write_phoenix(point_path(grid_dir, 5700, 4.0, 0.0), 5700, 4.0, 0.0, 0.0, flux=flux)
    with pytest.raises(PhoenixFormatError, match="10 flux values .* NaN"):
        PhoenixLibrary(grid_dir, wave_range=(4850, 5750)).spectrum(5700, 4.0, 0.0)


@pytest.mark.parametrize("content, match", [
    (b"", "the file is empty"),
    (b"\x00\xff" * 3000, "not a FITS file"),
    ("truncated", "truncated"),
])
def test_corrupt_wave_file(grid_dir, content, match):
    path = grid_dir / phoenix.WAVE_FILE_NAME
    if content == "truncated":
        content = path.read_bytes()[:2880 + 800]
    path.write_bytes(content)
    with pytest.raises(PhoenixFormatError, match=match):
        PhoenixLibrary(grid_dir)


def test_wave_file_must_be_1d_and_increasing(grid_dir):
    path = grid_dir / phoenix.WAVE_FILE_NAME
    fits.PrimaryHDU(np.ones((2, 10))).writeto(path, overwrite=True)
    with pytest.raises(PhoenixFormatError, match=r"shape \(2, 10\); expected a 1-D array"):
        PhoenixLibrary(grid_dir)
    fits.PrimaryHDU(WAVE[::-1].copy()).writeto(path, overwrite=True)
    with pytest.raises(PhoenixFormatError, match="increasing"):
        PhoenixLibrary(grid_dir)


def test_misplaced_and_misnamed_files(grid_dir):
    wrong = grid_dir / "Z+0.5" / phoenix.grid_file_name(5700, 4.5, 0.0)
    write_phoenix(wrong, 5700, 4.5, 0.0, 0.0)
    with pytest.raises(PhoenixFormatError, match="lies in folder 'Z\\+0.5'; expected folder "
                                                 "'Z-0.0'"):
        PhoenixLibrary(grid_dir)
    wrong.unlink()
    odd = grid_dir / "Z-0.0" / "lte5700-4.5-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"
    write_phoenix(odd, 5700, 4.5, 0.0, 0.0)
    with pytest.raises(PhoenixFormatError, match="does not follow the PHOENIX convention"):
        PhoenixLibrary(grid_dir)
    odd.unlink()
    # unrelated files (partial downloads, notes) are ignored
    (grid_dir / "Z-0.0" / (phoenix.grid_file_name(5900, 4.5, 0.0) + ".part")).write_bytes(b"x")
    (grid_dir / "README").write_text("notes")
    assert len(PhoenixLibrary(grid_dir).grid) == len(POINTS)
