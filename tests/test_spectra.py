"""Tests of input validation and canonicalisation: remap.spectra.prepare."""

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
from astropy.tests.helper import assert_quantity_allclose
from astropy.utils.exceptions import AstropyDeprecationWarning
from specutils import Spectrum

from remap.exceptions import SpectrumError
from remap.spectra.validation import MAX_BAD_FRACTION, MIN_PIXELS, prepare, stddev_of, wavelength_of

NPIX = 64
WAVE = np.linspace(5000.0, 5063.0, NPIX) * u.AA
FLAM = u.erg / u.s / u.cm ** 2 / u.AA


def make(flux=None, wave=WAVE, **kwargs):
    rng = np.random.default_rng(11)
    if flux is None:
        flux = (1.0 + 0.01 * rng.normal(size=np.shape(wave)[-1])) * FLAM
    return Spectrum(flux=flux, spectral_axis=wave, **kwargs)


def test_defaults():
    assert MIN_PIXELS == 16 and MAX_BAD_FRACTION == 0.5


def test_canonical_output_and_input_untouched():
    spec = make(meta={"object": "HD 1"})
    flux_before = spec.flux.copy()
    out = prepare(spec)
    assert out is not spec
    assert out.spectral_axis.unit == u.AA and np.all(np.diff(out.spectral_axis.value) > 0)
    assert out.flux.unit == FLAM and out.flux.dtype == np.float64
    assert out.mask.dtype == bool and not out.mask.any()
    assert out.uncertainty is None
    assert out.meta == {"object": "HD 1"} and out.meta is not spec.meta
    assert np.all(spec.flux == flux_before)


def test_deprecated_spectrum1d_is_accepted():
    from specutils import Spectrum1D
    with pytest.warns(AstropyDeprecationWarning, match="Spectrum1D"):
        old = Spectrum1D(flux=np.ones(NPIX) * u.Jy, spectral_axis=WAVE)
    out = prepare(old)
    assert isinstance(out, Spectrum)
    assert_quantity_allclose(out.spectral_axis, WAVE)


@pytest.mark.parametrize("unit", [u.AA, u.nm, u.um, u.Hz, u.eV, u.cm ** -1])
def test_spectral_axis_units(unit):
    axis = WAVE.to(unit, equivalencies=u.spectral())
    flux = np.arange(1.0, NPIX + 1) * u.Jy  # identifies the pixel order
    out = prepare(Spectrum(flux=flux, spectral_axis=axis))
    assert out.spectral_axis.unit == u.AA
    assert_quantity_allclose(out.spectral_axis, WAVE, rtol=1e-12)
    assert np.all(out.flux == flux)
    # the same axis given in increasing frequency/energy/wavenumber order is flipped
    out = prepare(Spectrum(flux=flux[::-1], spectral_axis=axis[::-1]))
    assert_quantity_allclose(out.spectral_axis, WAVE, rtol=1e-12)
    assert np.all(out.flux == flux)


@pytest.mark.parametrize("unit", [FLAM, u.Jy, u.dimensionless_unscaled, u.ct])
def test_flux_units_kept(unit):
    out = prepare(make(flux=np.full(NPIX, 3.0) * unit))
    assert out.flux.unit == unit
    assert np.all(out.flux.value == 3.0)


@pytest.mark.parametrize("uncertainty, expected", [
    (StdDevUncertainty(np.full(NPIX, 0.2) * u.Jy), 0.2),
    (StdDevUncertainty(np.full(NPIX, 200.0) * u.mJy), 0.2),
    (VarianceUncertainty(np.full(NPIX, 0.04) * u.Jy ** 2), 0.2),
    (VarianceUncertainty(np.full(NPIX, 0.04)), 0.2),  # unit taken from the flux
    (InverseVariance(np.full(NPIX, 25.0) / u.Jy ** 2), 0.2),
    (InverseVariance(np.full(NPIX, 25.0e-6) / u.mJy ** 2), 0.2),
])
def test_uncertainty_types_converted_to_stddev(uncertainty, expected):
    out = prepare(make(flux=np.ones(NPIX) * u.Jy, uncertainty=uncertainty))
    assert isinstance(out.uncertainty, StdDevUncertainty)
    assert out.uncertainty.unit == u.Jy
    np.testing.assert_allclose(out.uncertainty.array, expected, rtol=1e-12)
    assert not out.mask.any()


def test_non_positive_variance_and_negative_stddev_are_masked():
    var = np.full(NPIX, 0.04)
    var[[3, 9]] = [-1.0, np.nan]
    out = prepare(make(flux=np.ones(NPIX) * u.Jy, uncertainty=VarianceUncertainty(var)))
    assert set(np.flatnonzero(out.mask)) == {3, 9}
    assert np.all(np.isfinite(out.uncertainty.array))
    ivar = np.full(NPIX, 25.0)
    ivar[5] = 0.0
    out = prepare(make(flux=np.ones(NPIX) * u.Jy, uncertainty=InverseVariance(ivar)))
    assert np.flatnonzero(out.mask).tolist() == [5]
    std = np.full(NPIX, 0.1)
    std[7] = -0.1
    out = prepare(make(flux=np.ones(NPIX) * u.Jy, uncertainty=StdDevUncertainty(std)))
    assert np.flatnonzero(out.mask).tolist() == [7]


def test_uncertainty_unit_mismatch():
    # specutils refuses this on construction; stddev_of checks it for any NDData uncertainty
    with pytest.raises(u.UnitConversionError):
        make(flux=np.ones(NPIX) * u.Jy, uncertainty=StdDevUncertainty(np.ones(NPIX) * u.s))
    with pytest.raises(SpectrumError, match="uncertainty unit s does not match"):
        stddev_of(StdDevUncertainty(np.ones(3) * u.s), (3,), u.Jy)


def test_mask_kept_and_masked_flux_filled():
    flux = np.linspace(1.0, 2.0, NPIX)
    mask = np.zeros(NPIX, bool)
    mask[10:13] = True
    original = flux.copy()
    flux[10:13] = -1e6  # garbage under the mask
    out = prepare(make(flux=flux * u.Jy, mask=mask))
    assert np.all(out.mask == mask)
    np.testing.assert_allclose(out.flux.value, original, rtol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_minority_non_finite_masked_and_interpolated(bad):
    flux = np.linspace(1.0, 2.0, NPIX)
    expected = flux.copy()
    flux[[0, 20, 21, NPIX - 1]] = bad
    out = prepare(make(flux=flux * u.Jy))
    assert np.flatnonzero(out.mask).tolist() == [0, 20, 21, NPIX - 1]
    assert np.all(np.isfinite(out.flux.value))
    np.testing.assert_allclose(out.flux.value[20:22], expected[20:22], rtol=1e-12)
    # edges take the nearest good value (np.interp does not extrapolate)
    assert out.flux.value[0] == expected[1] and out.flux.value[-1] == expected[-2]


def test_non_finite_uncertainty_masked():
    std = np.full(NPIX, 0.1)
    std[4] = np.inf
    out = prepare(make(flux=np.ones(NPIX) * u.Jy, uncertainty=StdDevUncertainty(std)))
    assert np.flatnonzero(out.mask).tolist() == [4]


def test_majority_bad_is_refused():
    flux = np.ones(NPIX)
    flux[: NPIX // 2 + 1] = np.nan
    with pytest.raises(SpectrumError, match=r"33 of 64 pixels \(52%\) are masked or not finite"):
        prepare(make(flux=flux * u.Jy))
    mask = np.zeros(NPIX, bool)
    mask[: NPIX // 2] = True  # exactly half is allowed
    assert prepare(make(flux=np.ones(NPIX) * u.Jy, mask=mask)).mask.sum() == NPIX // 2
    with pytest.raises(SpectrumError, match="at most 10% may be bad"):
        prepare(make(flux=np.ones(NPIX) * u.Jy, mask=mask), max_bad_fraction=0.1)


def test_descending_axis_is_flipped_with_everything_else():
    flux = np.arange(NPIX, dtype=float) + 1
    mask = np.zeros(NPIX, bool)
    mask[2] = True
    std = np.linspace(0.1, 0.2, NPIX)
    spec = Spectrum(flux=flux * u.Jy, spectral_axis=WAVE[::-1], mask=mask,
                    uncertainty=StdDevUncertainty(std))
    out = prepare(spec)
    assert_quantity_allclose(out.spectral_axis, WAVE)
    assert np.flatnonzero(out.mask).tolist() == [NPIX - 3]
    np.testing.assert_allclose(out.uncertainty.array, std[::-1])
    unmasked = ~out.mask
    np.testing.assert_allclose(out.flux.value[unmasked], flux[::-1][unmasked])


def test_duplicate_wavelengths_refused():
    wave = WAVE.value.copy()
    wave[30] = wave[29]
    with pytest.raises(SpectrumError, match="duplicate values .* pixels 29 and 30"):
        prepare(make(wave=wave * u.AA))


class _ReorderedAxis(Spectrum):
    """A Spectrum subclass whose axis is scrambled (specutils itself refuses that)."""

    @property
    def spectral_axis(self):
        axis = u.Quantity(super().spectral_axis).copy()
        axis[[10, 11]] = axis[[11, 10]]
        return axis


def test_non_monotonic_axis_refused():
    spec = _ReorderedAxis(flux=np.ones(NPIX) * u.Jy, spectral_axis=WAVE)
    with pytest.raises(SpectrumError, match="not monotonic .* pixel 11"):
        prepare(spec)


def test_specutils_refuses_non_monotonic_and_unitless_inputs():
    # the contract prepare relies on: these never reach it as a Spectrum
    with pytest.raises(ValueError, match="strictly increasing or decreasing"):
        Spectrum(flux=np.ones(NPIX) * u.Jy, spectral_axis=WAVE[np.r_[1, 0, 2:NPIX]])
    with pytest.raises(ValueError, match="Flux must be a `Quantity`"):
        Spectrum(flux=np.ones(NPIX), spectral_axis=WAVE)


@pytest.mark.parametrize("axis, match", [
    (None, "in pix units"),
    (np.arange(NPIX) * u.pix, "in pix units"),
    (np.linspace(-100, 100, NPIX) * u.km / u.s, "velocity"),
])
def test_axis_without_spectral_unit_refused(axis, match):
    spec = Spectrum(flux=np.ones(NPIX) * u.Jy, spectral_axis=axis) if axis is not None else \
        Spectrum(flux=np.ones(NPIX) * u.Jy)
    with pytest.raises(SpectrumError, match=f"star: .*{match}"):
        prepare(spec, name="star")


def test_wavelength_of_errors():
    with pytest.raises(SpectrumError, match="no unit"):
        wavelength_of(np.arange(5.0))
    with pytest.raises(SpectrumError, match="not a spectral unit"):
        wavelength_of(np.arange(1.0, 5.0) * u.s)
    with pytest.raises(SpectrumError, match="NaN or infinite"):
        wavelength_of(np.array([1.0, np.nan]) * u.AA)


def test_empty_and_too_short_refused():
    with pytest.raises(SpectrumError, match="empty"):
        prepare(Spectrum(flux=np.ones(0) * u.Jy, spectral_axis=np.ones(0) * u.AA))
    short = make(wave=WAVE[:10], flux=np.ones(10) * u.Jy)
    with pytest.raises(SpectrumError, match="only 10 pixels; at least 16"):
        prepare(short)
    assert prepare(short, min_pixels=10).shape == (10,)
    mask = np.zeros(NPIX, bool)
    mask[:50] = True
    with pytest.raises(SpectrumError, match="only 14 usable pixels"):
        prepare(make(flux=np.ones(NPIX) * u.Jy, mask=mask), max_bad_fraction=0.9)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_zero_or_negative_flux_refused(value):
    with pytest.raises(SpectrumError, match="zero or negative everywhere"):
        prepare(make(flux=np.full(NPIX, value) * u.Jy))


def test_batch():
    rng = np.random.default_rng(5)
    flux = 1 + 0.01 * rng.normal(size=(3, NPIX))
    flux[1, 7] = np.nan
    var = np.full((3, NPIX), 0.0001)
    out = prepare(Spectrum(flux=flux * u.Jy, spectral_axis=WAVE[::-1],
                           uncertainty=VarianceUncertainty(var)))
    assert out.flux.shape == out.mask.shape == out.uncertainty.array.shape == (3, NPIX)
    assert out.spectral_axis.shape == (NPIX,)
    assert np.argwhere(out.mask).tolist() == [[1, NPIX - 1 - 7]]
    np.testing.assert_allclose(out.flux.value[0], flux[0, ::-1])
    np.testing.assert_allclose(out.uncertainty.array, 0.01)


def test_batch_error_names_the_spectrum():
    flux = np.ones((3, NPIX))
    flux[2] = 0.0
    with pytest.raises(SpectrumError, match=r"batch\[2\]: the flux is zero or negative"):
        prepare(make(flux=flux * u.Jy), name="batch")
    flux = np.ones((2, NPIX))
    flux[0, :40] = np.nan
    with pytest.raises(SpectrumError, match=r"batch\[0\]: 40 of 64"):
        prepare(make(flux=flux * u.Jy), name="batch")


def test_three_dimensional_flux_refused():
    spec = Spectrum(flux=np.ones((2, 2, NPIX)) * u.Jy, spectral_axis=WAVE)
    with pytest.raises(SpectrumError, match="3 dimensions"):
        prepare(spec)


def test_wrong_uncertainty_shape_refused():
    spec = make(flux=np.ones(NPIX) * u.Jy)
    spec.uncertainty = StdDevUncertainty(np.ones(NPIX - 1))  # NDData does not check this
    with pytest.raises(SpectrumError, match=r"spectrum: the uncertainty has shape \(63,\)"):
        prepare(spec)


def test_wrong_mask_shape_refused():
    # specutils checks the mask on construction; prepare checks it for subclasses that don't
    with pytest.raises(ValueError, match="mask"):
        make(flux=np.ones(NPIX) * u.Jy, mask=np.zeros(NPIX - 1, bool))

    class LooseMask(Spectrum):
        @property
        def mask(self):
            return np.zeros(NPIX - 1, bool)

        @mask.setter
        def mask(self, value):
            pass

    with pytest.raises(SpectrumError, match=r"the mask has shape \(63,\)"):
        prepare(LooseMask(flux=np.ones(NPIX) * u.Jy, spectral_axis=WAVE))


def test_stddev_of_unknown_type():
    from astropy.nddata import UnknownUncertainty
    with pytest.raises(SpectrumError, match="unsupported uncertainty type"):
        stddev_of(UnknownUncertainty(np.ones(3)), (3,), u.Jy)
    assert stddev_of(None, (3,), u.Jy) is None


def test_bad_arguments():
    with pytest.raises(TypeError, match="expected a specutils.Spectrum"):
        prepare(np.ones(NPIX))
    with pytest.raises(ValueError, match="min_pixels"):
        prepare(make(), min_pixels=1)
    with pytest.raises(ValueError, match="max_bad_fraction"):
        prepare(make(), max_bad_fraction=1.0)


def _check_rows_numpy(flux, std, mask, has_std):
    """The pixel rules of check_rows written with NumPy (its formulation before the kernel)."""
    n = flux.shape[0]
    bad = ~np.isfinite(flux)
    if mask is not None:
        bad |= mask
    zero_rows = np.zeros(n, bool)
    if std is None:
        sigma = np.full(flux.shape, np.nan)
    else:
        given = np.ones(n, bool) if has_std is None else np.asarray(has_std, bool)
        with np.errstate(invalid="ignore"):
            std = np.where(std >= 0, std, np.nan)
        finite = np.isfinite(std)
        zero_rows = given & np.all(~finite | (std == 0), axis=1) & np.any(finite, axis=1)
        use = given & ~zero_rows
        bad |= use[:, None] & ~(finite & (std > 0))
        sigma = np.where(use[:, None], std, np.nan)
    return bad, sigma, np.count_nonzero(bad, axis=1), np.any((flux > 0) & ~bad, axis=1), zero_rows


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_scan_kernel_equals_the_numpy_rules(dtype):
    from remap.spectra._rows_kernel import scan_rows
    rng = np.random.default_rng(4)
    n, npix = 30, 400
    flux = (1 + 0.1 * rng.standard_normal((n, npix))).astype(dtype)
    flux[rng.random((n, npix)) < 0.02] = np.nan
    flux[2] = -1.0
    flux[3, :390] = np.inf
    std = np.abs(0.01 * rng.standard_normal((n, npix))).astype(dtype)
    for value, p in ((0.0, 0.01), (-0.01, 0.01), (np.inf, 0.01), (np.nan, 0.01)):
        std[rng.random((n, npix)) < p] = value
    std[5] = 0.0                     # zero everywhere: not given
    std[6] = 0.0
    std[6, 7] = np.nan               # zero where finite: not given
    std[7] = np.nan                  # nowhere finite: given, every pixel bad
    mask = rng.random((n, npix)) < 0.03
    has = rng.random(n) < 0.8
    for s, m, h in ((std, mask, has), (std, None, None), (None, mask, None), (None, None, None)):
        got = scan_rows(flux, s, m, h)
        want = _check_rows_numpy(flux, s, m, h)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype or g.dtype.kind == w.dtype.kind == "i"
            np.testing.assert_array_equal(g, w)
