"""remap.read_spectrum: the layouts real spectra come in, written here as small files."""

import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import InverseVariance, StdDevUncertainty
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from specutils import Spectrum, SpectrumList

import remap
from remap.exceptions import SpectrumFileError
from remap.spectra.readers import merge_orders, read_spectrum

N = 400
RNG_SEED = 3


def linear_header(**cards):
    h = fits.Header()
    h["CRVAL1"], h["CDELT1"], h["CRPIX1"], h["CTYPE1"] = 5000.0, 0.1, 1.0, "LINEAR"
    for key, value in cards.items():
        h[key.replace("_", "-") if key == "DC_FLAG" else key] = value
    return h


def flux_values(n=N, seed=RNG_SEED):
    return 1000.0 + np.random.default_rng(seed).normal(0, 10, n)


# --------------------------------------------------------------------- 1-D FITS images
def test_iraf_1d_with_du_pixel_bunit(tmp_path):
    """The MIKE case: specutils refuses BUNIT = 'DU/PIXEL'; remap reads it as arbitrary units."""
    path = tmp_path / "mike.fits"
    flux = flux_values().astype("f4")
    fits.PrimaryHDU(flux, linear_header(BUNIT="DU/PIXEL")).writeto(path)
    with pytest.raises(ValueError, match="DU/PIXEL"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SpectrumList.read(path, format="wcs1d-fits")
    spec = read_spectrum(path)
    assert isinstance(spec, Spectrum)
    assert spec.meta["reader"] == "remap-fits1d"
    assert spec.flux.unit == u.dimensionless_unscaled
    np.testing.assert_array_equal(spec.flux.value, flux.astype(float))
    np.testing.assert_allclose(spec.spectral_axis.to_value(u.AA), 5000.0 + 0.1 * np.arange(N),
                               rtol=1e-12)
    assert any("DU/PIXEL" in note and "arbitrary units" in note
               for note in spec.meta["reader_notes"])
    assert spec.meta["file"] == str(path)
    # registered as a specutils data_loader: plain specutils reads it too
    assert SpectrumList.read(path)[0].meta["header"]["BUNIT"] == "DU/PIXEL"


@pytest.mark.parametrize("cards", [
    {"DC_FLAG": 1}, {"CTYPE1": "LOGLAM"}, {"CTYPE1": "LOG-LINEAR", "BUNIT": "COUNTS/PIXEL"}])
def test_log10_linear_dispersion(tmp_path, cards):
    """IRAF DC-FLAG = 1 / LOGLAM: specutils would give wavelengths of 3.7 'Å'."""
    h = linear_header(**cards)
    h["CRVAL1"], h["CDELT1"] = np.log10(5000.0), 1e-5
    path = tmp_path / "loglin.fits"
    fits.PrimaryHDU(flux_values(), h).writeto(path)
    spec = read_spectrum(path)
    assert spec.meta["reader"] == "remap-fits1d"
    # float64 powers of the same exponents: equal to libm rounding (~1e-16)
    np.testing.assert_allclose(spec.spectral_axis.to_value(u.AA),
                               10 ** (np.log10(5000.0) + 1e-5 * np.arange(N)), rtol=1e-12)


def test_sdss_coeff0_coeff1(tmp_path):
    h = fits.Header()
    h["COEFF0"], h["COEFF1"], h["BUNIT"] = 3.7, 1e-4, "1E-17 erg/cm^2/s/Ang"
    path = tmp_path / "spSpec-like.fits"
    fits.PrimaryHDU(flux_values(), h).writeto(path)
    spec = read_spectrum(path)
    np.testing.assert_allclose(spec.spectral_axis.to_value(u.AA),
                               10 ** (3.7 + 1e-4 * np.arange(N)), rtol=1e-12)


def test_fits_standard_log_axis_agrees_with_astropy_wcs(tmp_path):
    """CTYPE1 'WAVE-LOG' with a bad BUNIT: remap's formula gives what astropy.wcs gives."""
    h = linear_header(CTYPE1="WAVE-LOG", CUNIT1="Angstrom")
    h["CDELT1"] = 0.115
    good, bad = tmp_path / "wcs.fits", tmp_path / "bad.fits"
    fits.PrimaryHDU(flux_values(), h).writeto(good)
    h["BUNIT"] = "DU/PIXEL"
    fits.PrimaryHDU(flux_values(), h).writeto(bad)
    ours, theirs = read_spectrum(bad), read_spectrum(good)
    assert (ours.meta["reader"], theirs.meta["reader"]) == ("remap-fits1d", "wcs1d-fits")
    # two float64 evaluations of the same exp(): agree to ~1e-15
    np.testing.assert_allclose(ours.spectral_axis.to_value(u.AA),
                               theirs.spectral_axis.to_value(u.AA), rtol=1e-12)
    assert ours.meta["wavelength_medium"] == theirs.meta["wavelength_medium"] == "vacuum"


def test_iraf_bands_and_uncertainty_hdu(tmp_path):
    flux = flux_values()
    sigma = np.full(N, 31.6)
    h = linear_header(BUNIT="DU/PIXEL", BANDID1="spectrum - background fit",
                      BANDID2="sigma - background fit")
    banded = tmp_path / "bands.fits"
    fits.PrimaryHDU(np.stack([flux, sigma])[:, None, :], h).writeto(banded)
    spec = read_spectrum(banded)
    np.testing.assert_allclose(spec.flux.value, flux)
    assert isinstance(spec.uncertainty, StdDevUncertainty)
    np.testing.assert_allclose(spec.uncertainty.array, sigma)

    ext = tmp_path / "err_hdu.fits"
    fits.HDUList([fits.PrimaryHDU(flux, linear_header(BUNIT="DU/PIXEL")),
                  fits.ImageHDU(sigma ** -2, name="IVAR")]).writeto(ext)
    spec = read_spectrum(ext)
    assert isinstance(spec.uncertainty, InverseVariance)
    np.testing.assert_allclose(spec.uncertainty.array, sigma ** -2)


def test_well_formed_files_stay_with_specutils(tmp_path):
    """remap's loaders do not steal files specutils' own loaders read."""
    wcs1d = tmp_path / "jy.fits"
    fits.PrimaryHDU(flux_values(), linear_header(BUNIT="Jy", CUNIT1="Angstrom")).writeto(wcs1d)
    assert read_spectrum(wcs1d).meta["reader"] == "wcs1d-fits"
    tab = tmp_path / "tab.fits"
    Spectrum(flux=flux_values() * u.Jy, spectral_axis=(5000 + np.arange(N)) * u.AA).write(
        tab, format="tabular-fits")
    spec = read_spectrum(tab)
    assert spec.meta["reader"] == "tabular-fits" and spec.flux.unit == u.Jy


# ------------------------------------------------------------------------------ tables
def test_tabular_fits_dimensionless_round_trip(tmp_path):
    """specutils writes a normalized spectrum it cannot read back; remap reads it."""
    rng = np.random.default_rng(0)
    wave = (4850 + 0.1 * np.arange(N)) * u.AA
    flux = 1 - 0.3 * rng.random(N)
    sigma = np.full(N, 0.01)
    mask = np.zeros(N, bool)
    mask[10:15] = True
    path = tmp_path / "normalized.fits"
    Spectrum(flux=flux * u.one, spectral_axis=wave, uncertainty=StdDevUncertainty(sigma),
             mask=mask).write(path, format="tabular-fits")
    with pytest.raises(OSError, match="flux"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SpectrumList.read(path, format="tabular-fits")
    spec = remap.read_spectrum(path)
    assert spec.meta["reader"] == "remap-table"
    assert spec.flux.unit == u.dimensionless_unscaled
    np.testing.assert_array_equal(spec.flux.value, flux)
    np.testing.assert_array_equal(spec.spectral_axis.to_value(u.AA), wave.value)
    np.testing.assert_array_equal(spec.uncertainty.array, sigma)
    np.testing.assert_array_equal(spec.mask, mask)


def _columns(rng):
    wave = 5000 + 0.05 * np.arange(N)
    flux = 1 - 0.5 * rng.random(N)
    return wave, flux, np.full(N, 0.02)


@pytest.mark.parametrize("kind, names", [
    ("csv", ("Wave", "FLUX", "ivar")),
    ("ecsv", ("lambda", "f", "sigma")),
    ("txt", ("wl", "spec", "err")),
    ("dat", ("wavelength", "fnorm", "e_flux")),
    ("fits", ("loglam", "flux", "ivar")),
])
def test_tables_with_common_column_names(tmp_path, kind, names):
    rng = np.random.default_rng(1)
    wave, flux, sigma = _columns(rng)
    wname, fname, uname = names
    wcol = np.log10(wave) if wname == "loglam" else wave
    ucol = sigma ** -2 if uname == "ivar" else sigma
    table = Table({wname: wcol, fname: flux, uname: ucol})
    path = tmp_path / f"star.{kind}"
    fmt = {"csv": "ascii.csv", "ecsv": "ascii.ecsv", "txt": "ascii.commented_header",
           "dat": "ascii.basic", "fits": "fits"}[kind]
    table.write(path, format=fmt)
    spec = read_spectrum(path)
    assert spec.meta["reader"] == "remap-table"
    # text tables print 17 significant digits for float64; loglam goes through 10**
    np.testing.assert_allclose(spec.spectral_axis.to_value(u.AA), wave, rtol=1e-12)
    np.testing.assert_allclose(spec.flux.value, flux, rtol=1e-12)
    np.testing.assert_allclose(remap.prepare(spec).uncertainty.array, sigma, rtol=1e-12)


def test_headerless_text_and_sdss_mask(tmp_path):
    rng = np.random.default_rng(2)
    wave, flux, sigma = _columns(rng)
    path = tmp_path / "plain.txt"
    np.savetxt(path, np.c_[wave, flux, sigma])
    spec = read_spectrum(path)
    np.testing.assert_allclose(spec.spectral_axis.to_value(u.AA), wave, rtol=1e-12)
    np.testing.assert_allclose(spec.uncertainty.array, sigma, rtol=1e-12)
    assert any("no column names" in n for n in spec.meta["reader_notes"])

    and_mask = np.zeros(N, np.int32)
    and_mask[5] = 16
    sdss = tmp_path / "sdss.fits"
    Table({"loglam": np.log10(wave), "flux": flux, "and_mask": and_mask}).write(sdss)
    spec = read_spectrum(sdss)
    assert spec.mask.sum() == 1 and spec.mask[5]
    assert "wavelength_medium" not in spec.meta

    # an SDSS file (TELESCOP) read by remap: SDSS wavelengths are in vacuum
    sdss_hdu = fits.HDUList([fits.PrimaryHDU(header=fits.Header({"TELESCOP": "SDSS 2.5-M"})),
                             fits.table_to_hdu(Table({"loglam": np.log10(wave), "flux": flux}))])
    sdss_hdu.writeto(tmp_path / "spec-like.fits")
    spec = read_spectrum(tmp_path / "spec-like.fits", format="remap-table")
    assert spec.meta["wavelength_medium"] == "vacuum"


def test_vector_columns_of_one_row(tmp_path):
    rng = np.random.default_rng(4)
    wave, flux, _ = _columns(rng)
    path = tmp_path / "onerow.fits"
    Table({"WAVE": wave[None, :], "FLUX": flux[None, :]}).write(path)
    spec = read_spectrum(path)
    np.testing.assert_allclose(spec.flux.value, flux)


# ---------------------------------------------------------------------- wavelength medium
@pytest.mark.parametrize("cards, medium", [
    ({"AIRORVAC": "vac"}, "vacuum"), ({"AIRORVAC": "air"}, "air"),
    ({"VACUUM": True}, "vacuum"), ({"VACUUM": False}, "air"),
    ({"WAVE_MED": "VACUUM"}, "vacuum"), ({"WAVEMED": "AIR"}, "air"),
    ({"CTYPE1": "AWAV"}, "air"), ({"CTYPE1": "WAVE"}, "vacuum"), ({}, None),
    ({"CTYPE1": "LINEAR"}, None)])
def test_medium_keywords_are_honoured(tmp_path, cards, medium):
    path = tmp_path / "m.fits"
    fits.PrimaryHDU(flux_values(), linear_header(BUNIT="DU/PIXEL", **cards)).writeto(path)
    spec = read_spectrum(path)
    assert spec.meta.get("wavelength_medium") == medium


def test_medium_from_column_name_and_argument(tmp_path):
    rng = np.random.default_rng(5)
    wave, flux, _ = _columns(rng)
    path = tmp_path / "vac.csv"
    Table({"wavelength_vac": wave, "flux": flux}).write(path)
    assert read_spectrum(path).meta["wavelength_medium"] == "vacuum"
    with pytest.warns(AstropyUserWarning, match="declares vacuum.*medium='air'"):
        assert read_spectrum(path, medium="air").meta["wavelength_medium"] == "air"
    plain = tmp_path / "plain.csv"
    Table({"wave": wave, "flux": flux}).write(plain)
    assert "wavelength_medium" not in read_spectrum(plain).meta
    assert read_spectrum(plain, medium="vacuum").meta["wavelength_medium"] == "vacuum"
    with pytest.raises(ValueError, match="'air' or 'vacuum'"):
        read_spectrum(plain, medium="water")


def test_contradicting_medium_keywords_declare_nothing(tmp_path):
    path = tmp_path / "both.fits"
    fits.PrimaryHDU(flux_values(), linear_header(BUNIT="DU/PIXEL", AIRORVAC="air",
                                                 VACUUM=True)).writeto(path)
    spec = read_spectrum(path)
    assert "wavelength_medium" not in spec.meta
    assert any("contradicting" in n for n in spec.meta["reader_notes"])


# ----------------------------------------------------------------------- echelle orders
LINES = np.array([5010.0, 5042.5, 5071.0, 5103.3, 5130.8, 5162.0, 5188.7, 5215.2, 5251.1])


def true_normalized(wave):
    f = np.ones_like(wave)
    for c in LINES:
        f -= 0.5 * np.exp(-0.5 * ((wave - c) / 0.4) ** 2)
    return f


def echelle_orders(n_orders=3, npix=1200, counts=4e6, seed=0, log=False):
    """Orders of 120 Å overlapping by 30 Å, a parabolic blaze, photon noise (SNR ~2000)."""
    rng = np.random.default_rng(seed)
    waves, fluxes, sigmas = [], [], []
    for k in range(n_orders):
        if log:
            wave = 10 ** (np.log10(5000 + 90 * k) + 8.6e-6 * np.arange(npix))
        else:
            wave = 5000 + 90 * k + 0.1 * np.arange(npix)
        x = np.linspace(-1, 1, npix)
        blaze = counts * (1 - 0.5 * x ** 2)
        sigma = np.sqrt(blaze)
        fluxes.append(true_normalized(wave) * blaze + rng.standard_normal(npix) * sigma)
        waves.append(wave)
        sigmas.append(sigma)
    return np.array(waves), np.array(fluxes), np.array(sigmas)


def write_multispec(path, waves, fluxes, dtype=0, sigma=None):
    n, npix = fluxes.shape
    specs = []
    for k in range(n):
        if dtype == 0:
            w1, dw = waves[k, 0], waves[k, 1] - waves[k, 0]
            specs.append(f'spec{k + 1} = "{k + 1} {k + 1} 0 {w1:.10g} {dw:.10g} {npix} 0. 1. 2."')
        elif dtype == 1:
            w1, dw = np.log10(waves[k, 0]), np.log10(waves[k, 1] / waves[k, 0])
            specs.append(f'spec{k + 1} = "{k + 1} {k + 1} 1 {w1:.14g} {dw:.14g} {npix} 0. 1. 2."')
        else:  # Chebyshev of order 2 (a straight line) through the same wavelengths
            mid = (waves[k, 0] + waves[k, -1]) / 2
            half = (waves[k, -1] - waves[k, 0]) / 2
            specs.append(f'spec{k + 1} = "{k + 1} {k + 1} 2 {waves[k, 0]:.10g} 0.1 {npix} 0. '
                         f'1. 2. 1. 0. 1 2 1. {npix}. {mid:.10g} {half:.10g}"')
    text = "wtype=multispec " + " ".join(specs)
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"], h["WCSDIM"] = "MULTISPE", "MULTISPE", 2
    h["WAT0_001"] = "system=multispec"
    h["WAT1_001"] = "wtype=multispec label=Wavelength units=angstroms"
    for i in range(0, len(text), 68):
        h[f"WAT2_{i // 68 + 1:03d}"] = text[i:i + 68]
    h["BUNIT"], h["AIRORVAC"] = "DU/PIXEL", "air"
    data = fluxes if sigma is None else np.stack([fluxes, sigma])
    if sigma is not None:
        h["BANDID1"], h["BANDID2"] = "spectrum - background fit", "sigma - background fit"
    fits.PrimaryHDU(data.astype("f4"), h).writeto(path)


def assert_merged(spec, waves, n_orders=3, tol=0.01):
    wave = spec.spectral_axis.to_value(u.AA)
    assert spec.flux.unit == u.dimensionless_unscaled
    assert spec.meta["orders"] == n_orders and spec.meta["normalized"]
    assert wave[0] == pytest.approx(waves.min()) and wave[-1] <= waves.max()
    step = np.diff(np.log(wave))
    np.testing.assert_allclose(step, step[0], rtol=1e-6)  # log-uniform
    good = ~spec.mask
    assert good.mean() > 0.99
    resid = spec.flux.value[good] - true_normalized(wave[good])
    assert np.median(np.abs(resid)) < tol, np.median(np.abs(resid))
    # lines land where they are: the merged minimum within one pixel of each centre
    for c in LINES[LINES < waves.max() - 2]:
        near = np.abs(wave - c) < 1.0
        assert abs(wave[near][np.argmin(spec.flux.value[near])] - c) < 0.15
    assert any("merged by inverse variance" in n for n in spec.meta["reader_notes"])


@pytest.mark.parametrize("dtype", [0, 1, 2])
def test_multispec_three_orders(tmp_path, dtype):
    waves, fluxes, sigmas = echelle_orders(log=dtype == 1)
    path = tmp_path / "ms.fits"
    write_multispec(path, waves, fluxes, dtype=dtype, sigma=sigmas if dtype == 0 else None)
    spec = read_spectrum(path)
    assert spec.meta["reader"] == "remap-multispec"
    assert spec.meta["wavelength_medium"] == "air"
    assert_merged(spec, waves)


def test_multispec_wavelengths_per_order(tmp_path):
    from remap.spectra.readers.multispec import _multispec_wavelengths

    waves, _, _ = echelle_orders()
    for dtype, spec in [(0, "1 1 0 5000 0.1 1200 0. 1. 2."),
                        (2, "1 1 2 5000 0.1 1200 0. 1. 2. 1. 0. 1 2 1. 1200. 5059.95 59.95"),
                        (2, "1 1 2 5000 0.1 1200 0. 1. 2. 1. 0. 2 2 1. 1200. 5059.95 59.95")]:
        wave, _ = _multispec_wavelengths(spec, 1200, "t")
        # a linear Legendre/Chebyshev term is exact: same numbers to float rounding
        np.testing.assert_allclose(wave, waves[0], rtol=1e-12)
    with pytest.raises(SpectrumFileError, match="function type 3"):
        _multispec_wavelengths("1 1 2 5000 0.1 1200 0. 1. 2. 1. 0. 3 2 1. 1200. 1. 1.", 1200, "t")


def test_echelle_with_wavelength_hdu(tmp_path):
    waves, fluxes, sigmas = echelle_orders(seed=1)
    path = tmp_path / "echelle.fits"
    hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(fluxes.astype("f4"), name="FLUX"),
                         fits.ImageHDU(waves, name="WAVE"),
                         fits.ImageHDU(sigmas.astype("f4"), name="SIGMA")])
    hdus[0].header["VACUUM"] = True
    hdus[2].header["BUNIT"] = "Angstrom"
    hdus.writeto(path)
    spec = read_spectrum(path)
    assert spec.meta["reader"] == "remap-echelle"
    assert spec.meta["wavelength_medium"] == "vacuum"
    assert_merged(spec, waves)


def test_table_with_one_row_per_order(tmp_path):
    waves, fluxes, sigmas = echelle_orders(seed=2)
    path = tmp_path / "orders.fits"
    Table({"wavelength": waves * u.AA, "flux": fluxes, "err": sigmas}).write(path)
    spec = read_spectrum(path)
    assert spec.meta["reader"] == "remap-table"
    assert_merged(spec, waves)


def test_merge_weights_overlaps_by_inverse_variance():
    """Where two orders overlap the merged σ is 1/sqrt(1/σ1² + 1/σ2²)."""
    waves, fluxes, sigmas = echelle_orders(n_orders=2, seed=3)
    sigmas[1] *= 3.0
    spec = merge_orders(waves * u.AA, fluxes, sigmas, None)
    wave = spec.spectral_axis.to_value(u.AA)
    c0 = np.interp(wave, waves[0], fluxes[0] / true_normalized(waves[0]))
    overlap = (wave > waves[1, 0] + 5) & (wave < waves[0, -1] - 5)
    only0 = (wave > waves[0, 0] + 5) & (wave < waves[1, 0] - 5)
    s = spec.uncertainty.array
    assert overlap.sum() > 150 and only0.sum() > 150
    # σ/C of order 0 at the overlap (its red end) against the combined value
    s0 = np.interp(wave[overlap], waves[0], sigmas[0]) / c0[overlap]
    assert np.all(s[overlap] < s0)
    assert np.median(s[overlap] / s0) > 0.8  # the noisier order adds little


def test_echelle_order_that_cannot_be_normalized_is_left_out():
    waves, fluxes, sigmas = echelle_orders(seed=4)
    fluxes[1] = np.nan
    spec = merge_orders(waves * u.AA, fluxes, sigmas, None)
    assert spec.meta["orders"] == 2
    assert any("left out: order 1" in n for n in spec.meta["reader_notes"])


# ------------------------------------------------------------------------- bad files
def test_bad_files_raise_specific_errors(tmp_path):
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    with pytest.raises(SpectrumFileError, match=r"empty.fits: the file is empty \(0 bytes\)"):
        read_spectrum(empty)
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(flux_values(), linear_header(BUNIT="DU/PIXEL")).writeto(good)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(SpectrumFileError, match="truncated.fits: a damaged FITS file .*truncated"):
        read_spectrum(truncated)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(SpectrumFileError, match="garbage.bin: no reader recognises this file "
                                                r"\(not FITS or text\)"):
        read_spectrum(garbage)
    notes = tmp_path / "notes.txt"
    notes.write_text("observing log\nno spectrum here, clouds\n")
    with pytest.raises(SpectrumFileError, match="notes.txt: the ASCII reader failed"):
        read_spectrum(notes)
    columns = tmp_path / "columns.csv"
    Table({"x": [1.0, 2.0], "y": [3.0, 4.0]}).write(columns)
    with pytest.raises(SpectrumFileError, match="columns.csv: no reader recognises"):
        read_spectrum(columns)
    with pytest.raises(SpectrumFileError, match=r"columns.csv: .*no wavelength and flux "
                                                r"columns \(columns \['x', 'y'\]\)"):
        read_spectrum(columns, format="remap-table")
    image = tmp_path / "image.fits"
    fits.PrimaryHDU(np.ones((20, 30))).writeto(image)
    with pytest.raises(SpectrumFileError, match="image.fits"):
        read_spectrum(image)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_spectrum(tmp_path / "missing.fits")
    with pytest.raises(SpectrumFileError, match="not a regular file"):
        read_spectrum(tmp_path)
    assert issubclass(SpectrumFileError, remap.SpectrumError)
    assert issubclass(SpectrumFileError, OSError)


def test_no_dispersion_is_refused(tmp_path):
    path = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(flux_values(), fits.Header({"BUNIT": "DU/PIXEL"})).writeto(path)
    with pytest.raises(SpectrumFileError, match="nowcs.fits"):
        read_spectrum(path)
    with pytest.raises(SpectrumFileError, match="no wavelength solution"):
        read_spectrum(path, format="remap-fits1d")


def test_wat_cards_split_at_a_space_are_joined_back():
    """IRAF cuts the WAT text every 68 characters; FITS drops a value's trailing blanks."""
    from remap.spectra.readers.multispec import _multispec_wavelengths, _wat_text

    head = 'wtype=multispec spec1 = "1 1 0 5000 0.1 1200 0. 1 2" spec2 = "2 2 0 '
    assert len(head) == 68 and head[-1] == " " and head[-2] != " "  # a card ending in a blank
    text = head + '5090. 0.1 1200 0. 1. 2."'
    header = fits.Header()
    header["WAT2_001"], header["WAT2_002"] = text[:68], text[68:]
    header = fits.Header.fromstring(header.tostring())  # as read from a file
    assert len(header["WAT2_001"]) == 67
    assert _wat_text(header, 2) == text
    spec2 = text.split('spec2 = "')[1].rstrip('"')
    wave, _ = _multispec_wavelengths(spec2, 1200, "t")
    assert wave[0] == 5090.0


def test_registration_is_idempotent_and_leaves_others_alone():
    import importlib

    import remap.spectra.readers as readers
    from remap.spectra.readers import registry

    assert readers.register() == list(readers.REMAP_FORMATS)
    importlib.reload(registry)  # a reload registers the new functions over the old ones
    importlib.reload(readers)
    assert readers.register() == list(readers.REMAP_FORMATS)


def test_echelle_fitter_can_be_chosen(tmp_path):
    waves, fluxes, sigmas = echelle_orders(seed=5)
    path = tmp_path / "orders.fits"
    Table({"wavelength": waves * u.AA, "flux": fluxes, "err": sigmas}).write(path)
    spec = read_spectrum(path, fitter="chebyshev")
    assert any("(chebyshev)" in n for n in spec.meta["reader_notes"])
    assert any("(clipped)" in n for n in read_spectrum(path).meta["reader_notes"])


def test_repeated_wavelengths_of_joined_segments_are_averaged(tmp_path):
    """Atlases joined from segments repeat the wavelength where two segments meet."""
    wave = np.r_[5000 + 0.1 * np.arange(50), 5004.9 + 0.1 * np.arange(50)]  # 5004.9 twice
    flux = np.r_[np.full(50, 1.0), np.full(50, 0.9)]
    sigma = np.r_[np.full(50, 0.02), np.full(50, 0.04)]
    mask = np.zeros(100, bool)
    path = tmp_path / "joined.csv"
    Table({"wave": wave, "flux": flux, "sigma": sigma, "mask": mask}).write(path)
    spec = read_spectrum(path)
    w = spec.spectral_axis.to_value(u.AA)
    assert w.size == 99 and np.all(np.diff(w) > 0)
    assert not spec.mask.any()  # the CSV's 'False' strings are good pixels
    k = int(np.argmin(np.abs(w - 5004.9)))
    assert spec.flux.value[k] == pytest.approx(0.95)
    assert spec.uncertainty.array[k] == pytest.approx(np.sqrt(0.02 ** 2 + 0.04 ** 2) / 2)
    assert any("1 repeated wavelength(s) (e.g. 5004.9)" in n for n in spec.meta["reader_notes"])
    # a masked duplicate does not count; a descending file is only reversed, with no note
    mask[49] = True
    descending = Table({"wave": wave[::-1], "flux": flux[::-1], "mask": mask[::-1]})
    descending.write(path, overwrite=True)
    spec = read_spectrum(path)
    assert spec.flux.value[k] == pytest.approx(0.9) and not spec.mask[k]
    assert not any("not in order" in n for n in spec.meta["reader_notes"])
