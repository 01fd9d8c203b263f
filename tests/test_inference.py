"""remap.inference: stages over array batches, input shapes, streaming, bad input, input rules.

Everything runs on noisy copies of the bundled example star (both beams) with the
default model, a handful of stars at a time.
"""

import hashlib
import json
import shutil

import astropy.units as u
import numpy as np
import pytest
from astropy.nddata import StdDevUncertainty
from specutils import Spectrum, SpectrumList

import remap
import remap.inference.stages as stages_module
from remap.examples import load_example
from remap.inference import DEFAULT_STAGES, Batch, Flag, Stage, fit_iter, pipeline
from remap.inference.result import FitResult
from remap.inference.stages import stage_options
from remap.model import ArtifactError, load_model
from remap.model.cache import DEFAULT_MODEL_PATH
from remap.spectra.io import write_beams


#: Options that make the real-spectra stages deterministic for these tests (the velocity
#: is known to be 0, the resolution is the survey's), where the pipeline has them.
FIXED = {k: v for k, v in {"rv": 0, "resolution": "survey"}.items() if k in stage_options()}


@pytest.fixture(scope="module")
def model():
    return remap.default_model()


def _star(seed):
    """The example star with fresh 1 % noise; beam B's first pixel (5280 Å) set to A's last."""
    rng = np.random.default_rng(seed)
    ex = load_example()
    out = {}
    for beam, spec in ex.items():
        flux = spec.flux.value * (1 + 0.01 * rng.standard_normal(spec.flux.shape))
        sigma = spec.uncertainty.array.copy()
        if beam == "B":
            flux[0], sigma[0] = out["A"].flux.value[-1], out["A"].uncertainty.array[-1]
        out[beam] = Spectrum(flux=flux * spec.flux.unit, spectral_axis=spec.spectral_axis,
                             uncertainty=StdDevUncertainty(sigma * spec.flux.unit),
                             meta={"wavelength_medium": "air"})
    return out


def _one_d(star):
    a, b = star["A"], star["B"]
    return Spectrum(flux=np.concatenate([a.flux.value, b.flux.value[1:]]) * a.flux.unit,
                    spectral_axis=np.concatenate([a.spectral_axis.value,
                                                  b.spectral_axis.value[1:]]) * u.AA,
                    uncertainty=StdDevUncertainty(np.concatenate(
                        [a.uncertainty.array, b.uncertainty.array[1:]]) * a.flux.unit),
                    meta={"wavelength_medium": "air"})


def _two_d(stars):
    ones = [_one_d(s) for s in stars]
    return Spectrum(flux=np.stack([s.flux.value for s in ones]) * ones[0].flux.unit,
                    spectral_axis=ones[0].spectral_axis,
                    uncertainty=StdDevUncertainty(np.stack([s.uncertainty.array for s in ones])
                                                  * ones[0].flux.unit),
                    meta={"wavelength_medium": "air"})


def _with(spec, flux=None, sigma=None, mask=None, uncertainty="keep"):
    unc = spec.uncertainty if uncertainty == "keep" else uncertainty
    if sigma is not None:
        unc = StdDevUncertainty(sigma * spec.flux.unit)
    return Spectrum(flux=spec.flux if flux is None else flux * spec.flux.unit,
                    spectral_axis=spec.spectral_axis, uncertainty=unc, mask=mask,
                    meta=dict(spec.meta))


def _same(r1, r2):
    for name in r1.parameters:
        np.testing.assert_array_equal(r1[name].pmf, r2[name].pmf)
        np.testing.assert_array_equal(r1[name].median.value, r2[name].median.value)
    np.testing.assert_array_equal(r1.flags, r2.flags)


@pytest.fixture(scope="module")
def stars():
    return [_star(s) for s in range(4)]


@pytest.fixture(scope="module")
def reference(model, stars):
    return remap.fit(stars, model=model, **FIXED)


# ----------------------------------------------------------------- stages and batching

def test_pipeline_lists_the_default_stages_in_order(model):
    steps = pipeline(model)
    names = [name for name, _ in steps]
    assert names == [cls.name for cls in DEFAULT_STAGES]
    built_in = ["validate", "split", "spikes", "resample", "continuum", "network",
                "conflation", "flags", "neighbours"]
    assert [n for n in names if n in built_in] == built_in and names[0] == "validate"
    assert all(isinstance(text, str) and text for _, text in steps)
    assert "k=3" in dict(pipeline(model, k=3))["neighbours"]


def test_input_shapes_run_as_the_same_batches_and_agree(model, stars, reference):
    """A list of dicts, of SpectrumLists, of 1-D spectra and a 2-D spectrum: same numbers."""
    inputs = {"SpectrumList": [SpectrumList([s["A"], s["B"]]) for s in stars],
              "1-D": [_one_d(s) for s in stars], "2-D": _two_d(stars)}
    for name, value in inputs.items():
        result = remap.fit(value, model=model, **FIXED)
        assert result.is_batch and len(result) == len(stars), name
        _same(result, reference)
    assert reference.beams_used == [("A", "B")] * len(stars)
    assert np.all(np.isfinite(reference.teff.median.value))


def test_input_shapes_agree_with_the_velocity_and_resolution_measured(model, stars):
    """The same with the rest_frame and resolution stages measuring: a star as one spectrum
    across both beams or as one spectrum per beam is correlated alike."""
    measured = remap.fit(stars, model=model)
    for value in ([SpectrumList([s["A"], s["B"]]) for s in stars], _two_d(stars)):
        result = remap.fit(value, model=model)
        _same(result, measured)
        for name in ("rv", "rv_err", "resolution"):
            np.testing.assert_array_equal(result.values[name], measured.values[name])


def test_results_do_not_depend_on_the_other_stars_of_a_batch(model, stars, reference):
    alone = remap.fit(stars[2], model=model, **FIXED)
    _same(alone, reference[2])
    small = remap.fit(stars, model=model, **FIXED, batch_size=1)
    _same(small, reference)
    assert small.messages == reference.messages


def test_stars_on_their_own_wavelength_solutions_are_fitted_together_as_alone(model, stars):
    """One file per star, each with its own axis (and velocity): validate joins them into one
    batch per pixel count (rows on their own grids); every star's result is its own."""
    from remap.spectra.velocity import doppler_factor

    moved = []
    for i, star in enumerate(stars):
        f = float(doppler_factor(40.0 * (i - 1.5)))
        moved.append({b: Spectrum(flux=sp.flux, spectral_axis=sp.spectral_axis * f,
                                  uncertainty=sp.uncertainty, meta=dict(sp.meta))
                      for b, sp in star.items()})
    together = remap.fit(moved, model=model)
    for i in range(len(moved)):
        _same(remap.fit(moved[i], model=model), together[i])
    rv = together.values["rv"].to_value(u.km / u.s)
    np.testing.assert_allclose(rv, 40.0 * (np.arange(len(moved)) - 1.5), atol=1.5)


def test_fit_iter_yields_chunks_with_the_users_indices(model, stars, reference):
    parts = list(fit_iter(iter(stars), model=model, **FIXED, batch_size=3))
    assert [len(p) for p in parts] == [3, 1]
    assert parts[1].index.tolist() == [3]
    _same(FitResult.concatenate(parts), reference)
    assert FitResult.concatenate(parts).index.tolist() == [0, 1, 2, 3]


def test_fit_iter_reads_lazily(model, stars):
    """The input is read a chunk at a time: up to ``chunks_in_flight`` chunks ahead of the
    result being yielded (default 2), exactly the chunk being fitted with 1."""
    for in_flight, ahead in ((1, 2), (2, 4), (None, 4)):
        pulled = []

        def source():
            for i in range(7):
                pulled.append(i)
                yield stars[i % len(stars)]

        extra = {} if in_flight is None else {"chunks_in_flight": in_flight}
        it = fit_iter(source(), model=model, **FIXED, batch_size=2, **extra)
        first = next(it)
        assert len(first) == 2 and len(pulled) == ahead, in_flight
        assert sum(len(r) for r in it) == 5 and len(pulled) == 7


def test_chunks_in_flight_give_the_same_results_in_order(model, stars):
    """Chunks fitted in threads: results identical to one chunk after the other, in the
    input's order, bad items flagged in place; errors='raise' names the right item; a
    consumer that stops early leaves no chunk running."""
    items = [stars[i % len(stars)] for i in range(7)]
    items[4] = "not a spectrum"
    one = remap.fit(items, model=model, **FIXED, batch_size=2, chunks_in_flight=1)
    for in_flight in (2, 3):
        many = remap.fit(items, model=model, **FIXED, batch_size=2, chunks_in_flight=in_flight)
        _same(many, one)
        assert many.index.tolist() == list(range(7)) and many.messages == one.messages
    good = [0, 1, 2, 3, 5, 6]
    assert one.flags[4] & Flag.BAD_INPUT and not np.any(one.flags[good] & Flag.BAD_INPUT)
    with pytest.raises(FileNotFoundError, match=r"spectra\[4\]"):
        remap.fit(items, model=model, **FIXED, batch_size=2, errors="raise")
    from threadpoolctl import threadpool_info

    before = [(d["filepath"], d["num_threads"]) for d in threadpool_info()]
    it = fit_iter(iter(items), model=model, **FIXED, batch_size=2)
    _same(next(it), one[:2])
    it.close()
    after = {d["filepath"]: d["num_threads"] for d in threadpool_info()}
    assert all(after.get(path, n) == n for path, n in before)   # the BLAS cap was lifted
    with pytest.raises(ValueError, match="chunks_in_flight"):
        remap.fit(items, model=model, **FIXED, chunks_in_flight=0)


def test_fit_iter_streams_a_generator_of_files(model, stars, tmp_path):
    paths = []
    for i, star in enumerate(stars[:3]):
        path = tmp_path / f"star{i}.fits"
        write_beams(path, {"A": star["A"], "B": star["B"]}, survey="marvels", medium="air")
        paths.append(path)
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    files = [paths[0], empty, paths[1], paths[2]]
    results = list(fit_iter((p for p in files), model=model, **FIXED, batch_size=2))
    assert [len(r) for r in results] == [2, 2]
    table = FitResult.concatenate(results).to_table()
    assert table["flags"][1] == int(Flag.BAD_INPUT)
    assert "empty.fits" in table["message"][1] and "spectra[1]" in table["message"][1]
    assert np.isnan(table["teff"][1].value)
    assert np.all(np.isfinite(table["teff"][[0, 2, 3]].value))


# ----------------------------------------------------------------- bad input

def _bad(star):
    """A star whose beam-A flux is zero or negative everywhere."""
    return {"A": _with(star["A"], flux=-np.abs(star["A"].flux.value)), "B": star["B"]}


def test_a_bad_item_is_a_flagged_nan_row_and_the_rest_is_kept(model, stars, reference):
    items = [stars[0], stars[1], _bad(stars[2]), None, stars[3]]
    r = remap.fit(items, model=model, **FIXED)
    assert len(r) == 5
    assert r.flags[2] == int(Flag.BAD_INPUT) and r.flags[3] == int(Flag.BAD_INPUT)
    assert "spectra[2]" in r.messages[2] and "zero or negative" in r.messages[2]
    assert "spectra[3]" in r.messages[3] and "TypeError" in r.messages[3]
    assert np.isnan(r.teff.pmf[2]).all() and r.beams_used[2] == ()
    assert [n.code for n in r.notes[2]] == ["bad_input"]
    _same(r[0:2], reference[0:2])
    _same(r[4], reference[3])
    assert "BAD_INPUT" in r.to_table()["flag_names"][2]


def test_errors_raise_names_the_item_in_the_users_input(model, stars):
    items = [stars[i % 4] for i in range(9)] + [_bad(stars[0])]
    with pytest.raises(remap.SpectrumError, match=r"^spectra\[9\] \(beam 'A'\): the flux is "
                                                  r"zero or negative"):
        remap.fit(items, model=model, **FIXED, batch_size=4, errors="raise")
    with pytest.raises(TypeError, match=r"spectra\[1\]"):
        remap.fit([stars[0], 3.5], model=model, **FIXED, errors="raise")
    with pytest.raises(ValueError, match="errors must be one of"):
        remap.fit(stars[:1], model=model, **FIXED, errors="ignore")
    # a single star has nothing else to keep: it raises
    with pytest.raises(remap.SpectrumError, match="zero or negative"):
        remap.fit(_bad(stars[0]), model=model, **FIXED)


def test_a_bad_row_of_a_two_d_batch_is_flagged(model, stars, reference):
    batch = _two_d(stars)
    flux = batch.flux.value.copy()
    flux[1] = -1.0
    r = remap.fit(_with(batch, flux=flux), model=model, **FIXED)
    assert r.flags[1] == int(Flag.BAD_INPUT) and "spectrum[1]" in r.messages[1]
    _same(r[2:], reference[2:])


def test_unknown_and_bad_stage_options(model, stars):
    with pytest.raises(TypeError, match="unknown option"):
        remap.fit(stars[0], model=model, **FIXED, bogus=1)
    with pytest.raises(ValueError, match="min_coverage"):
        remap.fit(stars[0], model=model, **FIXED, min_coverage=2)


# ----------------------------------------------------------------- input rules

def test_zero_and_negative_sigma_pixels_are_masked(model, stars):
    a = stars[0]["A"]
    sigma = a.uncertainty.array.copy()
    sigma[1000:1100] = 0.0
    sigma[2000:2050] = -1.0
    zeroed = remap.fit({"A": _with(a, sigma=sigma), "B": stars[0]["B"]}, model=model, **FIXED)
    mask = np.zeros(a.flux.shape, bool)
    mask[1000:1100] = mask[2000:2050] = True
    masked = remap.fit({"A": _with(a, mask=mask), "B": stars[0]["B"]}, model=model, **FIXED)
    _same(zeroed, masked)
    assert zeroed.masked_fraction["A"] >= 150 / 4301


def test_all_zero_sigma_is_taken_as_no_uncertainty_with_a_note(model, stars):
    a, b = stars[0]["A"], stars[0]["B"]
    zero = remap.fit({"A": _with(a, sigma=np.zeros(a.flux.shape)), "B": b}, model=model, **FIXED)
    none = remap.fit({"A": _with(a, uncertainty=None), "B": b}, model=model, **FIXED)
    _same(zero, none)
    assert "sigma_all_zero" in [n.code for n in zero.notes[0]]
    assert "zero everywhere" in zero.messages[0]
    assert "sigma_all_zero" not in [n.code for n in none.notes[0]]


def test_two_overlapping_spectra_of_one_beam_are_an_error(model, stars):
    a = stars[0]["A"]
    half = Spectrum(flux=a.flux[:3000], spectral_axis=a.spectral_axis[:3000],
                    uncertainty=StdDevUncertainty(a.uncertainty.quantity[:3000]),
                    meta=dict(a.meta))
    for star in (SpectrumList([a, half, stars[0]["B"]]),
                 {"A": a, "A2": half, "B": stars[0]["B"]}):
        with pytest.raises(remap.SpectrumError, match="both cover beam A"):
            remap.fit(star, model=model, **FIXED)
    r = remap.fit([stars[1], SpectrumList([half, a, stars[0]["B"]])], model=model, **FIXED)
    assert r.flags[1] == int(Flag.BAD_INPUT) and "both cover beam A" in r.messages[1]
    assert np.isfinite(r.teff.median.value[0])


def test_a_manifest_grid_that_disagrees_with_its_survey_is_refused(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_PATH, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    grid = manifest["beams"]["A"]["grid"]
    grid["wave_min"] += 0.05
    grid["wave_max"] += 0.05
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    names = sorted(p.name for p in copy.iterdir() if p.name != "SHA256SUMS")
    (copy / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((copy / n).read_bytes()).hexdigest()}  {n}\n" for n in names))
    with pytest.raises(ArtifactError, match="grid of beam 'A'.*disagrees with survey"):
        load_model(copy)


# ----------------------------------------------------------------- extending the pipeline

class _ToyVelocity(Stage):
    """A toy stage after validate: declares a per-star column and shifts nothing."""

    name = "toy_rv"
    OPTIONS = {"toy_rv": 1.5}
    COLUMNS = {"toy_v": ("km / s", "toy radial velocity")}

    def run(self, batches, context):
        for b in batches:
            context.set_value("toy_v", b.star, self.options["toy_rv"] * (b.star + 1))
        return batches


def test_a_stage_inserted_after_validate_adds_a_column(model, stars, reference, monkeypatch):
    monkeypatch.setattr(stages_module, "DEFAULT_STAGES",
                        DEFAULT_STAGES[:1] + (_ToyVelocity,) + DEFAULT_STAGES[1:])
    assert [s for s, _ in pipeline(model)][:2] == ["validate", "toy_rv"]
    r = remap.fit(stars[:3], model=model, **FIXED, toy_rv=2.0)
    assert r.values["toy_v"].unit == u.km / u.s
    np.testing.assert_allclose(r.values["toy_v"].value, [2.0, 4.0, 6.0])
    table = r.to_table()
    assert table["toy_v"].unit == u.km / u.s and table["toy_v"].info.description
    assert r[1].values["toy_v"] == 4.0 * u.km / u.s and r[1].toy_v == 4.0 * u.km / u.s
    _same(r, reference[:3])
    assert "toy_rv" in r.timings


# ----------------------------------------------------------------- the batch

def test_batch_rows_with_their_own_grids():
    wave = np.linspace(5000.0, 5010.0, 20)
    grids = np.stack([wave, wave + 0.1, wave])
    b = Batch(flux=np.ones((3, 20)), sigma=np.full((3, 20), np.nan),
              mask=np.zeros((3, 20), bool), wave=grids, star=np.arange(3),
              piece=np.zeros(3, np.int64))
    groups = {tuple(rows) for rows, _ in b.wave_groups()}
    assert groups == {(0, 2), (1,)}
    assert not b.has_sigma().any() and b.shared_wave is None
    joined = Batch.concatenate([b.take([0]), b.take([1, 2])])
    np.testing.assert_array_equal(joined.wave, grids)
    with pytest.raises(ValueError, match="wave has shape"):
        Batch(flux=np.ones((3, 20)), sigma=np.ones((3, 20)), mask=np.zeros((3, 20), bool),
              wave=wave[:5], star=np.arange(3), piece=np.zeros(3, np.int64))


class _PerRowGrids(Stage):
    """A toy stage after validate: gives every row its own copy of its grid, scaled."""

    name = "toy_grids"
    OPTIONS = {"toy_scale": 0.0}

    def run(self, batches, context):
        for b in batches:
            factor = 1.0 + self.options["toy_scale"] * (b.star[:, None] % 2)
            b.wave = np.broadcast_to(b.wave, b.flux.shape) * factor
        return batches


def test_rows_with_their_own_grids_go_through_every_stage(model, stars, monkeypatch):
    built_in = tuple(c for c in DEFAULT_STAGES if c.name not in ("rest_frame", "resolution"))
    monkeypatch.setattr(stages_module, "DEFAULT_STAGES", built_in)
    reference = remap.fit(stars, model=model)
    monkeypatch.setattr(stages_module, "DEFAULT_STAGES",
                        built_in[:1] + (_PerRowGrids,) + built_in[1:])
    same = remap.fit(stars, model=model)          # 2-D grids, every row equal
    _same(same, reference)
    shifted = remap.fit(stars, model=model, toy_scale=2e-6)   # 0.6 km/s for odd rows
    _same(shifted[0::2], reference[0::2])
    assert np.all(shifted.flags[1::2] == reference.flags[1::2])
    np.testing.assert_allclose(shifted.teff.median.value, reference.teff.median.value,
                               atol=60.0)
    assert not np.array_equal(shifted.teff.pmf[1::2], reference.teff.pmf[1::2])


def test_batch_rows_in_their_own_frames():
    """`Batch.frame`: the rows' wavelengths are the stored grid divided by it, computed when
    read; taking, cutting and joining rows keep the factors; setting ``wave`` drops them."""
    wave = np.linspace(5000.0, 5010.0, 20)
    frame = np.array([1.0001, 0.9999, 1.00002])
    b = Batch(flux=np.arange(60.0).reshape(3, 20), sigma=np.ones((3, 20)),
              mask=np.zeros((3, 20), bool), wave=wave, star=np.arange(3),
              piece=np.zeros(3, np.int64), frame=frame)
    expected = wave / frame[:, None]
    np.testing.assert_array_equal(b.wave, expected)
    assert b.shared_wave is None and b.base_wave is wave
    np.testing.assert_array_equal(b.row_wave(1), expected[1])
    first, last = b.wave_ends()
    np.testing.assert_array_equal(first, expected[:, 0])
    np.testing.assert_array_equal(last, expected[:, -1])
    t = b.take([2, 0])
    np.testing.assert_array_equal(t.wave, expected[[2, 0]])
    c = b.columns(slice(3, 9))
    np.testing.assert_array_equal(c.wave, expected[:, 3:9])
    np.testing.assert_array_equal(c.flux, b.flux[:, 3:9])
    joined = Batch.concatenate([b.take([0]), b.take([1, 2])])
    assert joined.frame is not None and joined.base_wave.ndim == 1
    np.testing.assert_array_equal(joined.wave, expected)
    plain = Batch(flux=np.ones((1, 20)), sigma=np.ones((1, 20)), mask=np.zeros((1, 20), bool),
                  wave=wave + 1.0, star=np.array([3]), piece=np.zeros(1, np.int64))
    mixed = Batch.concatenate([b, plain])
    assert mixed.frame is None
    np.testing.assert_array_equal(mixed.wave, np.vstack([expected, wave + 1.0]))
    b.wave = expected
    assert b.frame is None and b.wave is expected
    with pytest.raises(ValueError, match="frame has shape"):
        Batch(flux=np.ones((3, 20)), sigma=np.ones((3, 20)), mask=np.zeros((3, 20), bool),
              wave=wave, star=np.arange(3), piece=np.zeros(3, np.int64), frame=frame[:2])


@pytest.mark.parametrize("shared", [True, False])
def test_framed_search_equals_searching_the_divided_grids(shared):
    """`_framed_search` finds exactly the pixels a search of ``base / frame`` finds, also for
    values that are divided grid points themselves (the rounding cases)."""
    from remap.inference.stages import _framed_search

    rng = np.random.default_rng(5)
    n, npix = 200, 300
    base = np.sort(rng.uniform(5000.0, 5030.0, npix)) if shared else \
        np.sort(rng.uniform(5000.0, 5030.0, (n, npix)), axis=1)
    frame = 1.0 + rng.uniform(-1e-3, 1e-3, n)
    divided = np.broadcast_to(base, (n, npix)) / frame[:, None]
    values = [4990.0, 5040.0, 5012.345] + list(divided[rng.integers(n, size=10),
                                                       rng.integers(npix, size=10)])
    values += list(np.nextafter(values[3:], np.inf)) + list(np.nextafter(values[3:], -np.inf))
    for value in values:
        for side in ("left", "right"):
            expected = [np.searchsorted(row, value, side=side) for row in divided]
            np.testing.assert_array_equal(_framed_search(base, frame, value, side), expected)


class _PerRowFrames(Stage):
    """A toy stage after validate: per-row frame factors, as factors (``toy_frames``) or as
    the rows' divided grids (``toy_divided``)."""

    name = "toy_frames"
    OPTIONS = {"toy_frame": 0.0, "toy_divided": False}

    def run(self, batches, context):
        for b in batches:
            frame = 1.0 / (1.0 + self.options["toy_frame"] * (b.star % 3))
            if self.options["toy_divided"]:
                b.wave = np.broadcast_to(b.wave, b.flux.shape) / frame[:, None]
            else:
                b.frame = frame
        return batches


def test_rows_in_their_own_frames_equal_rows_on_their_own_grids(model, stars, monkeypatch):
    """The stages cut and resample rows with per-row factors from their stored grid; the
    results equal those of the same rows given their own divided grids (to rounding)."""
    built_in = tuple(c for c in DEFAULT_STAGES if c.name not in ("rest_frame", "resolution"))
    monkeypatch.setattr(stages_module, "DEFAULT_STAGES",
                        built_in[:1] + (_PerRowFrames,) + built_in[1:])
    framed = remap.fit(stars, model=model, toy_frame=3e-5)
    divided = remap.fit(stars, model=model, toy_frame=3e-5, toy_divided=True)
    assert np.all(framed.flags == divided.flags)
    for name in ("teff", "logg", "feh"):
        np.testing.assert_allclose(getattr(framed, name).pmf, getattr(divided, name).pmf,
                                   rtol=0, atol=1e-5)
    np.testing.assert_allclose(framed.teff.median.value, divided.teff.median.value, atol=0.01)


def _scipy_resample(wave, grid, flux, sigma, mask):
    """The reference: SciPy's not-a-knot spline, linear σ, the mask rule."""
    from remap.spectra.resampling import apply_linear, linear_weights, spline

    idx, w = linear_weights(wave, grid)
    return (spline(wave, flux, grid), apply_linear(sigma, idx, w),
            (mask[..., idx] & (w < 1)) | (mask[..., idx + 1] & (w > 0)))


def test_resample_rows_equals_the_scipy_spline_row_by_row():
    from remap.spectra.resampling import resample_rows

    rng = np.random.default_rng(3)
    base = np.linspace(5000.0, 5050.0, 501)
    wave = np.stack([base * (1 + 2e-5 * rng.standard_normal()) for _ in range(5)])
    wave[2] = np.sort(base + rng.uniform(-0.02, 0.02, base.size))   # not uniform
    flux = 1 + 0.2 * rng.standard_normal((5, base.size))
    sigma = rng.uniform(0.01, 0.02, (5, base.size))
    mask = rng.random((5, base.size)) < 0.05
    grid = np.arange(5001.0, 5049.0, 0.1)
    f, s, m = resample_rows(wave, grid, flux, sigma, mask)
    for r in range(5):
        rf, rs, rm = _scipy_resample(wave[r], grid, flux[r], sigma[r], mask[r])
        np.testing.assert_allclose(f[r], rf, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(s[r], rs)
        np.testing.assert_array_equal(m[r], rm)


@pytest.mark.parametrize("uniform", [True, False])
def test_resample_arrays_shared_axis_equals_scipy_and_is_c_ordered(uniform):
    """Rows sharing one axis (one factorization of the spline system for all of them), 1-D
    and 2-D, equal SciPy's spline to rounding; the outputs are C-ordered for the kernels
    after them (SciPy's batched evaluation returns them transposed)."""
    from remap.spectra.resampling import resample_arrays, resample_rows

    rng = np.random.default_rng(4)
    wave = np.linspace(5000.0, 5050.0, 501)
    if not uniform:
        wave = np.sort(wave + rng.uniform(-0.02, 0.02, wave.size))
    flux = 1 + 0.2 * rng.standard_normal((7, wave.size))
    sigma = rng.uniform(0.01, 0.02, (7, wave.size))
    sigma[4] = np.nan                                       # a row without uncertainties
    mask = rng.random((7, wave.size)) < 0.05
    grid = np.arange(5001.03, 5049.0, 0.1)
    rf, rs, rm = _scipy_resample(wave, grid, flux, sigma, mask)
    f, s, m = resample_arrays(wave, grid, flux, sigma, mask)
    assert f.shape == s.shape == m.shape == (7, grid.size)
    assert f.flags.c_contiguous and s.flags.c_contiguous and m.flags.c_contiguous
    np.testing.assert_allclose(f, rf, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_array_equal(m, rm)
    assert np.isnan(s[4]).all()
    f1, s1, m1 = resample_arrays(wave, grid, flux[2], sigma[2], mask[2])
    assert f1.shape == (grid.size,)
    np.testing.assert_allclose(f1, rf[2], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(m1, rm[2])
    # the shared path and the per-row path agree; so do per-row query points
    own = resample_rows(np.broadcast_to(wave, flux.shape), grid, flux, sigma, mask)
    np.testing.assert_allclose(own[0], f, rtol=0, atol=1e-12)
    shifted = np.stack([grid * (1 + 1e-5 * k) for k in range(7)])
    got = resample_rows(wave, shifted, flux)[0]
    for r in range(7):
        np.testing.assert_allclose(got[r], _scipy_resample(wave, shifted[r], flux[r], sigma[r],
                                                           mask[r])[0], rtol=0, atol=1e-12)
    sub, _, _ = resample_rows(wave, grid, flux, rows=np.array([5, 1]))
    np.testing.assert_array_equal(sub, f[[5, 1]])
    with pytest.raises(ValueError, match="strictly increasing"):
        resample_arrays(wave[::-1], grid, flux)
    with pytest.raises(ValueError, match="one value per pixel"):
        resample_arrays(wave[:-1], grid, flux)
    with pytest.raises(ValueError, match="at least 4 pixels"):
        resample_arrays(wave[:3], grid[:2], flux[:, :3])
    # per-row factors (rows in their own frames): the one-pass kernel equals the separate
    # spline and linear kernels, and the SciPy reference on the divided grids
    from remap.spectra._spline_kernel import linear_rows, spline_rows

    factor = 1.0 + 1e-4 * np.arange(-3, 4)
    grid = grid[(grid * factor.min() >= wave[0]) & (grid * factor.max() <= wave[-1])]
    got = resample_rows(wave, grid, flux, sigma, mask, scale=factor)
    np.testing.assert_array_equal(got[0], spline_rows(wave, flux, grid, scale=factor))
    ls, lm = linear_rows(wave, grid, sigma, mask, scale=factor)
    np.testing.assert_array_equal(got[1], ls)
    np.testing.assert_array_equal(got[2], lm)
    for r in range(7):
        # the query points times the factor round to ~5e-13 Å at 5000 Å: a flux changing
        # by ~10 per Å moves by ~1e-11 (noise is > 1e-4 in any real spectrum)
        ref = _scipy_resample(wave / factor[r], grid, flux[r], sigma[r], mask[r])
        np.testing.assert_allclose(got[0][r], ref[0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(got[1][r], ref[1], rtol=1e-10, atol=0)
        np.testing.assert_array_equal(got[2][r], ref[2])


def test_outside_domain_rule_and_flag():
    """A cool M dwarf (no molecules in the library) is flagged, a solar twin is not."""
    from remap.inference.flags import outside_domain
    from remap.libraries.linelist import TRUSTED_DOMAIN, LineListLibrary

    out = outside_domain(TRUSTED_DOMAIN, np.array([3700.0, 5772.0, np.nan, 5000.0]),
                         np.array([4.7, 4.44, 4.4, 2.5]), np.array([0.0, 0.0, 0.0, -2.5]))
    assert out.tolist() == [True, False, False, True]
    assert not outside_domain(None, np.array([3000.0]), np.array([5.0]), np.array([0.0])).any()

    lib = LineListLibrary(resolution=50_000, wave_range=(4830, 5770) * u.AA)
    stars = []
    for labels in [(3700.0, 4.7, 0.0), (5772.0, 4.44, 0.0)]:
        spec = lib.spectrum(*labels, normalized=True)
        spec.meta.update(resolution=50_000, wavelength_medium="air")
        stars.append(spec)
    result = remap.fit(stars)
    assert "OUTSIDE_DOMAIN" in result.flag_names(0)
    assert "trusted domain" in result.messages[0]
    assert "OUTSIDE_DOMAIN" not in result.flag_names(1)


def test_medium_option_and_the_assumed_medium_warning():
    """No medium anywhere: one warning; medium= states it (and vacuum moves the lines)."""
    star = load_example()
    for spec in star.values():
        spec.meta.pop("wavelength_medium", None)
    with pytest.warns(remap.MediumAssumedWarning, match="assumed air wavelengths"):
        assumed = remap.fit(star, rv=0, resolution="survey")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", remap.MediumAssumedWarning)
        air = remap.fit(star, rv=0, resolution="survey", medium="air")
        vacuum = remap.fit(star, rv=0, resolution="survey", medium="vacuum")
    assert air.teff.median == assumed.teff.median
    assert abs(vacuum.teff.median - air.teff.median) > 20 * u.K   # lines moved by ~1.4 Å
    with pytest.raises(ValueError, match="medium"):
        remap.fit(star, medium="glass")


def test_continuum_division_and_snr_kernel_equal_the_numpy_rules():
    """`_normalize` (compiled) gives the flux, σ and SNR of the NumPy formulation `_snr`."""
    rng = np.random.default_rng(1)
    n, m = 40, 301
    flux = rng.normal(1.0, 0.1, (n, m))
    sigma = rng.uniform(0.005, 0.02, (n, m))
    mask = rng.random((n, m)) < 0.1
    sigma[3, 5] = np.nan            # one non-finite σ: the row has no usable uncertainty
    sigma[4] = 0.0                  # no positive σ: residual estimate
    sigma[5, ::2] = -1.0            # half the pixels unusable
    mask[6] = True                  # every pixel masked
    mask[7, :151] = True            # an even count of usable pixels
    cont = rng.uniform(0.5, 2.0, (n, m))
    expected = stages_module._snr(flux / cont, sigma / cont, mask)
    batch = Batch(flux=flux.copy(), sigma=sigma.copy(), mask=mask, wave=np.arange(m, dtype=float),
                  star=np.arange(n), piece=np.zeros(n, np.int64))
    got = stages_module._normalize(batch, cont)
    np.testing.assert_array_equal(got, expected)
    assert np.isfinite(got[[0, 4, 5, 7]]).all()
    np.testing.assert_array_equal(batch.flux, flux / cont)
    np.testing.assert_array_equal(batch.sigma, sigma / cont)
