"""Tests of the augmentation pipeline (remap.augment)."""

import math

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum

from remap.augment import (DEFAULT_NOISE_LEVELS, add_noise, augment, crop, downconvolve,
                           gaussian_sigma_ln, resample, sample_seeds, to_medium)
from remap.exceptions import NoOverlapError, SpectrumError
from remap.surveys.base import Beam, Survey

FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


def line_spectrum(lam0=5000.0, r_in=100_000, step=0.005, half=40.0, depth=0.5, medium="air",
                  log_uniform=False):
    """A flat continuum with one Gaussian line of FWHM lam0 / r_in."""
    if log_uniform:            # pixels uniform in ln λ, as the linelist library's
        lnw = np.arange(np.log(lam0 - half), np.log(lam0 + half), step / lam0)
        wave = np.exp(lnw)
    else:
        wave = np.arange(lam0 - half, lam0 + half, step)
    sigma = lam0 / r_in / FWHM
    flux = 1.0 - depth * np.exp(-0.5 * ((wave - lam0) / sigma) ** 2)
    return Spectrum(flux=flux * u.Jy, spectral_axis=wave * u.AA,
                    meta={"resolution": r_in, "wavelength_medium": medium})


def measured_fwhm(spec, lam0):
    """FWHM from the second moment of the line's absorbed flux."""
    wave = spec.spectral_axis.to_value(u.AA)
    absorbed = 1.0 - spec.flux.value
    near = np.abs(wave - lam0) < 4.0
    var = np.sum(absorbed[near] * (wave[near] - lam0) ** 2) / np.sum(absorbed[near])
    return FWHM * math.sqrt(var)


@pytest.mark.parametrize("log_uniform", [False, True])
@pytest.mark.parametrize("r_out", [10_000, 11_000, 12_000])
def test_downconvolve_broadens_line_to_lambda_over_r(r_out, log_uniform):
    spec = line_spectrum(log_uniform=log_uniform)
    out = downconvolve(spec, r_out)
    assert out.meta["resolution"] == r_out
    np.testing.assert_allclose(measured_fwhm(out, 5000.0), 5000.0 / r_out, rtol=0.02)
    # the equivalent width is conserved
    ew_in = np.trapezoid(1 - spec.flux.value, spec.spectral_axis.value)
    ew_out = np.trapezoid(1 - out.flux.value, out.spectral_axis.value)
    np.testing.assert_allclose(ew_out, ew_in, rtol=1e-4)


def test_downconvolve_width_scales_with_wavelength():
    """Constant R: a line at 5600 Å gets a proportionally wider kernel than at 4900 Å."""
    wave = np.arange(4880.0, 5620.0, 0.01)
    lines = (4900.0, 5600.0)
    flux = np.ones_like(wave)
    for lam in lines:
        flux -= 0.4 * np.exp(-0.5 * ((wave - lam) / (lam / 1e6 / FWHM)) ** 2)
    spec = Spectrum(flux=flux * u.one, spectral_axis=wave * u.AA, meta={"resolution": 1e6})
    out = downconvolve(spec, 11_000)
    for lam in lines:
        part = crop(out, (lam - 5) * u.AA, (lam + 5) * u.AA)
        np.testing.assert_allclose(measured_fwhm(part, lam), lam / 11_000, rtol=0.01)


def test_downconvolve_batch_equals_single_and_keeps_flat_continuum():
    spec = line_spectrum()
    flux2 = np.stack([spec.flux.value, 2.0 * spec.flux.value])
    batch = Spectrum(flux=flux2 * u.Jy, spectral_axis=spec.spectral_axis,
                     meta={"resolution": 100_000})
    one = downconvolve(spec, 11_000)
    two = downconvolve(batch, 11_000)
    np.testing.assert_allclose(two.flux.value[0], one.flux.value, rtol=1e-12)
    np.testing.assert_allclose(two.flux.value[1], 2 * one.flux.value, rtol=1e-12)
    wave = spec.spectral_axis.value
    far = np.abs(wave - 5000.0) > 5
    np.testing.assert_allclose(one.flux.value[far], 1.0, atol=1e-9)


def test_downconvolve_propagates_uncertainty():
    """The propagated σ matches the scatter of convolved noise realisations."""
    rng = np.random.default_rng(3)
    wave = np.arange(5000.0, 5020.0, 0.01)
    noise = 0.05 * rng.standard_normal((400, wave.size))
    spec = Spectrum(flux=(1.0 + noise) * u.Jy, spectral_axis=wave * u.AA,
                    uncertainty=StdDevUncertainty(np.full(noise.shape, 0.05) * u.Jy),
                    meta={"resolution": 100_000})
    out = downconvolve(spec, 10_000)
    inner = slice(300, -300)
    scatter = np.std(out.flux.value[:, inner], axis=0).mean()
    predicted = out.uncertainty.array[:, inner].mean()
    np.testing.assert_allclose(predicted, scatter, rtol=0.05)
    assert predicted < 0.05 / 5


def test_downconvolve_masks_where_kernel_hits_bad_pixels():
    spec = line_spectrum()
    mask = np.zeros(spec.flux.shape, bool)
    mask[7970:8030] = True     # 4999.85-5000.15 Å, comparable to the kernel (σ = 0.21 Å)
    mask[4000] = True          # one bad pixel carries ~1 % of a kernel's weight: diluted
    spec = Spectrum(flux=spec.flux, spectral_axis=spec.spectral_axis, mask=mask,
                    meta=spec.meta)
    out = downconvolve(spec, 10_000)
    wave = out.spectral_axis.value
    assert out.mask[8000] and out.mask[7960]
    assert not out.mask[4000]
    assert not out.mask[np.abs(wave - 5000.0) > 0.6].any()


def test_downconvolve_errors():
    spec = line_spectrum()
    with pytest.raises(ValueError, match="already has R=100000"):
        downconvolve(spec, 200_000)
    with pytest.raises(ValueError, match="resolution must be a positive"):
        downconvolve(spec, -5)
    bare = Spectrum(flux=spec.flux, spectral_axis=spec.spectral_axis)
    with pytest.raises(SpectrumError, match="from_resolution"):
        downconvolve(bare, 10_000)
    out = downconvolve(bare, 10_000, from_resolution=100_000)
    np.testing.assert_allclose(out.flux.value, downconvolve(spec, 10_000).flux.value)


def test_gaussian_sigma_ln():
    assert gaussian_sigma_ln(10_000) == pytest.approx(1e-4 / FWHM)
    assert gaussian_sigma_ln(10_000, 100_000) == pytest.approx(
        math.sqrt(1e-8 - 1e-10) / FWHM)


def test_resample_cubic_spline_accuracy_and_batch():
    wave = np.arange(4990.0, 5110.0, 0.01)

    def truth(w):
        return 1.0 + 0.3 * np.sin(2 * np.pi * w / 1.7) * np.exp(-((w - 5050) / 30) ** 2)

    flux = np.stack([truth(wave), 3 * truth(wave)])
    spec = Spectrum(flux=flux * u.Jy, spectral_axis=wave * u.AA)
    grid = np.arange(5000.0, 5100.0, 0.1)
    out = resample(spec, grid * u.AA)
    np.testing.assert_array_equal(out.spectral_axis.value, grid)
    np.testing.assert_allclose(out.flux.value[0], truth(grid), atol=1e-7)
    np.testing.assert_allclose(out.flux.value[1], 3 * truth(grid), atol=3e-7)
    # a grid in nm (descending) gives the same result on an ascending Å axis
    out_nm = resample(spec, (grid[::-1] / 10) * u.nm)
    np.testing.assert_allclose(out_nm.flux.value, out.flux.value, rtol=1e-10)


def test_resample_uncertainty_mask_and_refusal():
    wave = np.arange(5000.0, 5010.0, 0.01)
    mask = np.zeros(wave.size, bool)
    mask[500] = True                            # 5005.00 Å
    spec = Spectrum(flux=np.ones(wave.size) * u.Jy, spectral_axis=wave * u.AA, mask=mask,
                    uncertainty=StdDevUncertainty(np.linspace(0.01, 0.02, wave.size) * u.Jy))
    grid = np.array([5001.0, 5004.995, 5005.0, 5006.0]) * u.AA
    out = resample(spec, grid)
    assert out.mask.tolist() == [False, True, True, False]
    np.testing.assert_allclose(out.uncertainty.array,
                               np.interp(grid.value, wave, np.linspace(0.01, 0.02, wave.size)))
    with pytest.raises(NoOverlapError, match="extrapolate"):
        resample(spec, np.array([4999.0, 5001.0]) * u.AA)
    with pytest.raises(TypeError, match="Quantity"):
        resample(spec, [5001.0, 5002.0])


def test_add_noise_level_and_determinism():
    wave = np.arange(5000.0, 5400.0, 0.1)
    cont = 2.0 + (wave - 5000) / 400
    spec = Spectrum(flux=cont * u.Jy, spectral_axis=wave * u.AA,
                    meta={"continuum": cont})
    noisy = add_noise(spec, 0.01, seed=7)
    resid = (noisy.flux.value - cont) / cont
    np.testing.assert_allclose(np.std(resid), 0.01, rtol=0.05)
    np.testing.assert_allclose(noisy.uncertainty.array, 0.01 * cont)
    assert noisy.meta["noise_sigma"] == 0.01
    again = add_noise(spec, snr=100, seed=7)
    assert again.flux.value.tobytes() == noisy.flux.value.tobytes()
    other = add_noise(spec, 0.01, seed=8)
    assert not np.array_equal(other.flux.value, noisy.flux.value)
    # median level: σ = frac × median flux
    med = add_noise(Spectrum(flux=cont * u.Jy, spectral_axis=wave * u.AA), 0.02, seed=1)
    np.testing.assert_allclose(med.uncertainty.array, 0.02 * np.median(cont))
    with pytest.raises(ValueError, match="exactly one"):
        add_noise(spec, 0.01, snr=100, seed=1)
    with pytest.raises(SpectrumError, match="continuum"):
        add_noise(Spectrum(flux=cont * u.Jy, spectral_axis=wave * u.AA), 0.01, seed=1,
                  level="continuum")


def test_add_noise_per_row_seeds_are_independent_of_batch():
    wave = np.arange(5000.0, 5100.0, 0.1)
    flux = np.ones((3, wave.size))
    batch = Spectrum(flux=flux * u.Jy, spectral_axis=wave * u.AA)
    seeds = sample_seeds(11, 3)
    full = add_noise(batch, [0.01, 0.02, 0.03], seed=seeds)
    single = add_noise(Spectrum(flux=flux[:1] * u.Jy, spectral_axis=wave * u.AA), 0.03,
                       seed=seeds[2:])
    np.testing.assert_array_equal(full.flux.value[2], single.flux.value[0])
    np.testing.assert_allclose(np.std(full.flux.value - 1, axis=1), [0.01, 0.02, 0.03],
                               rtol=0.15)
    with pytest.raises(ValueError, match="2 seeds given for 3"):
        add_noise(batch, 0.01, seed=seeds[:2])
    # the seeds depend on (seed, index) only
    np.testing.assert_array_equal(sample_seeds(11, 5)[:3], seeds)
    assert len(set(sample_seeds(12, 3)) & set(seeds)) == 0


def test_to_medium_round_trip():
    spec = line_spectrum(medium="vacuum")
    air = to_medium(spec, "air")
    assert air.meta["wavelength_medium"] == "air"
    # air wavelengths are shorter by ~1.4 Å at 5000 Å
    shift = spec.spectral_axis.value - air.spectral_axis.value
    assert 1.3 < shift.mean() < 1.5
    back = to_medium(air, "vacuum")
    np.testing.assert_allclose(back.spectral_axis.value, spec.spectral_axis.value, atol=1e-8)
    with pytest.raises(SpectrumError, match="wavelength_medium"):
        to_medium(Spectrum(flux=spec.flux, spectral_axis=spec.spectral_axis), "air")
    with pytest.raises(ValueError, match="medium must be"):
        to_medium(spec, "water")


class TinySurvey(Survey):
    name = "tiny"
    wavelength_medium = "air"
    beams = {"X": Beam("X", 4980 * u.AA, 5020 * u.AA, 11_000, (10_000, 12_000), 0.1 * u.AA)}


def test_augment_produces_45_ordered_samples_deterministically():
    wave = np.arange(4960.0, 5040.0, 0.01)
    sig = 5000.0 / 100_000 / FWHM
    cont = 1.0 + 0.001 * (wave - 5000)
    flux = cont * (1 - 0.6 * np.exp(-0.5 * ((wave - 5000.0) / sig) ** 2))
    spec = Spectrum(flux=flux * u.Jy, spectral_axis=wave * u.AA,
                    meta={"resolution": 100_000, "wavelength_medium": "air",
                          "continuum": cont})
    survey = TinySurvey()
    batch, samples = augment(spec, survey, "X", seed=5, fitter=None)
    assert batch.flux.shape == (45, survey.beams["X"].npix)
    np.testing.assert_allclose(batch.spectral_axis.value, survey.grid("X").value)
    assert samples["resolution"].tolist() == [10_000.0] * 15 + [11_000.0] * 15 + [12_000.0] * 15
    assert samples["sigma"][:3].tolist() == [DEFAULT_NOISE_LEVELS[0]] * 3
    assert samples["draw"][:6].tolist() == [0, 1, 2, 0, 1, 2]
    assert len(set(samples["seed"].tolist())) == 45
    # the line depth grows with resolution; the noise follows sigma
    grid = survey.grid("X").value
    core = np.argmin(np.abs(grid - 5000.0))
    clean = [resample(downconvolve(spec, r), survey.grid("X")).flux.value for r in
             (10_000, 11_000, 12_000)]
    assert clean[0][core] > clean[1][core] > clean[2][core]
    # the batched fast path of augment equals the public step functions (up to the
    # linear-interpolation error of mapping a cropped vs. a full λ-uniform axis to ln λ)
    zero, _ = augment(spec, survey, "X", seed=5, fitter=None, noise_levels=[0.0], draws=1)
    np.testing.assert_allclose(zero.flux.value, np.stack(clean), rtol=1e-4)
    resid = (batch.flux.value - np.repeat(np.stack(clean), 15, axis=0)) / cont[0]
    for i in (0, 14, 44):
        np.testing.assert_allclose(np.std(resid[i]), samples["sigma"][i], rtol=0.25)
    again, _ = augment(spec, survey, "X", seed=5, fitter=None)
    assert again.flux.value.tobytes() == batch.flux.value.tobytes()
    other, _ = augment(spec, survey, "X", seed=6, fitter=None)
    assert not np.array_equal(other.flux.value, batch.flux.value)
    # vacuum input is converted to the survey's air wavelengths before resampling
    vac = Spectrum(flux=spec.flux, spectral_axis=spec.spectral_axis,
                   meta={**spec.meta, "wavelength_medium": "vacuum"})
    shifted, _ = augment(vac, survey, "X", seed=5, fitter=None, noise_levels=[0.0], draws=1,
                         resolutions=[10_000])
    assert abs(grid[np.argmin(shifted.flux.value[0])] - (5000.0 - 1.4)) < 0.15
    with pytest.raises(ValueError, match="no beam 'Q'"):
        augment(spec, survey, "Q", seed=1, fitter=None)
    with pytest.raises(NoOverlapError):
        augment(crop(spec, 4990 * u.AA, 5040 * u.AA), survey, "X", seed=1, fitter=None)


# ------------------------------------------------------------------ partial coverage

def test_drop_coverage_is_seeded_deterministic_and_bounded():
    from remap.augment import drop_coverage
    rng = np.random.default_rng(3)
    flux = 1.0 - 0.2 * rng.random((400, 500))
    fill = np.full(500, 0.93)
    f1, m1, d1 = drop_coverage(flux, None, fill, seed=11, probability=0.5, max_fraction=0.4)
    f2, m2, d2 = drop_coverage(flux, None, fill, seed=11, probability=0.5, max_fraction=0.4)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(m1, m2)
    f3, _, _ = drop_coverage(flux, None, fill, seed=12, probability=0.5, max_fraction=0.4)
    assert not np.array_equal(f1, f3)
    assert np.all(flux == 1.0 - 0.2 * np.random.default_rng(3).random((400, 500)))  # input kept
    # about half the rows, 0-40 % each, in-painted with the fill and masked
    touched = d1 > 0
    assert 0.4 < touched.mean() < 0.6
    assert d1.max() <= 0.4 + 1 / 500
    np.testing.assert_allclose(m1.mean(axis=1), d1)
    assert np.all(f1[m1] == 0.93) and np.all(f1[~m1] == flux[~m1])
    # spans at the blue end, the red end and inside
    blue = m1[:, 0] & touched
    red = m1[:, -1] & touched
    gap = touched & ~blue & ~red
    assert blue.sum() > 30 and red.sum() > 30 and gap.sum() > 30
    for r in np.flatnonzero(touched):          # one contiguous span per row
        assert np.count_nonzero(np.diff(m1[r].astype(int)) != 0) <= 2
    # probability 0 changes nothing
    f0, m0, d0 = drop_coverage(flux, None, fill, seed=11, probability=0.0)
    np.testing.assert_array_equal(f0, flux)
    assert not m0.any() and not d0.any()


def test_drop_coverage_results_do_not_depend_on_the_shard():
    from remap.augment import drop_coverage_results
    rng = np.random.default_rng(0)
    points = [({"A": rng.random((6, 50)), "B": rng.random((6, 40))},
               {"A": np.zeros((6, 50), bool), "B": np.zeros((6, 40), bool)}, None, 100 + i)
              for i in range(4)]
    fill = {"A": np.zeros(50), "B": np.zeros(40)}
    together = drop_coverage_results(points, ["A", "B"], fill, probability=0.8)
    alone = drop_coverage_results(points[2:3], ["A", "B"], fill, probability=0.8)
    np.testing.assert_array_equal(together[2][0]["A"], alone[0][0]["A"])
    np.testing.assert_array_equal(together[2][1]["B"], alone[0][1]["B"])
    assert not np.array_equal(together[0][1]["A"], together[1][1]["A"])


def test_drop_coverage_checks_its_arguments():
    from remap.augment import drop_coverage
    with pytest.raises(ValueError, match="fill"):
        drop_coverage(np.ones((2, 10)), None, np.ones(9), seed=0)
    with pytest.raises(ValueError, match="probability must be a number in"):
        drop_coverage(np.ones((2, 10)), None, np.ones(10), seed=0, probability=1.5)
    with pytest.raises(ValueError, match="max_fraction"):
        drop_coverage(np.ones((2, 10)), None, np.ones(10), seed=0, max_fraction=1.0)


def test_downconvolve_and_convolve_rows_share_one_kernel():
    from remap.spectra.resolution import convolve_rows
    spec = line_spectrum(r_in=60_000, step=0.01)
    wave = spec.spectral_axis.to_value(u.AA)
    ref = downconvolve(spec, 11_000).flux.value
    flux = np.vstack([spec.flux.value, spec.flux.value])
    out, mask, std = convolve_rows(wave, flux, 11_000, [60_000, 11_000])
    np.testing.assert_allclose(out[0], ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out[1], flux[1])          # already at R_out: unchanged
    assert std is None and not mask.any()
    # per-row grids and a masked pixel (filled, convolved, masked again)
    m = np.zeros_like(flux, bool)
    m[0, 4000] = True
    bad = flux.copy()
    bad[0, 4000] = 1e6
    out2, mask2, _ = convolve_rows(np.vstack([wave, wave]), bad, 11_000, 60_000, mask=m)
    assert mask2[0, 4000] and not mask2[1].any()
    assert np.max(np.abs(out2[0] - ref)) < 1e-3
