"""Tests of the simulated MARVELS-like survey (remap.simulate)."""

import dataclasses

import astropy.units as u
import numpy as np
import pytest
from click.testing import CliRunner

from remap.cli.app import cli
from remap.datasets import Dataset
from remap.libraries.linelist import LineListLibrary
from remap.plugins import get_survey
from remap.simulate import (SET_DOMAINS, SimulationConfig, perturbed_library, simulate_star)

RANGE = (5160.0, 5200.0) * u.AA


def test_perturbed_library_has_fixed_per_line_loggf_errors():
    lib = perturbed_library(3, wave_range=RANGE)
    again = perturbed_library(3, wave_range=RANGE)
    base = LineListLibrary(vmicro=1.5, wave_range=RANGE)
    np.testing.assert_array_equal(lib.loggf_offsets, again.loggf_offsets)
    assert lib.loggf_offsets.size > 20
    assert 0.05 < np.std(lib.loggf_offsets) < 0.15
    assert lib.vmicro == 1.5
    a = lib.spectrum(teff=5500, logg=4.4, feh=0.0, normalized=True).flux.value
    b = again.spectrum(teff=5500, logg=4.4, feh=0.0, normalized=True).flux.value
    c = base.spectrum(teff=5500, logg=4.4, feh=0.0, normalized=True).flux.value
    assert a.tobytes() == b.tobytes()
    assert np.max(np.abs(a - c)) > 0.01           # line depths moved
    other = perturbed_library(4, wave_range=RANGE)
    assert not np.array_equal(other.loggf_offsets, lib.loggf_offsets)


def test_simulation_without_loggf_errors_and_with_the_vmicro_relation():
    """loggf_sigma = 0 and vmicro = "relation": the library's own line data and microturbulence."""
    config = SimulationConfig(loggf_sigma=0.0, vmicro="relation")
    lib = perturbed_library(3, config, wave_range=RANGE)
    assert np.all(lib.loggf_offsets == 0.0)
    assert lib.vmicro is None                      # label-dependent relation
    base = LineListLibrary(wave_range=RANGE)
    a = lib.spectrum(teff=5500, logg=4.4, feh=0.0, normalized=True).flux.value
    b = base.spectrum(teff=5500, logg=4.4, feh=0.0, normalized=True).flux.value
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="vmicro"):
        SimulationConfig(vmicro="fixed")


def test_simulate_star_noise_spikes_and_determinism():
    lib = perturbed_library(0)
    survey = get_survey("marvels")
    config = SimulationConfig(spike_fraction=1.0, snr_range=(100.0, 100.0))
    labels = {"teff": 5600.0, "logg": 4.3, "feh": -0.2}
    spectra, info = simulate_star(lib, survey, labels, np.random.default_rng(1), config)
    again, info2 = simulate_star(lib, survey, labels, np.random.default_rng(1), config)
    assert info == info2 and info["snr"] == 100.0
    assert info["n_spikes"] >= 2 and 10_000 <= info["resolution"] <= 12_000
    for beam, spec in spectra.items():
        assert spec.flux.shape == (survey.beams[beam].npix,)
        assert spec.flux.value.tobytes() == again[beam].flux.value.tobytes()
        # σ = continuum / SNR; the flux sits mostly below the continuum
        cont = spec.uncertainty.array * 100.0
        assert np.median(spec.flux.value / cont) < 1.0
        # spikes rise far above the continuum
        assert np.max(spec.flux.value / cont) > 1.2
    quiet = dataclasses.replace(config, spike_fraction=0.0)
    clean, info3 = simulate_star(lib, survey, labels, np.random.default_rng(1), quiet)
    assert info3["n_spikes"] == 0
    with pytest.raises(ValueError, match="spike_fraction"):
        SimulationConfig(spike_fraction=2.0)


def test_cli_simulate_writes_labelled_set(tmp_path):
    args = ["dataset", "simulate", "--out", str(tmp_path / "cal"), "--set", "calibration",
            "--n", "2", "--shard-size", "1", "--seed", "5", "--no-progress"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "simulated calibration: 2 stars" in result.output
    ds = Dataset(tmp_path / "cal", verify=True)
    assert len(ds) == 2 and ds.complete and ds.beams == ["A", "B"]
    table = ds.labels
    lo, hi = SET_DOMAINS["calibration"]["teff"]
    assert np.all((table["teff_true"] >= lo) & (table["teff_true"] <= hi))
    np.testing.assert_array_equal(np.asarray(table["teff_err"]), 80.0)
    assert np.all(np.abs(table["teff"] - table["teff_true"]) < 5 * 80)
    assert np.all((table["snr"] >= 50) & (table["snr"] <= 200))
    flux, mask, _, _ = ds.read_arrays([0, 1], "B")
    assert 0.7 < np.median(flux) < 1.05          # continuum-normalized
    # resuming the finished run writes nothing and changes nothing
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert "(0 shards written, 2 already complete)" in again.output
    assert Dataset(tmp_path / "cal").read_arrays([0, 1], "B")[0].tobytes() == flux.tobytes()
