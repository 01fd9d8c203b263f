"""Radial velocities: Doppler shifts, the batch cross-correlation and the rest_frame stage."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import astropy.units as u  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from astropy.nddata import StdDevUncertainty  # noqa: E402
from specutils import Spectrum  # noqa: E402

import remap  # noqa: E402
from remap.libraries.linelist import LineListLibrary  # noqa: E402
from remap.spectra.resampling import spline  # noqa: E402
from remap.spectra.resolution import downconvolve  # noqa: E402
from remap.spectra.velocity import (C_KMS, TemplateBank, doppler_factor,  # noqa: E402
                                    estimate_rv, rv_quality, to_observed_frame, to_rest_frame)

FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))
GRID = 4850.0 + 0.1 * np.arange(4301)          # a model grid (beam A)
LINES = np.random.default_rng(7).uniform(4800, 5330, 900)
DEPTHS = np.random.default_rng(8).uniform(0.02, 0.6, 900) ** 1.5


def lines(wave, resolution, depth_scale=1.0, rv=0.0):
    """A normalized spectrum of Gaussian lines of FWHM λ/R (plus a small intrinsic width)."""
    centres = to_observed_frame(LINES, rv)
    flux = np.ones_like(wave)
    for c, d in zip(centres, DEPTHS * depth_scale):
        sigma = np.hypot(c / resolution / FWHM, 0.02)
        near = np.abs(wave - c) < 8 * sigma
        flux[near] *= 1.0 - d * np.exp(-0.5 * ((wave[near] - c) / sigma) ** 2)
    return flux


@pytest.fixture(scope="module")
def bank():
    templates = np.vstack([lines(GRID, 11_000, s) for s in (0.6, 1.0, 1.5)])
    return TemplateBank(GRID, np.vstack([templates.mean(0), templates]), resolution=11_000)


def test_doppler_shift_round_trip_and_exact_formula():
    wave = np.linspace(4800.0, 5800.0, 1001)
    for v in (-300.0, -0.1, 0.0, 42.0, 300.0):
        back = to_rest_frame(to_observed_frame(wave, v), v)
        np.testing.assert_allclose(back, wave, rtol=1e-15)
    beta = 300.0 / C_KMS
    assert doppler_factor(300.0) == pytest.approx(np.sqrt((1 + beta) / (1 - beta)), rel=1e-15)
    assert abs(doppler_factor(300.0) - (1 + beta)) > 4e-7      # the first order is not used
    rows = to_rest_frame(np.vstack([wave, wave]), np.array([10.0, -10.0]))
    assert rows[0, 0] < wave[0] < rows[1, 0]
    q = to_rest_frame(wave * u.AA, 5.0)
    assert q.unit == u.AA
    with pytest.raises(ValueError, match="below c"):
        doppler_factor(4e5)


@pytest.mark.parametrize("rv", [-300.0, -123.4, -0.7, 0.0, 57.8, 300.0])
def test_rv_recovered_at_snr_50(bank, rv):
    wave = np.arange(4830.0, 5300.0, 0.1)
    rng = np.random.default_rng(int(abs(rv) * 10))
    flux = lines(wave, 11_000, 1.1, rv=rv) * (1 + 2e-4 * (wave - 5000)) * 3e4
    flux = flux + rng.normal(0, 3e4 / 50, wave.size)
    est = estimate_rv(wave, flux[None], [bank])
    assert abs(est.rv[0] - rv) < 0.5
    assert 0 < est.rv_err[0] < 0.5
    assert not est.uncertain[0] and est.peak[0] > 0.8 and est.template[0] >= 0


def test_rv_of_rows_on_their_own_grids_and_masks(bank):
    rvs = np.array([-40.0, 12.5, 250.0])
    waves = np.stack([np.arange(4830.0, 5300.0, 0.1) + off for off in (0.0, 0.03, 0.07)])
    flux = np.stack([lines(w, 11_000, rv=v) for w, v in zip(waves, rvs)])
    mask = np.zeros_like(flux, bool)
    mask[1, 1000:1200] = True
    flux[1, 1000:1200] = 0.0                    # masked garbage is ignored
    est = estimate_rv(waves, flux, [bank], mask=mask)
    np.testing.assert_allclose(est.rv, rvs, atol=0.3)


def test_rows_at_many_velocities_are_measured_as_each_alone(bank):
    """Rows at different lags are scored against the templates in one product (each row
    rolled back by its own lag): every row's estimate equals that of the row alone."""
    from remap.spectra.velocity import _roll_rows

    rng = np.random.default_rng(11)
    a = rng.random((9, 37))
    shift = rng.integers(-60, 60, 9)
    np.testing.assert_array_equal(_roll_rows(a, shift),
                                  np.stack([np.roll(r, -k) for r, k in zip(a, shift)]))
    wave = np.arange(4830.0, 5300.0, 0.1)
    rvs = np.array([-210.0, -33.3, 0.4, 18.0, 18.9, 145.0])
    flux = np.stack([lines(wave, 11_000, s, rv=v) + rng.normal(0, 0.01, wave.size)
                     for v, s in zip(rvs, (0.7, 1.0, 1.4, 1.0, 0.6, 1.2))])
    together = estimate_rv(wave, flux, [bank])
    np.testing.assert_allclose(together.rv, rvs, atol=0.5)
    for r in range(len(rvs)):
        alone = estimate_rv(wave, flux[r:r + 1], [bank])
        assert alone.template[0] == together.template[r]
        np.testing.assert_allclose(alone.rv[0], together.rv[r], rtol=0, atol=1e-9)
        np.testing.assert_allclose(alone.peak[0], together.peak[r], rtol=1e-12)


def test_pure_noise_is_rv_uncertain(bank):
    wave = np.arange(4830.0, 5300.0, 0.1)
    noise = 1.0 + np.random.default_rng(1).normal(0, 0.02, (3, wave.size))
    est = estimate_rv(wave, noise, [bank])
    assert est.uncertain.all()
    assert all("CCF peak" in r for r in est.reason)


def _prepare_reference(bank, wave, flux, bad):
    """`TemplateBank.prepare` in NumPy: the module's reference `pseudo_continuum` and
    coverage-weighted smoothing, row by row."""
    from remap.spectra.resampling import linear_weights
    from remap.spectra.velocity import _smooth_weighted, pseudo_continuum

    n = flux.shape[0]
    on = np.zeros((n, bank.nfft))
    weight = np.zeros((n, bank.nfft))
    for r in range(n):
        lnw = np.log(wave[r])
        sel = (bank.grid >= lnw[0]) & (bank.grid <= lnw[-1])
        idx, w = linear_weights(lnw, bank.grid[sel])
        v = np.where(bad[r], 0.0, flux[r])
        g = (~bad[r]).astype(float)
        on[r, sel] = v[idx] + (v[idx + 1] - v[idx]) * w
        weight[r, sel] = g[idx] + (g[idx + 1] - g[idx]) * w
    covered = weight > 0.999
    on = np.where(covered, on, 0.0)
    cont = pseudo_continuum(on, covered, window=bank.cont_window)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(covered, 1.0 - on / cont, 0.0)
    depth = np.where(np.isfinite(depth), depth, 0.0)
    covered &= np.isfinite(cont)
    depth = np.where(covered, depth - _smooth_weighted(depth, covered, bank.highpass), 0.0)
    return depth, covered


def test_compiled_preparation_equals_the_numpy_reference(bank):
    """The CCF preparation kernel (remap.spectra._ccf_kernel) against its NumPy formulation:
    rows on their own grids, partial coverage, masked runs, a gap, a flux scale."""
    rng = np.random.default_rng(11)
    wave = np.stack([GRID[200:3900] * (1 + 1e-4 * rng.standard_normal()) for _ in range(6)])
    wave[3] = np.linspace(GRID[1500], GRID[-1] + 60.0, 3700)   # only the red part, beyond
    flux = np.stack([lines(w, 11_000) for w in wave]) * (1 + 0.01 * rng.standard_normal(
        wave.shape))
    flux *= rng.uniform(50, 5000, (6, 1))
    bad = rng.random(wave.shape) < 0.01
    bad[1, 400:700] = True                  # a masked run
    bad[4, :] = False
    flux[5, 1000:1300] = np.nan             # non-finite pixels count as bad
    bad |= ~np.isfinite(flux)
    depth, covered, npix, pixvar = bank.prepare(wave, flux, bad)
    # pixels outside the templates' range take no part (as masked ones)
    inside = (wave >= bank.wave[0]) & (wave <= bank.wave[-1])
    ref_depth, ref_covered = _prepare_reference(bank, wave, flux, bad | ~inside)
    np.testing.assert_array_equal(covered, ref_covered)
    np.testing.assert_allclose(depth, ref_depth, rtol=0, atol=1e-12)
    assert covered[1].sum() < covered[0].sum() and covered[3].sum() < covered[0].sum()
    assert npix[3] == np.count_nonzero((wave[3] <= GRID[-1]) & ~bad[3])
    dln = np.diff(np.log(wave), axis=1)
    pairs = inside[:, 1:] & inside[:, :-1]
    np.testing.assert_allclose(pixvar, [np.median(d[p]) ** 2 for d, p in zip(dln, pairs)])
    assert not covered[3, bank.grid > np.log(bank.wave[-1])].any()


def test_a_spectrum_whole_or_in_pieces_is_measured_alike(bank):
    """A row reaching beyond the templates (e.g. both beams in one spectrum) gives the
    same CCF as the piece of it inside their range: the same velocity, peak and width."""
    from remap.spectra.velocity import estimate_rv_groups

    wave = np.arange(4830.0, 5600.0, 0.1)
    flux = lines(wave, 11_000, rv=23.0) + np.random.default_rng(2).normal(0, 0.01, wave.size)
    whole = estimate_rv_groups([(wave, flux[None], None)], [bank], np.array([0]), 1)
    cut = np.searchsorted(wave, 5330.0)
    pieces = [(wave[:cut], flux[None, :cut], None), (wave[cut:], flux[None, cut:], None)]
    split = estimate_rv_groups(pieces, [bank], np.array([0, 0]), 1)
    assert abs(whole.rv[0] - 23.0) < 0.3
    for name in ("rv", "peak", "ccf_sigma", "pixel_var", "npix"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(split, name))


def test_covered_sums_equal_the_product_for_full_and_partial_rows(bank):
    """The CCF normalization: rows covering the templates' support take their totals, the
    others the product; both equal covered @ roll(depth_sq, k).T (the rows rolled back by
    k, as the template scoring does)."""
    from remap.spectra.velocity import _covered_sums, _roll_rows

    rng = np.random.default_rng(5)
    covered = np.ones((6, bank.nfft), bool)
    covered[1, bank.support[:50]] = False            # partly covered
    covered[2] = rng.random(bank.nfft) < 0.5
    covered[3, : bank.support[0]] = False            # outside the support only: still full
    for k in (0, 7, -7):
        ref = covered.astype(float) @ np.roll(bank.depth_sq, k, axis=1).T
        got = _covered_sums(_roll_rows(covered, np.full(len(covered), k)), bank)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)
    assert np.array_equal(_covered_sums(covered, bank)[[0, 3]],
                          np.stack([bank.depth_sq_total] * 2))


def test_rv_quality_rule():
    flags, why = rv_quality(np.array([0.9, 0.1, 0.9, 0.9]), np.array([5.0, 5.0, 1.1, 5.0]),
                            np.array([False, False, False, True]), np.full(4, 3000))
    assert flags.tolist() == [False, True, True, True]
    assert why[0] == "" and "0.10 < 0.3" in why[1] and "1.10x" in why[2] and "edge" in why[3]
    flags, why = rv_quality(np.array([0.9]), np.array([9.0]), np.array([False]),
                            np.array([12]))
    assert flags[0] and "only 12 pixels" in why[0]


def test_a_star_in_pieces_is_measured_like_one_spectrum(bank):
    from remap.spectra.velocity import estimate_rv_groups
    wave = np.arange(4830.0, 5300.0, 0.1)
    flux = lines(wave, 11_000, rv=33.0) + np.random.default_rng(4).normal(0, 0.02, wave.size)
    whole = estimate_rv(wave, flux[None], [bank])
    cut = 2000
    pieces = estimate_rv_groups([(wave[:cut], flux[None, :cut], None),
                                 (wave[cut:], flux[None, cut:], None)], [bank],
                                np.array([0, 0]), 1)
    assert abs(pieces.rv[0] - 33.0) < 0.5
    assert abs(pieces.rv[0] - whole.rv[0]) < 0.1
    assert pieces.npix[0] == whole.npix[0]


# ------------------------------------------------------------------ the pipeline stage

@pytest.fixture(scope="module")
def library():
    return LineListLibrary(resolution=100_000, linelist="laboratory", vmicro=1.0,
                           wave_range=(4810, 5790) * u.AA)


def observed(library, rv, seed=0, snr=50.0):
    spec = downconvolve(library.spectrum(teff=5800, logg=4.4, feh=0.0), 11_000)
    wave = spec.spectral_axis.to_value(u.AA)
    grid = np.arange(4830.0, 5770.0, 0.1)
    flux = spline(to_observed_frame(wave, rv), spec.flux.value, grid)
    cont = spline(to_observed_frame(wave, rv), np.asarray(spec.meta["continuum"]), grid)
    sigma = cont / snr
    flux = flux + sigma * np.random.default_rng(seed).standard_normal(grid.size)
    unit = spec.flux.unit
    return Spectrum(flux=flux * unit, spectral_axis=grid * u.AA,
                    uncertainty=StdDevUncertainty(sigma * unit),
                    meta={"wavelength_medium": "air", "resolution": 11_000})


def test_fit_measures_the_rv_and_reports_it(library):
    spectra = [observed(library, v, seed=i) for i, v in enumerate((0.0, -87.0, 215.0))]
    result = remap.fit(spectra)
    rv = result.values["rv"]
    assert rv.unit == u.km / u.s
    np.testing.assert_allclose(rv.value, [0.0, -87.0, 215.0], atol=0.5)
    assert np.all(result.values["rv_err"].value < 0.5)
    assert not np.any(result.flags & remap.Flag.RV_UNCERTAIN)
    table = result.to_table()
    assert table["rv"].unit == u.km / u.s and "rv_err" in table.colnames
    stages = [name for name, _ in remap.inference.pipeline()]
    assert stages[:4] == ["validate", "rest_frame", "resolution", "split"]


def test_given_rv_and_rv_0_skip_the_measurement(library):
    spec = observed(library, 60.0)
    measured = remap.fit(spec)
    given = remap.fit(spec, rv=60.0 * u.km / u.s)
    assert given.values["rv"] == 60.0 * u.km / u.s and np.isnan(given.values["rv_err"])
    # the measured RV is within ~0.1 km/s of the given one: labels within the 20 K
    assert abs(measured.teff.median - given.teff.median) < 20 * u.K
    skipped = remap.fit(spec, rv=0)
    assert skipped.values["rv"] == 0 * u.km / u.s and np.isnan(skipped.values["rv_err"])
    assert abs(skipped.teff.median - given.teff.median) > 100 * u.K   # uncorrected: wrong
    per_star = remap.fit([spec, observed(library, 0.0)], rv=[60.0, 0.0])
    np.testing.assert_array_equal(per_star.values["rv"].value, [60.0, 0.0])
    with pytest.raises(ValueError, match="rv must be a velocity"):
        remap.fit(spec, rv=3 * u.K)
    with pytest.raises(ValueError, match="below the speed of light"):
        remap.fit(spec, rv=np.inf)


def test_noise_spectrum_gets_rv_uncertain():
    grid = np.arange(4830.0, 5770.0, 0.1)
    flux = 1.0 + np.random.default_rng(2).normal(0, 0.02, grid.size)
    result = remap.fit(Spectrum(flux=flux * u.one, spectral_axis=grid * u.AA,
                                meta={"wavelength_medium": "air", "resolution": 11_000}))
    assert "RV_UNCERTAIN" in result.flag_names()
    assert "radial velocity uncertain" in result.messages[0]
