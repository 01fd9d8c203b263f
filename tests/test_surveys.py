"""Tests of remap.surveys: beams, grids, beam selection, spike removal, the MARVELS plugin."""

import logging

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import StdDevUncertainty
from astropy.tests.helper import assert_quantity_allclose
from scipy import ndimage
from specutils import Spectrum

import remap
from remap.exceptions import NoOverlapError, SpectrumError
from remap.spectra.medium import air_to_vacuum
from remap.surveys import MARVELS, Beam, Survey, find_spikes
from remap.surveys.base import _spike_flags, _spike_sigma

STEP = 0.1


def line_spectrum(rng, nspec=1, lo=4850.0, hi=5750.0, nlines=None, snr=50.0):
    """Seeded synthetic absorption spectra: sloped continuum times strong Gaussian lines."""
    wave = lo + STEP * np.arange(int(round((hi - lo) / STEP)) + 1)
    nlines = int(0.45 * (hi - lo)) if nlines is None else nlines
    cont = 1.0 + 0.2 * np.sin(wave / 300.0)
    clean = np.empty((nspec, wave.size))
    for i in range(nspec):
        prof = np.ones_like(wave)
        centres = rng.uniform(lo, hi, nlines)
        depths = rng.uniform(0.2, 0.95, nlines) ** 2
        widths = 0.45 / 2.355 * rng.uniform(0.9, 1.5, nlines)  # R ~ 11,000 at 5000 Å
        for c, d, s in zip(centres, depths, widths):
            near = np.abs(wave - c) < 6 * s
            prof[near] *= 1 - d * np.exp(-0.5 * ((wave[near] - c) / s) ** 2)
        clean[i] = cont * prof
    sigma = cont.mean() / snr
    noisy = clean + sigma * rng.normal(size=clean.shape)
    return wave, clean, cont, noisy, sigma


@pytest.fixture(scope="module")
def marvels():
    return remap.get_survey("marvels")


# ----------------------------------------------------------------------------- plugin, beams
def test_marvels_via_entry_points(marvels):
    assert isinstance(marvels, MARVELS)
    assert "marvels" in remap.list_surveys()
    info = [i for i in remap.plugin_infos("survey") if i.name == "marvels"][0]
    assert info.plugin == "marvels" and info.distribution == "remap"
    assert marvels.wavelength_medium == "air"
    assert list(marvels.beams) == ["A", "B"]


def test_marvels_beams(marvels):
    a, b = marvels.beams["A"], marvels.beams["B"]
    assert (a.wave_min, a.wave_max) == (4850 * u.AA, 5280 * u.AA)
    assert (b.wave_min, b.wave_max) == (5280 * u.AA, 5750 * u.AA)
    for beam in (a, b):
        assert beam.resolution == 11000 and beam.resolution_range == (10000, 12000)
        assert beam.sampling == 0.1 * u.AA


@pytest.mark.parametrize("name, lo, hi, npix", [("A", 4850, 5280, 4301), ("B", 5280, 5750, 4701)])
def test_grids(marvels, name, lo, hi, npix):
    grid = marvels.grid(name)
    assert grid.unit == u.AA and grid.shape == (npix,)
    assert grid[0] == lo * u.AA and abs(grid[-1].value - hi) < 1e-9
    np.testing.assert_allclose(np.diff(grid.value), 0.1, atol=1e-9)
    assert marvels.beams[name].npix == npix
    with pytest.raises(KeyError, match="no beam 'C'; beams: A, B"):
        marvels.grid("C")


def test_beam_grid_ends_before_wave_max_when_not_whole():
    beam = Beam("X", 500 * u.nm, 500.25 * u.nm, 1000, (900, 1100), 1 * u.AA)
    assert beam.wave_min.unit == u.AA and beam.sampling == 1 * u.AA
    assert_quantity_allclose(beam.wave_min, 5000 * u.AA)
    assert_quantity_allclose(beam.grid(), [5000, 5001, 5002] * u.AA)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(wave_max=4000 * u.AA), ValueError, "must exceed wave_min"),
    (dict(wave_min=4850), TypeError, "Quantity"),
    (dict(sampling=0.1 * u.s), u.UnitsError, "wavelength unit"),
    (dict(sampling=1000 * u.AA), ValueError, "larger than the range"),
    (dict(resolution=-1), ValueError, "positive number"),
    (dict(resolution_range=(12000, 13000)), ValueError, "resolution_range"),
    (dict(name=""), TypeError, "non-empty string"),
])
def test_beam_validation(kwargs, exc, match):
    args = dict(name="A", wave_min=4850 * u.AA, wave_max=5280 * u.AA, resolution=11000,
                resolution_range=(10000, 12000), sampling=0.1 * u.AA)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        Beam(**args)


def test_beam_is_frozen():
    beam = MARVELS.beams["A"]
    with pytest.raises(AttributeError):
        beam.resolution = 5


def test_survey_configuration():
    vac = MARVELS(wavelength_medium="vacuum")
    assert vac.wavelength_medium == "vacuum"
    assert MARVELS().known_spikes.size == 0
    custom = MARVELS(known_spikes=[500.0, 510.0] * u.nm)
    assert_quantity_allclose(custom.known_spikes, [5000, 5100] * u.AA)
    with pytest.raises(ValueError, match="'air' or 'vacuum'"):
        MARVELS(wavelength_medium="water")
    with pytest.raises(u.UnitsError, match="known_spikes"):
        MARVELS(known_spikes=[1.0] * u.s)

    class Empty(Survey):
        name = "empty"

    with pytest.raises(ValueError, match="defines no beams"):
        Empty()
    with pytest.raises(ValueError, match="named 'A'"):
        Survey(beams={"B": MARVELS.beams["A"]})
    assert "A: 4850-5280 Å" in repr(MARVELS())


# ----------------------------------------------------------------------------- split
def spectrum(lo, hi, nspec=None, step=STEP, **kwargs):
    wave = lo + step * np.arange(int(round((hi - lo) / step)) + 1)
    shape = wave.shape if nspec is None else (nspec, wave.size)
    flux = np.ones(shape) + 0.001 * np.arange(wave.size)
    return Spectrum(flux=flux * u.Jy, spectral_axis=wave * u.AA, **kwargs)


def test_split_full(marvels):
    spec = spectrum(4800, 5800, uncertainty=StdDevUncertainty(np.full(10001, 0.01)),
                    meta={"object": "HD 2"})
    parts = marvels.split(spec)
    assert list(parts) == ["A", "B"]
    for name, part in parts.items():
        beam = marvels.beams[name]
        w = part.spectral_axis.value
        assert w[0] >= beam.wave_min.value - 1e-9 and w[-1] <= beam.wave_max.value + 1e-9
        assert part.meta["beam"] == name and part.meta["survey"] == "marvels"
        assert part.meta["coverage"] > 0.999 and part.meta["object"] == "HD 2"
        assert part.meta["wavelength_medium"] == "air"
        assert part.uncertainty.array.shape == part.flux.shape
    # flux values are the input's at the same wavelengths
    i0 = int(round((parts["B"].spectral_axis[0].value - 4800) / STEP))
    assert parts["B"].flux[0] == spec.flux[i0]


def test_split_partial(marvels, caplog):
    parts = marvels.split(spectrum(5000, 5400))
    assert list(parts) == ["A", "B"]
    assert parts["A"].meta["coverage"] == pytest.approx(280 / 430, abs=1e-6)
    assert parts["B"].meta["coverage"] == pytest.approx(120 / 470, abs=1e-6)
    # tiny overlap with B (3 Å) is left out and logged
    with caplog.at_level(logging.WARNING, logger="remap.surveys.base"):
        parts = marvels.split(spectrum(5000, 5283), name="star")
    assert list(parts) == ["A"]
    assert "star" in caplog.text and "B (0.6% covered" in caplog.text
    assert list(marvels.split(spectrum(5000, 5283), min_coverage=0.0)) == ["A", "B"]
    with pytest.raises(ValueError, match="min_coverage"):
        marvels.split(spectrum(5000, 5283), min_coverage=1.5)


def test_split_no_overlap(marvels):
    with pytest.raises(NoOverlapError, match=r"covers 6000-6100 Å .* overlaps no beam .*"
                                             r"beam A: 4850-5280 Å; beam B: 5280-5750 Å"):
        marvels.split(spectrum(6000, 6100))
    with pytest.raises(NoOverlapError, match="below min_coverage=0.5"):
        marvels.split(spectrum(5200, 5300), min_coverage=0.5)
    assert issubclass(NoOverlapError, SpectrumError)


def test_split_batch(marvels):
    spec = spectrum(4800, 5800, nspec=4)
    parts = marvels.split(spec)
    assert parts["A"].flux.shape == (4, 4301) and parts["B"].flux.shape == (4, 4701)
    assert parts["A"].mask.shape == (4, 4301)


def test_split_validates_input(marvels):
    with pytest.raises(SpectrumError, match="zero or negative"):
        marvels.split(Spectrum(flux=np.zeros(100) * u.Jy,
                               spectral_axis=(5000 + np.arange(100.0)) * u.AA))


def test_split_converts_medium(marvels):
    air = spectrum(4800, 5800)
    vac_axis = air_to_vacuum(air.spectral_axis)
    vac = Spectrum(flux=air.flux, spectral_axis=vac_axis, meta={"wavelength_medium": "vacuum"})
    from_vac = marvels.split(vac)
    from_air = marvels.split(air)
    for name in ("A", "B"):
        assert from_vac[name].meta["wavelength_medium"] == "air"
        assert np.max(np.abs(from_vac[name].spectral_axis - from_air[name].spectral_axis)) \
            < 1e-6 * u.AA
        assert np.all(from_vac[name].flux == from_air[name].flux)
    # the unconverted vacuum axis would be shifted by ~1.4 Å
    same = marvels.split(Spectrum(flux=air.flux, spectral_axis=vac_axis))
    shift = same["A"].spectral_axis[0] - from_air["A"].spectral_axis[0]
    assert 0.05 * u.AA <= abs(shift) <= 0.1 * u.AA  # different pixels selected at the edge
    with pytest.raises(ValueError, match="meta\\['wavelength_medium'\\]"):
        marvels.split(Spectrum(flux=air.flux, spectral_axis=air.spectral_axis,
                               meta={"wavelength_medium": "glass"}))
    vacuum_survey = MARVELS(wavelength_medium="vacuum")
    parts = vacuum_survey.split(spectrum(4800, 5800, meta={"wavelength_medium": "air"}))
    assert parts["A"].meta["wavelength_medium"] == "vacuum"


# ----------------------------------------------------------------------------- spikes
def test_no_false_positives_on_strong_lines(marvels):
    rng = np.random.default_rng(2025)
    wave, clean, cont, noisy, sigma = line_spectrum(rng, nspec=4)
    assert clean.min() < 0.15 * cont.min()  # really strong lines present
    for unc in (None, StdDevUncertainty(np.full(noisy.shape, sigma))):
        out = marvels.remove_spikes(Spectrum(flux=noisy * u.Jy, spectral_axis=wave * u.AA,
                                             uncertainty=unc))
        assert not out.mask.any()
        assert out.meta["spike_pixels"] == [0, 0, 0, 0]
        np.testing.assert_array_equal(out.flux.value, noisy)


def inject(rng, clean, cont, noisy, sigma, amplitudes, per_amp=6):
    """Flat-topped spikes of widths 1..6 px on the continuum; returns flux and spike list."""
    flux = noisy.copy()
    spikes = []
    on_continuum = ndimage.minimum_filter1d(clean / cont, 9, axis=-1) > 0.98
    for i in range(flux.shape[0]):
        ok = np.flatnonzero(on_continuum[i])
        ok = ok[(ok > 60) & (ok < flux.shape[1] - 60)]
        taken = []
        for amp in amplitudes:
            for width in range(1, per_amp + 1):
                while True:
                    p = int(rng.choice(ok))
                    if all(abs(p - q) > 120 for q in taken):
                        break
                taken.append(p)
                flux[i, p:p + width] += amp * sigma
                spikes.append((i, p, width, amp))
    return flux, spikes


def test_spikes_found_masked_and_interpolated(marvels):
    rng = np.random.default_rng(7)
    wave, clean, cont, noisy, sigma = line_spectrum(rng, nspec=4)
    flux, spikes = inject(rng, clean, cont, noisy, sigma, amplitudes=(5, 10, 20, 50))
    in_mask = np.zeros(flux.shape, bool)
    in_mask[:, 5] = True  # an existing mask is kept
    spec = Spectrum(flux=flux * u.Jy, spectral_axis=wave * u.AA, mask=in_mask)
    out = marvels.remove_spikes(spec)
    assert np.all(out.mask[:, 5])
    found = {amp: [] for amp in (5, 10, 20, 50)}
    for i, p, width, amp in spikes:
        found[amp].append(out.mask[i, p:p + width].all())
        if amp >= 10:
            # flux replaced by the interpolation of the neighbours: back near the continuum
            assert np.all(np.abs(out.flux.value[i, p:p + width] - clean[i, p:p + width])
                          < 5 * sigma)
    assert all(found[10]) and all(found[20]) and all(found[50])
    # 5 sigma is the detection threshold: about half or more are caught
    assert np.mean(found[5]) >= 0.4
    # nothing far from the spikes is flagged
    truth = np.zeros(flux.shape, bool)
    for i, p, width, _ in spikes:
        truth[i, max(p - 2, 0):p + width + 2] = True
    assert not (out.mask & ~truth & ~in_mask).any()
    assert sum(out.meta["spike_pixels"]) >= sum(w for *_, w, a in spikes if a >= 10)


def test_spikes_with_uncertainty_and_single_spectrum(marvels):
    rng = np.random.default_rng(8)
    wave, clean, cont, noisy, sigma = line_spectrum(rng, nspec=1, lo=4850, hi=5280)
    flux, spikes = inject(rng, clean, cont, noisy, sigma, amplitudes=(10, 50))
    spec = Spectrum(flux=flux[0] * u.Jy, spectral_axis=wave * u.AA,
                    uncertainty=StdDevUncertainty(np.full(wave.size, sigma) * u.Jy))
    out = marvels.remove_spikes(spec)
    assert out.mask.shape == wave.shape and isinstance(out.meta["spike_pixels"], int)
    for _, p, width, _ in spikes:
        assert out.mask[p:p + width].all()
    np.testing.assert_array_equal(out.uncertainty.array, sigma)


def test_wide_features_and_absorption_untouched():
    # a 20-px bright bump is not a spike; a deep absorption line is not either
    x = np.arange(2000)
    flux = np.ones(2000)
    flux[1000:1020] += 0.5
    flux -= 0.9 * np.exp(-0.5 * ((x - 500) / 2.0) ** 2)
    assert not find_spikes(flux, stddev=np.full(2000, 0.01)).any()
    flux[300] += 0.5
    assert np.flatnonzero(find_spikes(flux, stddev=np.full(2000, 0.01))).tolist() == [300]


def test_known_spikes(marvels):
    rng = np.random.default_rng(9)
    wave, clean, cont, noisy, sigma = line_spectrum(rng, nspec=1, lo=4850, hi=5000)
    spec = Spectrum(flux=noisy[0] * u.Jy, spectral_axis=wave * u.AA)
    out = marvels.remove_spikes(spec, known_spikes=[4900.0] * u.AA, known_width=0.6 * u.AA)
    masked = wave[out.mask]
    np.testing.assert_allclose(masked, [4899.7, 4899.8, 4899.9, 4900.0, 4900.1, 4900.2, 4900.3])
    survey = MARVELS(known_spikes=[4950.0] * u.AA)
    assert survey.remove_spikes(spec).mask.sum() == 7


def test_find_spikes_arguments():
    flux = np.ones(500)
    with pytest.raises(ValueError, match="window"):
        find_spikes(flux, window=20)
    with pytest.raises(ValueError, match="max_width"):
        find_spikes(flux, max_width=0)
    with pytest.raises(ValueError, match="finite"):
        find_spikes(np.r_[flux, np.nan])
    with pytest.raises(ValueError, match="grow_nsigma"):
        find_spikes(flux, nsigma=2, grow_nsigma=3)
    with pytest.raises(ValueError, match="percentile"):
        find_spikes(flux, percentile=40)
    with pytest.raises(ValueError, match="stddev shape"):
        find_spikes(flux, stddev=np.ones(3))
    with pytest.raises(ValueError, match="wavelength"):
        find_spikes(flux, known_spikes=[5000] * u.AA)


def test_remove_spikes_is_deterministic(marvels):
    rng = np.random.default_rng(10)
    wave, clean, cont, noisy, sigma = line_spectrum(rng, nspec=2, lo=4850, hi=5100)
    flux, _ = inject(rng, clean, cont, noisy, sigma, amplitudes=(8,))
    spec = Spectrum(flux=flux * u.Jy, spectral_axis=wave * u.AA)
    a, b = marvels.remove_spikes(spec), marvels.remove_spikes(spec)
    np.testing.assert_array_equal(a.flux.value, b.flux.value)
    np.testing.assert_array_equal(a.mask, b.mask)


# ------------------------------------------------------- compiled spike kernel vs SciPy


def spike_cases():
    """Seeded line spectra with injected spikes, masks, bad sigmas and tiny spectra."""
    rng = np.random.default_rng(404)
    wave, clean, cont, noisy, sigma = line_spectrum(rng, nspec=3, lo=4850, hi=5150, snr=80)
    flux, _ = inject(rng, clean, cont, noisy, sigma, amplitudes=(4, 6, 12, 40), per_amp=3)
    std = np.full(flux.shape, sigma) * (1 + 0.2 * rng.random(flux.shape))
    mask = rng.random(flux.shape) < 0.05
    mask[1, 500:900] = True
    bad_std = std.copy()
    bad_std[0, 100:130] = 0.0
    bad_std[2, 7] = np.nan
    tiny = 1 + 0.01 * rng.standard_normal((2, 30))
    tiny[0, 11] += 1.0
    return {"stddev": (flux, std, None), "noise-estimate": (flux, None, None),
            "masked": (flux, None, mask), "bad-stddev": (flux, bad_std, mask),
            "tiny": (tiny, None, None), "tiny-stddev": (tiny, np.full(tiny.shape, 0.01), None)}


@pytest.mark.parametrize("case", list(spike_cases()))
@pytest.mark.parametrize("options", [
    {"max_width": 6, "nsigma": 5.0, "grow_nsigma": 2.0, "window": 101, "percentile": 85.0},
    {"max_width": 5, "nsigma": 4.0, "grow_nsigma": 1.0, "window": 100, "percentile": 70.0},
    {"max_width": 1, "nsigma": 3.0, "grow_nsigma": 3.0, "window": 9, "percentile": 99.5}],
    ids=["default", "even-sizes", "narrow"])
def test_spike_kernel_equals_scipy_formulation(case, options):
    flux, std, mask = spike_cases()[case]
    mask = np.zeros(flux.shape, bool) if mask is None else mask
    sigma = _spike_sigma(flux, std, mask, options["window"])
    np.testing.assert_array_equal(
        sigma, _spike_sigma(flux, std, mask, options["window"], reference=True))
    flags = _spike_flags(flux, sigma, **options)
    np.testing.assert_array_equal(flags, _spike_flags(flux, sigma, reference=True, **options))
    if case == "stddev" and options["window"] == 101:
        assert flags.sum() > 20  # the injected spikes are there to be found


def test_find_spikes_rows_do_not_depend_on_their_batch():
    flux, std, mask = spike_cases()["bad-stddev"]
    flux = flux.copy()
    flux[2] *= 1e6  # a row of another scale does not move the others' noise floor
    std = std.copy()
    std[2] *= 1e6
    whole = find_spikes(flux, stddev=std, mask=mask)
    for i in range(flux.shape[0]):
        np.testing.assert_array_equal(find_spikes(flux[i], stddev=std[i], mask=mask[i]),
                                      whole[i])
    no_std = find_spikes(flux, mask=mask)
    np.testing.assert_array_equal(find_spikes(flux[[2, 0]], mask=mask[[2, 0]]), no_std[[2, 0]])


def test_compiled_spike_fill_equals_numpy_interp_row_by_row():
    """`fill_spikes` on a batch (compiled pass) gives np.interp's values exactly."""
    from remap.surveys.base import fill_spikes

    rng = np.random.default_rng(3)
    n, m = 60, 400
    flux = rng.normal(1.0, 0.1, (n, m))
    spikes = rng.random((n, m)) < 0.05
    mask = rng.random((n, m)) < 0.05
    spikes[0, :3] = True          # spikes before the first reference pixel
    spikes[1, -4:] = True         # and after the last
    spikes[4] = False             # a row without spikes is left alone
    mask[5, :-1] = True           # fewer than two good pixels: non-spike pixels are the reference
    spikes[5, 100] = True
    expected = flux.copy()
    x = np.arange(m)
    for r in np.flatnonzero(spikes.any(axis=1)):
        bad = spikes[r]
        good = ~bad & ~mask[r]
        ref = good if good.sum() >= 2 else ~bad
        expected[r, bad] = np.interp(x[bad], x[ref], expected[r, ref])
    got = flux.copy()
    fill_spikes(got, spikes, mask)
    np.testing.assert_array_equal(got, expected)
    spikes[2] = True              # nothing to interpolate from: np.interp's error, as before
    with pytest.raises(ValueError):
        fill_spikes(flux.copy(), spikes, mask)
