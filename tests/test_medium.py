"""Tests of remap.spectra.medium: air <-> vacuum wavelengths."""

import astropy.units as u
import numpy as np
import pytest
from astropy.tests.helper import assert_quantity_allclose
from specutils import Spectrum
from specutils.utils.wcs_utils import vac_to_air

from remap.spectra.medium import (MEDIA, air_to_vacuum, convert_medium, refractive_index,
                                  vacuum_to_air, validate_medium)

# NIST Atomic Spectra Database (Kramida et al.), Na I D2 and D1: (vacuum, air) in Å
NA_D = [(5891.58326, 5889.95095), (5897.55813, 5895.92424)]
# Balmer lines as tabulated to 0.01 Å (e.g. SDSS line lists): (vacuum, air)
BALMER = [(6564.61, 6562.80), (4862.68, 4861.33)]


@pytest.mark.parametrize("vac, air", NA_D)
def test_nist_sodium_d(vac, air):
    assert abs(vacuum_to_air(vac * u.AA).value - air) < 2e-4
    assert abs(air_to_vacuum(air * u.AA).value - vac) < 2e-4


@pytest.mark.parametrize("vac, air", BALMER)
def test_balmer_lines(vac, air):
    assert abs(vacuum_to_air(vac * u.AA).value - air) < 0.01
    assert abs(air_to_vacuum(air * u.AA).value - vac) < 0.01


def test_agrees_with_specutils_morton2000():
    wave = np.linspace(2000, 20000, 500) * u.AA
    assert_quantity_allclose(vacuum_to_air(wave), vac_to_air(wave, method="Morton2000"),
                             rtol=0, atol=1e-9 * u.AA)


def test_round_trip_is_exact_and_vectorized():
    wave = np.linspace(2001, 99000, 20001).reshape(3, -1) * u.AA
    back = air_to_vacuum(vacuum_to_air(wave))
    assert back.shape == wave.shape
    assert np.max(np.abs(back - wave)) < 1e-6 * u.AA
    forth = vacuum_to_air(air_to_vacuum(wave))
    assert np.max(np.abs(forth - wave)) < 1e-6 * u.AA
    # element-wise equals scalar calls
    assert vacuum_to_air(wave)[1, 7] == vacuum_to_air(wave[1, 7])


def test_air_is_shorter_by_the_refractive_index():
    wave = np.array([3000.0, 5000.0, 8000.0]) * u.AA
    n = refractive_index(wave)
    assert np.all((n > 1.00027) & (n < 1.00030))
    assert np.all(np.diff(n) < 0)  # normal dispersion
    assert_quantity_allclose(vacuum_to_air(wave), wave / n)


@pytest.mark.parametrize("unit", [u.nm, u.um, u.Hz, u.eV, u.cm ** -1])
def test_any_spectral_unit_in_same_unit_out(unit):
    wave = (5000.0 * u.AA).to(unit, equivalencies=u.spectral())
    air = vacuum_to_air(wave)
    assert air.unit == unit
    assert_quantity_allclose(air.to(u.AA, equivalencies=u.spectral()),
                             vacuum_to_air(5000.0 * u.AA), rtol=1e-12)


@pytest.mark.parametrize("bad, exc, match", [
    (5000.0, TypeError, "Quantity"),
    (5000.0 * u.s, u.UnitsError, "not a wavelength"),
    (1500.0 * u.AA, ValueError, "2000-100000"),
    (np.array([5000.0, np.nan]) * u.AA, ValueError, "NaN"),
])
def test_bad_wavelengths(bad, exc, match):
    with pytest.raises(exc, match=match):
        vacuum_to_air(bad)
    with pytest.raises(exc, match=match):
        air_to_vacuum(bad)


def test_validate_medium():
    assert MEDIA == ("air", "vacuum")
    assert validate_medium(" Air ") == "air"
    for bad in ("vac", "", None, 1):
        with pytest.raises(ValueError, match="'air' or 'vacuum'"):
            validate_medium(bad)


def test_convert_medium_quantity_and_same_medium():
    wave = np.array([5000.0, 5500.0]) * u.AA
    assert_quantity_allclose(convert_medium(wave, "vacuum", "air"), vacuum_to_air(wave))
    assert_quantity_allclose(convert_medium(wave, "air", "vacuum"), air_to_vacuum(wave))
    same = convert_medium(wave, "air", "air")
    assert same is not wave and np.all(same == wave)
    with pytest.raises(ValueError, match="to_medium"):
        convert_medium(wave, "air", "water")
    with pytest.raises(TypeError, match="Spectrum or a Quantity"):
        convert_medium([5000.0], "air", "vacuum")


def test_convert_medium_spectrum_keeps_flux_mask_uncertainty():
    from astropy.nddata import StdDevUncertainty
    rng = np.random.default_rng(3)
    wave = np.linspace(5000, 5100, 200) * u.AA
    flux = (1 + 0.01 * rng.normal(size=200)) * u.Jy
    mask = rng.random(200) < 0.1
    spec = Spectrum(flux=flux, spectral_axis=wave, mask=mask,
                    uncertainty=StdDevUncertainty(np.full(200, 0.01) * u.Jy),
                    meta={"object": "x", "wavelength_medium": "vacuum"})
    air = convert_medium(spec, "vacuum", "air")
    assert_quantity_allclose(air.spectral_axis, vacuum_to_air(wave))
    assert np.all(air.flux == spec.flux) and np.all(air.mask == mask)
    assert np.all(air.uncertainty.array == 0.01)
    assert air.meta == {"object": "x", "wavelength_medium": "air"}
    assert spec.meta["wavelength_medium"] == "vacuum"  # input untouched
    back = convert_medium(air, "air", "vacuum")
    assert np.max(np.abs(back.spectral_axis - wave)) < 1e-6 * u.AA


# ------------------------------------------------------------- the medium in metadata
def test_medium_from_header_keywords():
    from astropy.io import fits

    from remap.spectra.medium import medium_from_header

    cases = [({"AIRORVAC": "air"}, "air"), ({"airorvac": "VAC"}, "vacuum"),
             ({"VACUUM": True}, "vacuum"), ({"VACUUM": False}, "air"),
             ({"WAVE_MED": "vacuum"}, "vacuum"), ({"WAVEMED": "Air"}, "air"),
             ({"CTYPE1": "AWAV-LOG"}, "air"), ({"CTYPE1": "WAVE-TAB"}, "vacuum"),
             ({"CTYPE1": "LINEAR"}, None), ({"VACUUM": "maybe"}, None), ({}, None),
             ({"wavelength_medium": "vacuum"}, "vacuum"),
             # the explicit keyword wins over CTYPE1
             ({"AIRORVAC": "air", "CTYPE1": "WAVE"}, "air")]
    for header, expected in cases:
        assert medium_from_header(header) == expected, header
        if all(len(k) <= 8 for k in header):
            assert medium_from_header(fits.Header(header)) == expected, header
    assert medium_from_header(None) is None
    with pytest.raises(ValueError, match="contradicting wavelength media: AIRORVAC -> air, "
                                         "VACUUM -> vacuum"):
        medium_from_header({"AIRORVAC": "air", "VACUUM": True})
    with pytest.raises(TypeError, match="header must be"):
        medium_from_header(["AIRORVAC"])


def test_resolve_medium():
    from remap.spectra.medium import resolve_medium

    assert resolve_medium({}) == ("air", True)
    assert resolve_medium(None, default="vacuum") == ("vacuum", True)
    assert resolve_medium({"wavelength_medium": "Vacuum"}) == ("vacuum", False)
    assert resolve_medium({"wavelength_medium": "vacuum"}, "air") == ("air", False)
    with pytest.raises(ValueError, match=r"star.meta\['wavelength_medium'\] must be"):
        resolve_medium({"wavelength_medium": "glass"}, name="star")
    with pytest.raises(ValueError, match="default must be 'air' or 'vacuum'"):
        resolve_medium({}, default="water")


def test_apply_medium_sets_meta_only():
    from specutils import SpectrumList

    from remap.spectra.medium import apply_medium

    spec = Spectrum(flux=np.ones(10) * u.Jy, spectral_axis=np.arange(5000, 5010) * u.AA,
                    meta={"object": "HD 190406"})
    out = apply_medium(spec, "VACUUM")
    assert out.meta == {"object": "HD 190406", "wavelength_medium": "vacuum"}
    assert spec.meta == {"object": "HD 190406"}  # the input is left alone
    assert_quantity_allclose(out.spectral_axis, spec.spectral_axis, rtol=0)
    both = apply_medium(SpectrumList([spec, spec]), "air")
    assert isinstance(both, SpectrumList)
    assert [s.meta["wavelength_medium"] for s in both] == ["air", "air"]
    with pytest.raises(ValueError, match="medium must be 'air' or 'vacuum'"):
        apply_medium(spec, "glass")
    with pytest.raises(TypeError, match="specutils.Spectrum"):
        apply_medium(np.ones(3), "air")


def test_warn_medium_assumed_once_for_many():
    import warnings

    from remap import MediumAssumedWarning
    from remap.spectra.medium import warn_medium_assumed

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_medium_assumed([f"s{i}.fits" for i in range(5)], "air", "survey 'marvels'")
        warn_medium_assumed([], "air")
    assert len(caught) == 1 and caught[0].category is MediumAssumedWarning
    message = str(caught[0].message)
    assert message.startswith("5 spectra declare no wavelength medium (s0.fits, s1.fits, "
                              "s2.fits and 2 more); assumed air wavelengths (survey 'marvels')")
    assert "--medium" in message
    with pytest.warns(MediumAssumedWarning, match=r"^1 spectrum declares"):
        warn_medium_assumed(["x.fits"], "vacuum")


def test_declare_medium_for_each_shape_of_star():
    from specutils import SpectrumList

    from remap.spectra.medium import declare_medium

    bare = Spectrum(flux=np.ones(10) * u.Jy, spectral_axis=np.arange(5000, 5010) * u.AA)
    vac = Spectrum(flux=np.ones(10) * u.Jy, spectral_axis=np.arange(5000, 5010) * u.AA,
                   meta={"wavelength_medium": "vacuum"})
    out, assumed = declare_medium(bare, default="air")
    assert assumed and out.meta["wavelength_medium"] == "air" and out is not bare
    out, assumed = declare_medium(vac, default="air")
    assert not assumed and out is vac
    out, assumed = declare_medium(SpectrumList([vac, bare]))
    assert assumed and isinstance(out, SpectrumList)
    assert [s.meta["wavelength_medium"] for s in out] == ["vacuum", "air"]
    out, assumed = declare_medium({"A": bare, "B": vac}, medium="air")
    assert not assumed and {k: s.meta["wavelength_medium"] for k, s in out.items()} == \
        {"A": "air", "B": "air"}
    out, assumed = declare_medium([bare], default="vacuum")
    assert assumed and isinstance(out, list) and out[0].meta["wavelength_medium"] == "vacuum"
    with pytest.raises(TypeError, match="declare_medium expects"):
        declare_medium("star.fits")
