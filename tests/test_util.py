"""Tests of remap._util: the shared scalar validators, the JSON coercion and the fs helpers."""

import json
import math
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from remap._util import fs
from remap._util.json import json_default, jsonable
from remap._util.validators import (bounds_text, check_choice, check_int, check_real,
                                    check_seed, is_int, is_real)


# --------------------------------------------------------------------------- validators

@pytest.mark.parametrize("value, expected", [
    (3, True), (np.int64(3), True), (np.uint8(0), True), (True, False), (np.bool_(1), False),
    (3.0, False), ("3", False), (None, False)])
def test_is_int(value, expected):
    assert is_int(value) is expected


@pytest.mark.parametrize("value, expected", [
    (1.5, True), (np.float32(2), True), (3, True), (math.inf, False), (math.nan, False),
    (False, False), ("1", False), (None, False), (1 + 0j, False)])
def test_is_real(value, expected):
    assert is_real(value) is expected


def test_check_int_returns_a_python_int_and_names_the_bad_value():
    out = check_int("n", np.int32(4), 1, 9)
    assert out == 4 and type(out) is int
    for value, bounds, message in [
            (0, (1, None), "n must be an integer >= 1; received n=0"),
            (10, (1, 9), "n must be an integer in [1, 9]; received n=10"),
            (5, (None, 4), "n must be an integer <= 4; received n=5"),
            (2.0, (None, None), "n must be an integer; received n=2.0"),
            (True, (0, None), "n must be an integer >= 0; received n=True")]:
        with pytest.raises(ValueError) as info:
            check_int("n", value, *bounds)
        assert str(info.value) == message


def test_check_real_bounds_open_and_closed():
    out = check_real("beta", np.float32(0.5), 0, 1, strict_max=True)
    assert out == 0.5 and type(out) is float
    assert check_real("x", 0, 0) == 0.0
    for value, kwargs, message in [
            (1.0, {"minimum": 0, "maximum": 1, "strict_max": True},
             "beta must be a finite number in [0, 1); received beta=1.0"),
            (0, {"minimum": 0, "strict_min": True},
             "beta must be a finite number > 0; received beta=0"),
            (2, {"maximum": 1, "strict_max": True},
             "beta must be a finite number < 1; received beta=2"),
            (math.inf, {}, "beta must be a finite number; received beta=inf"),
            ("0.5", {}, "beta must be a finite number; received beta='0.5'")]:
        with pytest.raises(ValueError) as info:
            check_real("beta", value, **kwargs)
        assert str(info.value) == message


def test_check_choice_seed_and_error_class():
    assert check_choice("rule", "minimum", ("steepest", "minimum")) == "minimum"
    with pytest.raises(ValueError, match="rule must be one of 'steepest', 'minimum'; received "
                                         "rule='max'"):
        check_choice("rule", "max", ["steepest", "minimum"])
    assert check_seed(np.int64(7)) == 7
    with pytest.raises(ValueError, match="seed must be an integer >= 0; received seed=-1"):
        check_seed(-1)
    with pytest.raises(TypeError, match="k must be an integer >= 2"):
        check_int("k", 1, 2, error=TypeError)
    assert bounds_text() == "" and bounds_text(0, 1, strict_min=True) == " in (0, 1]"


# --------------------------------------------------------------------------- json

def test_jsonable_coerces_numpy_paths_quantities_and_non_finite_floats():
    value = {"a": np.float32(1.5), "b": np.arange(3), "c": (np.int64(2), Path("x/y")),
             "d": np.bool_(True), "e": 3 * u.AA, "f": [math.nan, math.inf], "g": {"h": None},
             "i": u.km}
    out = jsonable(value)
    assert out == {"a": 1.5, "b": [0, 1, 2], "c": [2, "x/y"], "d": True,
                   "e": {"value": 3.0, "unit": "Angstrom"}, "f": [None, None],
                   "g": {"h": None}, "i": "km"}
    json.dumps(out, allow_nan=False)
    assert type(out["a"]) is float and type(out["c"][0]) is int
    with pytest.raises(TypeError, match=r"JSON value at x\[1\] is a object, which cannot be "
                                        r"stored as JSON: <object"):
        jsonable({"x": [1, object()]})
    with pytest.raises(ValueError, match="manifest keys must be strings; received 4 at beams"):
        jsonable({"beams": {4: 1}}, what="manifest", error=ValueError)
    assert jsonable({"x": object()}, default=lambda o: type(o).__name__) == {"x": "object"}
    assert json.dumps({"n": np.int64(3), "p": Path("a")}, default=json_default) == \
        '{"n": 3, "p": "a"}'
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        json.dumps({1, 2}, default=json_default)


# --------------------------------------------------------------------------- fs

def test_fsync_dir_and_atomic_write(tmp_path):
    fs.fsync_dir(tmp_path)        # a directory: no error
    target = tmp_path / "a.txt"
    fs.atomic_write_text(target, "one")
    assert target.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_n_threads_reads_remap_num_threads(monkeypatch):
    from remap._util.threads import n_threads

    monkeypatch.setenv("REMAP_NUM_THREADS", "3")
    assert n_threads() == 3
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv("REMAP_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="REMAP_NUM_THREADS must be a positive integer"):
            n_threads()


def test_over_rows_covers_every_row_once_and_raises_a_part_error(monkeypatch):
    from remap._util.threads import over_rows

    seen = np.zeros(100, dtype=int)

    def kernel(r0, r1, out):
        out[r0:r1] += 1

    for threads in ("1", "2", "7"):
        monkeypatch.setenv("REMAP_NUM_THREADS", threads)
        seen[:] = 0
        over_rows(kernel, 100, seen)
        assert seen.tolist() == [1] * 100

    def failing(r0, r1):
        if r0 > 0:
            raise RuntimeError(f"rows {r0}-{r1}")

    monkeypatch.setenv("REMAP_NUM_THREADS", "2")
    with pytest.raises(RuntimeError, match="rows 50-100"):
        over_rows(failing, 100)


def test_threaded_kernels_give_the_same_result_whatever_the_split(monkeypatch):
    """Continuum (Algorithm 1 fast), spikes and per-row splines: one thread vs three."""
    from remap.continuum import Algorithm1
    from remap.spectra.resampling import resample_rows
    from remap.surveys.base import find_spikes

    rng = np.random.default_rng(5)
    x = np.linspace(0, 1, 1500)
    centres = rng.uniform(0, 1, (40, 1))
    flux = (1 + 0.3 * x) * (1 - 0.4 * np.exp(-0.5 * ((x[None] - centres) / 0.01) ** 2))
    flux = flux + 0.01 * rng.standard_normal(flux.shape)
    flux[::7, 700] += 0.5                                      # spikes
    wave = 5000 + 0.1 * np.arange(1500) + rng.uniform(-0.05, 0.05, (40, 1))
    grid = 5001 + 0.1 * np.arange(1400)
    out = {}
    for threads in ("1", "3"):
        monkeypatch.setenv("REMAP_NUM_THREADS", threads)
        out[threads] = (Algorithm1().fit(flux), find_spikes(flux, stddev=np.full_like(flux, 0.01)),
                        resample_rows(wave, grid, flux, np.full_like(flux, 0.01),
                                      None)[0])
    for one, three in zip(out["1"], out["3"]):
        np.testing.assert_array_equal(one, three)
    assert out["1"][1][::7, 700].all()


def test_resample_rows_of_a_selection_into_given_arrays():
    """``rows=``/``out=``/``offset=`` of `resample_rows` equal resampling those rows alone."""
    from remap.spectra.resampling import resample_rows

    rng = np.random.default_rng(7)
    flux = 1 + 0.05 * rng.standard_normal((12, 300))
    sigma = rng.uniform(0.01, 0.02, flux.shape)
    mask = rng.random(flux.shape) < 0.05
    wave = 5000 + 0.1 * np.arange(300) + rng.uniform(-0.05, 0.05, (12, 1))
    grid = 5001 + 0.1 * np.arange(280)
    rows = np.array([9, 2, 5])
    expected = resample_rows(wave[rows], grid, flux[rows], sigma[rows], mask[rows])
    out = (np.full((5, 280), np.nan), np.full((5, 280), np.nan), np.ones((5, 280), bool))
    got = resample_rows(wave, grid, flux, sigma, mask, rows=rows, out=out, offset=1)
    assert all(g is o for g, o in zip(got, out))
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g[1:4], e)
    assert np.isnan(out[0][[0, 4]]).all() and out[2][[0, 4]].all()     # rows left alone
    with pytest.raises(ValueError, match="out has shape"):
        resample_rows(wave, grid, flux, sigma, mask, rows=rows, out=out, offset=3)


# --------------------------------------------------------------------------- median kernel

def _median_cases():
    rng = np.random.default_rng(7)
    cases = []
    for n in (1, 2, 3, 11, 12, 32, 33, 34, 64, 65, 4500, 4501):
        x = 1 + 0.05 * rng.standard_normal(n)
        cases += [x, np.round(x, 2), np.sort(x), np.sort(x)[::-1], np.full(n, 2.5)]
        if n > 2:
            y = x.copy()
            y[0], y[-1] = 1e300, -1e300           # outliers: several bucket rounds
            cases += [y, np.exp(rng.uniform(-300, 300, n))]   # 260 decades: the sort fallback
            z = np.round(x, 1)
            z[: n // 2] = 1.0                     # half the values tied at the median
            cases.append(z)
    return cases


def test_median_kernel_is_numpys_median_bit_for_bit():
    from remap._util._median_kernel import N_BUCKETS, median_inplace

    counts = np.empty(N_BUCKETS, np.int64)
    for x in _median_cases():
        buf = np.concatenate([x, [np.nan] * 3])   # only a[:n] is read
        got = median_inplace(buf, x.size, counts)
        assert got == np.median(x), (x.size, got, np.median(x))
    # a tiny bucket array works too (more rounds)
    x = np.random.default_rng(8).standard_normal(1001)
    assert median_inplace(x.copy(), x.size, np.empty(2, np.int64)) == np.median(x)
