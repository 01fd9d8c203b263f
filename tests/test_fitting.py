"""Tests of remap.fit with the default model: pipeline, batching, flags and bad input."""

import copy

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum, SpectrumList

import remap
from remap.examples import load_example
from remap.inference import DEFAULT_MODEL_PATH, NETWORK_ROWS, Flag, pipeline
from remap.inference.stages import stage_options
from remap.model.cache import resolve_model
from remap.simulate import SimulationConfig, perturbed_library, simulate_star, simulated_stars


#: Options that make the real-spectra stages deterministic here (the simulated stars are at
#: rest and at the survey's resolution), where the pipeline has them: the comparisons of
#: input shapes below are about batching, not about estimating velocities per spectrum.
FIXED = {k: v for k, v in {"rv": 0, "resolution": "survey"}.items() if k in stage_options()}


@pytest.fixture(scope="module")
def model():
    return remap.default_model()


@pytest.fixture(scope="module")
def example():
    return load_example()


@pytest.fixture(scope="module")
def stars():
    """Six raw simulated calibration stars: (dict beam -> Spectrum, true labels)."""
    return list(simulated_stars("calibration", n=6, seed=0))


@pytest.fixture(scope="module")
def star_fits(model, stars):
    return remap.fit([s for s, _ in stars], model=model, **FIXED)


def _combined(beams):
    """One 1-D spectrum of both beams (beam B's first pixel, 5280 Å, made equal to A's last)."""
    a, b = beams["A"], beams["B"]
    assert a.spectral_axis[-1] == b.spectral_axis[0]
    flux = np.concatenate([a.flux.value, b.flux.value[1:]]) * a.flux.unit
    unc = np.concatenate([a.uncertainty.array, b.uncertainty.array[1:]]) * a.flux.unit
    wave = np.concatenate([a.spectral_axis.value, b.spectral_axis.value[1:]]) * u.AA
    return Spectrum(flux=flux, spectral_axis=wave, uncertainty=StdDevUncertainty(unc),
                    meta={"wavelength_medium": a.meta["wavelength_medium"]})


def _with_b_start_from_a(beams):
    a, b = beams["A"], beams["B"]
    flux = b.flux.value.copy()
    unc = b.uncertainty.array.copy()
    flux[0], unc[0] = a.flux.value[-1], a.uncertainty.array[-1]
    return {"A": a, "B": Spectrum(flux=flux * b.flux.unit, spectral_axis=b.spectral_axis,
                                  uncertainty=StdDevUncertainty(unc * b.flux.unit),
                                  meta=dict(b.meta))}


def _assert_same(r1, r2, rtol=1e-6):
    for name in r1.parameters:
        for key in ("median", "p16", "p84", "mean", "std"):
            np.testing.assert_allclose(getattr(r1[name], key).value,
                                       getattr(r2[name], key).value, rtol=rtol, atol=1e-9)
        np.testing.assert_allclose(r1[name].pmf, r2[name].pmf, rtol=1e-5, atol=1e-8)


def test_default_model_is_cached_and_shipped(model):
    assert DEFAULT_MODEL_PATH.is_dir()
    assert remap.default_model() is model
    assert resolve_model(str(DEFAULT_MODEL_PATH)) is model
    assert set(model.beams) == {"A", "B"}
    steps = pipeline(model)
    built_in = ["validate", "split", "spikes", "resample", "continuum", "network",
                "conflation", "flags", "neighbours"]
    assert [s for s, _ in steps if s in built_in] == built_in
    assert "algorithm1" in dict(steps)["continuum"]


def test_fit_example_gives_finite_ordered_results(example):
    result = remap.fit(example)
    assert not result.is_batch and len(result) == 1
    assert result.parameters == ["teff", "logg", "feh"]
    assert result.beams_used == [("A", "B")]
    for name, unit in (("teff", u.K), ("logg", u.dex), ("feh", u.dex)):
        p = result[name]
        assert p.median.unit == unit and p.median.isscalar
        assert np.isfinite(p.median.value)
        assert p.bin_edges[0] <= p.p16 < p.median < p.p84 <= p.bin_edges[-1]
        assert p.pmf.shape == (len(p.bin_edges) - 1,)
        np.testing.assert_allclose(p.pmf.sum(), 1.0)
    # the example is a simulated survey star with SNR 100 and three spikes
    assert 80 < result.snr["A"] < 125 and 80 < result.snr["B"] < 125
    assert result.masked_fraction["A"] < 0.01
    assert set(result.timings) >= {"split", "spikes", "resample", "continuum", "network A",
                                   "network B", "conflation", "neighbours"}


def test_fit_example_recovers_its_labels(model, example):
    """The example is a simulated MARVELS G dwarf (make_example.py): the default model,
    fine-tuned on such stars, recovers its labels and finds it near its training set."""
    truth = {"teff": 5800.0, "logg": 4.4, "feh": 0.0}  # make_example.LABELS
    assert example["A"].meta["teff"] == truth["teff"]
    result = remap.fit(example, model=model, **FIXED)
    assert abs(result.teff.median.to_value(u.K) - truth["teff"]) < 250.0
    assert abs(result.logg.median.to_value(u.dex) - truth["logg"]) < 0.4
    assert abs(result.feh.median.to_value(u.dex) - truth["feh"]) < 0.3
    assert not result.flags & Flag.FAR_FROM_TRAINING, result.messages
    assert result.beams_used == [("A", "B")]


def test_simulated_stars_are_recovered(star_fits, stars):
    r = star_fits
    assert r.is_batch and len(r) == len(stars)
    assert not np.any(r.flags & Flag.NO_COVERAGE)
    truth = {h: np.array([lab[h] for _, lab in stars]) for h in ("teff", "logg", "feh")}
    dt = r.teff.median.value - truth["teff"]
    assert np.sqrt(np.mean(dt ** 2)) < 300.0
    assert np.sqrt(np.mean((r.logg.median.value - truth["logg"]) ** 2)) < 0.5
    assert np.sqrt(np.mean((r.feh.median.value - truth["feh"]) ** 2)) < 0.4
    inside = (truth["teff"] >= r.teff.p16.value - 160) & (truth["teff"] <= r.teff.p84.value + 160)
    assert inside.mean() >= 0.5
    # SNR estimated from the uncertainties matches the simulated SNR
    snr = np.array([lab["snr"] for _, lab in stars])
    np.testing.assert_allclose(r.snr["A"], snr, rtol=0.1)


def test_conflation_is_normalized_product(star_fits):
    for name in star_fits.parameters:
        p = star_fits[name]
        prod = p.beam_pmfs["A"].astype(float) * p.beam_pmfs["B"]
        np.testing.assert_allclose(p.pmf, prod / prod.sum(axis=1, keepdims=True), rtol=1e-6,
                                   atol=1e-12)


def test_batch_equals_single(model, stars, star_fits):
    for i in (0, 4):
        single = remap.fit(stars[i][0], model=model, **FIXED)
        assert not single.is_batch
        _assert_same(single, star_fits[i])
        assert single.neighbours["A"]["teff"].indices.tolist() == \
            star_fits.neighbours["A"]["teff"].indices[i].tolist()


def test_fit_is_deterministic(model, stars, star_fits):
    again = remap.fit([s for s, _ in stars], model=model, **FIXED, batch_size=4)
    for name in again.parameters:
        np.testing.assert_array_equal(again[name].pmf, star_fits[name].pmf)
    np.testing.assert_array_equal(again.flags, star_fits.flags)
    assert again.messages == star_fits.messages


def test_two_d_batch_and_spectrumlist_equal_list_input(model, stars, star_fits):
    a = [s["A"] for s, _ in stars[:3]]
    batch = Spectrum(flux=np.stack([s.flux.value for s in a]) * a[0].flux.unit,
                     spectral_axis=a[0].spectral_axis,
                     uncertainty=StdDevUncertainty(np.stack([s.uncertainty.array for s in a])
                                                   * a[0].flux.unit),
                     meta={"wavelength_medium": a[0].meta["wavelength_medium"]})
    r2d = remap.fit(batch, model=model, **FIXED)
    rlist = remap.fit(a, model=model, **FIXED)
    assert r2d.is_batch and len(r2d) == 3
    _assert_same(r2d, rlist)
    sl = remap.fit(SpectrumList([stars[1][0]["A"], stars[1][0]["B"]]), model=model, **FIXED)
    _assert_same(sl, star_fits[1])


def test_spectrumlist_per_beam_equals_combined_spectrum(model, example):
    beams = _with_b_start_from_a(example)
    per_beam = remap.fit(SpectrumList([beams["A"], beams["B"]]), model=model, **FIXED)
    combined = remap.fit(_combined(beams), model=model, **FIXED)
    assert per_beam.beams_used == combined.beams_used == [("A", "B")]
    _assert_same(per_beam, combined)


def test_chunks_of_one_beam_are_joined(model, stars, star_fits):
    beams = stars[2][0]
    a = beams["A"]
    cut = 2000
    chunks = [Spectrum(flux=a.flux[sl], spectral_axis=a.spectral_axis[sl],
                       uncertainty=StdDevUncertainty(a.uncertainty.quantity[sl]),
                       meta=dict(a.meta)) for sl in (slice(0, cut), slice(cut, None))]
    r = remap.fit(SpectrumList(chunks + [beams["B"]]), model=model, **FIXED)
    _assert_same(r, star_fits[2])


def test_single_beam_gets_missing_beam_flag(model, stars):
    r = remap.fit(stars[0][0]["A"], model=model, **FIXED)
    assert r.beams_used == [("A",)]
    assert r.flags & Flag.MISSING_BEAM
    assert "MISSING_BEAM" in r.flag_names()
    assert "beam B" in r.messages[0]
    for name in r.parameters:
        p = r[name]
        assert np.isnan(p.beam_pmfs["B"]).all()
        np.testing.assert_allclose(p.pmf, p.beam_pmfs["A"] / p.beam_pmfs["A"].sum(),
                                   rtol=1e-6)
    assert np.isnan(r.snr["B"])
    assert np.all(r.neighbours["B"]["teff"].indices == -1)
    assert len(r.neighbour_table(0)) == 3 * 5  # beam A only: heads x k


def test_no_coverage_is_a_flagged_row(model, stars):
    wave = np.linspace(6000.0, 6500.0, 2000) * u.AA
    off = Spectrum(flux=np.ones(2000) * u.Jy, spectral_axis=wave)
    # it declares no medium: the survey's is assumed, with one warning naming it
    with pytest.warns(remap.MediumAssumedWarning, match=r"1 spectrum .*\(spectra\[1\]\)"):
        r = remap.fit([stars[0][0], off], model=model, **FIXED)
    assert len(r) == 2
    assert r.flags[1] & Flag.NO_COVERAGE and not r.flags[0] & Flag.NO_COVERAGE
    assert "overlaps no beam" in r.messages[1] and "spectra[1]" in r.messages[1]
    assert r.beams_used[1] == ()
    assert np.isnan(r.teff.median.value[1]) and np.isfinite(r.teff.median.value[0])
    assert np.isnan(r.teff.pmf[1]).all()
    t = r.to_table()
    assert "NO_COVERAGE" in t["flag_names"][1]


def test_partial_coverage_is_masked_not_refused(model, stars):
    beams = stars[3][0]
    a = beams["A"]
    keep = a.spectral_axis.value >= 4960.0  # 110 of 430 Å of beam A missing
    part = Spectrum(flux=a.flux[keep], spectral_axis=a.spectral_axis[keep],
                    uncertainty=StdDevUncertainty(a.uncertainty.quantity[keep]),
                    meta=dict(a.meta))
    r = remap.fit({"A": part, "B": beams["B"]}, model=model, **FIXED)
    assert r.beams_used == [("A", "B")]
    assert 0.2 < r.masked_fraction["A"] < 0.3
    assert r.flags & Flag.MASKED
    assert np.isfinite(r.teff.median.value)


def test_low_snr_is_flagged_and_estimated_without_uncertainty(model):
    survey = remap.get_survey("marvels")
    config = SimulationConfig(snr_range=(12.0, 12.0), spike_fraction=0.0)
    raw, _ = simulate_star(perturbed_library(0, config), survey,
                           {"teff": 5500.0, "logg": 4.3, "feh": 0.0},
                           np.random.default_rng(5), config)
    r = remap.fit(raw, model=model, **FIXED)
    assert r.flags & Flag.LOW_SNR
    assert 10 < r.snr["A"] < 14
    bare = {b: Spectrum(flux=s.flux, spectral_axis=s.spectral_axis, meta=dict(s.meta))
            for b, s in raw.items()}
    r2 = remap.fit(bare, model=model, **FIXED)
    assert r2.flags & Flag.LOW_SNR
    assert 8 < r2.snr["A"] < 16


def _doctored(model, edit):
    """A copy of ``model`` whose networks' outputs pass through ``edit(beam, outputs)``."""
    fake = copy.copy(model)
    real = model.predict

    def predict(beam, flux, batch_size=256):
        return edit(beam, real(beam, flux, batch_size=batch_size))

    fake.predict = predict
    return fake


def test_edge_pmf_flag(model, stars):
    def edit(beam, out):
        p = np.full_like(out["teff"], 0.5 / (out["teff"].shape[1] - 2))
        p[:, -2:] = 0.25  # half the mass in the two highest bins
        return {**out, "teff": p}

    r = remap.fit(stars[0][0], model=_doctored(model, edit))
    assert r.flags & Flag.EDGE_PMF
    assert "T_eff" in r.messages[0] and "highest" in r.messages[0]
    clean = remap.fit(stars[0][0], model=model, **FIXED)
    assert not clean.flags & Flag.EDGE_PMF


def test_beams_disagree_flag(model, stars):
    def edit(beam, out):
        p = np.zeros_like(out["teff"])
        p[:, 10 if beam == "A" else 30] = 1.0  # disjoint: no bin in common
        return {**out, "teff": p}

    r = remap.fit(stars[0][0], model=_doctored(model, edit))
    assert r.flags & Flag.BEAMS_DISAGREE
    assert "share no bin" in r.messages[0]
    np.testing.assert_allclose(r.teff.pmf[[10, 30]], [0.5, 0.5])  # reported: the average

    def shift(beam, out):
        p = np.zeros_like(out["teff"])
        p[:, 20 if beam == "A" else 30] = 0.9
        p[:, 25] = 0.1
        return {**out, "teff": p}

    r = remap.fit(stars[0][0], model=_doctored(model, shift))
    assert r.flags & Flag.BEAMS_DISAGREE
    assert "disagree" in r.messages[0]


def test_far_from_training_flag_and_padded_network_blocks(model, stars):
    calls = []

    def edit(beam, out):
        calls.append(len(out["teff"]))
        return {**out, "teff_embedding": out["teff_embedding"] + 100.0}

    r = remap.fit(stars[0][0], model=_doctored(model, edit))
    assert r.flags & Flag.FAR_FROM_TRAINING
    assert "far from the training set" in r.messages[0]
    # one star, but the networks always see whole blocks of NETWORK_ROWS spectra
    assert NETWORK_ROWS >= 2 and calls == [NETWORK_ROWS, NETWORK_ROWS]


# --------------------------------------------------------------------- bad input

def test_mostly_nan_spectrum_is_refused(model, stars):
    a = stars[0][0]["A"]
    flux = a.flux.value.copy()
    flux[: int(0.7 * flux.size)] = np.nan
    bad = Spectrum(flux=flux * a.flux.unit, spectral_axis=a.spectral_axis)
    with pytest.raises(remap.SpectrumError, match="masked or not finite"):
        remap.fit(bad, model=model, **FIXED)
    with pytest.raises(remap.SpectrumError, match=r"spectra\[1\].*masked or not finite"):
        remap.fit([a, bad], model=model, **FIXED, errors="raise")


def test_spectrum_without_wavelength_units_is_refused(model):
    bare = Spectrum(flux=np.ones(500) * u.Jy)  # pixel axis
    with pytest.raises(remap.SpectrumError, match="spectral axis"):
        remap.fit(bare, model=model, **FIXED)


def test_empty_inputs_are_refused(model):
    empty = Spectrum(flux=np.array([]) * u.Jy, spectral_axis=np.array([]) * u.AA)
    with pytest.raises(remap.SpectrumError, match="empty"):
        remap.fit(empty, model=model, **FIXED)
    with pytest.raises(remap.SpectrumError, match="list is empty"):
        remap.fit([], model=model, **FIXED)
    with pytest.raises(remap.SpectrumError, match="holds no spectra"):
        remap.fit(SpectrumList(), model=model, **FIXED)


def test_bad_shapes_types_and_options(model, stars):
    a = stars[0][0]["A"]
    two_d = Spectrum(flux=np.ones((2, a.flux.size)) * u.Jy, spectral_axis=a.spectral_axis)
    with pytest.raises(remap.SpectrumError, match="one star"):
        remap.fit([two_d], model=model, **FIXED, errors="raise")
    with pytest.raises(TypeError, match="specutils Spectrum"):
        remap.fit(np.ones(100), model=model, **FIXED)
    with pytest.raises(TypeError, match="model must be"):
        remap.fit(a, model=3)
    with pytest.raises(ValueError, match="k must be"):
        remap.fit(a, model=model, **FIXED, k=0)
    with pytest.raises(ValueError, match="exceeds"):
        remap.fit(a, model=model, **FIXED, k=10 ** 6)
    with pytest.raises(ValueError, match="batch_size"):
        remap.fit(a, model=model, **FIXED, batch_size=0)
    with pytest.raises(TypeError, match="fitter_options"):
        remap.fit(a, model=model, **FIXED, fitter_options="fast")
    with pytest.raises(remap.UnknownPluginError):
        remap.fit(a, model=model, **FIXED, survey="no-such-survey")
