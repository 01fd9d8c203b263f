"""Tests of the astrophysical line-list calibration (remap.libraries.calibrate).

The real solar spectrum is not used (GPL, not shipped): the reference is a
stand-in made by the library itself with known log gf errors.
"""

import numpy as np
import pytest
from astropy import units as u
from click.testing import CliRunner
from scipy.ndimage import gaussian_filter1d

from remap.libraries import calibrate as cal
from remap.libraries._atomic import (CALIBRATION_COLUMNS, ges_loggf, load_atomic_data,
                                     load_calibration, load_ges_data)
from remap.libraries.linelist import (TRUSTED_DOMAIN, LineListLibrary, vmicro_relation)

RANGE = (5186.0, 5204.0)
SUN = (5772.0, 4.44, 0.0)


def _stand_in(offsets, resolution=50_000.0):
    """A 'reference': the laboratory library with log gf offsets, degraded to ``resolution``."""
    lib = LineListLibrary(wave_range=(RANGE[0] - 4, RANGE[1] + 4) * u.AA, linelist="laboratory",
                          loggf_offsets=None)
    lab = LineListLibrary(wave_range=(RANGE[0] - 4, RANGE[1] + 4) * u.AA, linelist="laboratory",
                          loggf_offsets=offsets(lib))
    wave = lab.wavelength.value
    flux = lab.spectrum(*SUN, normalized=True).flux.value
    step = np.log(wave[1] / wave[0])
    sig = np.sqrt(1 / resolution**2 - 1 / 100_000.0**2) / (step * 2.3548)
    return lib, wave, gaussian_filter1d(flux, sig)


def _strong_lines(lib, lo, hi, n):
    """Indices (library order) of the n strongest metal lines inside (lo, hi)."""
    st = lib._line_state(*SUN, 0.0)
    inside = np.flatnonzero((st["lam"] > lo) & (st["lam"] < hi))
    return inside[np.argsort(st["strength"][inside])[::-1][:n]]


@pytest.fixture(scope="module")
def perturbed():
    picks = {}

    def offsets(lib):
        off = np.zeros(lib.n_lines)
        strong = _strong_lines(lib, RANGE[0] + 1, RANGE[1] - 1, 6)
        picks["up"], picks["down"], picks["gone"] = strong[0:2], strong[2:4], strong[4]
        off[picks["up"]] = 0.3
        off[picks["down"]] = -0.2
        off[picks["gone"]] = -4.0            # a "spurious" line: absent from the reference
        return off

    lib, wave, flux = _stand_in(offsets)
    # the stand-in's truth is the laboratory list: centre the prior there
    result = cal.calibrate_linelist(wave, flux, wave_range=RANGE * u.AA, holdout=0,
                                    iterations=10, loggf_prior="laboratory")
    return lib, picks, result


def test_calibration_recovers_known_loggf_errors(perturbed):
    lib, picks, result = perturbed
    table = result.table
    rows = lib._l_index
    delta = np.asarray(table["loggf"] - table["loggf_lab"])
    assert np.all(np.abs(delta[rows[picks["up"]]] - 0.3) < 0.1)
    assert np.all(np.abs(delta[rows[picks["down"]]] + 0.2) < 0.1)
    assert table["status"][rows[picks["gone"]]] == "removed"
    assert result.rms_fit < 0.01
    assert 40_000 <= result.resolution <= 60_000
    assert abs(result.velocity) < 0.15
    assert result.n_removed >= 1


def test_calibration_file_round_trip(perturbed, tmp_path):
    lib, picks, result = perturbed
    path = tmp_path / "cal.csv"
    result.write(path)
    loaded = load_calibration(path)
    assert loaded.dtype.names == CALIBRATION_COLUMNS
    assert np.allclose(loaded["loggf"], np.asarray(result.table["loggf"]), atol=5e-4)
    custom = LineListLibrary(wave_range=RANGE * u.AA, linelist=str(path))
    lab = LineListLibrary(wave_range=RANGE * u.AA, linelist="laboratory")
    assert custom.linelist == str(path)
    assert custom.n_lines == lab.n_lines - int(np.sum(
        (loaded["status"] == "removed")
        & np.isin(np.arange(loaded.size), lab._l_index)))
    a = custom.spectrum(*SUN, normalized=True).flux.value
    b = lab.spectrum(*SUN, normalized=True).flux.value
    assert np.max(np.abs(a - b)) > 0.05           # the calibration changes the spectrum


def test_holdout_reports_heldout_rms():
    lib, wave, flux = _stand_in(lambda lib: np.zeros(lib.n_lines))
    result = cal.calibrate_linelist(wave, flux, wave_range=RANGE * u.AA, holdout=3, window=3.0,
                                    iterations=4, loggf_prior="laboratory")
    assert len(result.holdout_windows) == 2
    assert np.isfinite(result.rms_holdout) and result.rms_holdout < 0.01
    assert abs(result.absorption_ratio_holdout - 1.0) < 0.05
    assert "held-out" in result.summary()


def test_bad_inputs_are_rejected():
    wave = np.linspace(5100, 5200, 100)
    with pytest.raises(ValueError, match="same"):
        cal.calibrate_linelist(wave, np.ones(99))
    with pytest.raises(ValueError, match="holdout"):
        cal.calibrate_linelist(wave, np.ones(100), holdout=1)
    with pytest.raises(ValueError, match="wave_range"):
        cal.calibrate_linelist(wave, np.ones(100), wave_range=(5000, 5150) * u.AA)
    with pytest.raises(ValueError, match="prior_sigma"):
        cal.calibrate_linelist(wave, np.ones(100), prior_sigma=0.0)


def test_read_reference_averages_repeated_wavelengths(tmp_path):
    path = tmp_path / "ref.txt"
    rows = [(5000.0 + 0.01 * i, 1.0) for i in range(20)]
    rows.insert(10, (rows[9][0], 0.5))                     # a repeated wavelength
    path.write_text("\n".join(f"{w:.2f} {f}" for w, f in rows))
    wave, flux = cal.read_reference(path)
    assert wave.size == 20 and np.all(np.diff(wave) > 0)
    assert flux[9] == pytest.approx(0.75)
    bad = tmp_path / "bad.txt"
    bad.write_text("5000 1\n4999 1\n" * 6)
    with pytest.raises(ValueError, match="increase"):
        cal.read_reference(bad)


@pytest.mark.parametrize("physics", ["v4", "v3", "v2"])
def test_shipped_calibration_matches_line_list(physics):
    shipped = load_calibration(physics=physics)
    lines = load_atomic_data().lines
    assert shipped.size == lines.size
    assert set(np.unique(shipped["status"])) <= {"fit", "global", "removed"}
    # v2: factors on Unsöld (>= 1); v3: on ABO or 1.3 x Unsöld, 10^-0.3 ... 10^0.8
    assert np.all(shipped["vdw_enhancement"] >= (1.0 if physics == "v2" else 0.5))
    assert np.all(shipped["vdw_enhancement"] <= 10.0 ** 0.8 + 1e-3)      # 3 decimals
    # most lines are constrained by the reference, a minority is removed
    assert np.mean(shipped["status"] == "fit") > 0.7
    assert 0 < np.mean(shipped["status"] == "removed") < 0.1
    if physics != "v2":
        # lines with ABO damping keep factor 1 unless they are strong enough to be fitted
        abo = np.isfinite(load_ges_data()["abo_sigma"]) & (lines["element"] != "H")
        assert np.mean(shipped["vdw_enhancement"][abo] == 1.0) > 0.8
    with pytest.raises(ValueError, match="physics must be one of"):
        load_calibration(physics="v1")


def test_ges_prior_centres_the_fit_on_the_ges_values():
    lib, wave, flux = _stand_in(lambda lib: np.zeros(lib.n_lines))
    # the default prior of physics v3 (the shipped v3 calibration's) is the Gaia-ESO log gf
    result = cal.calibrate_linelist(wave, flux, wave_range=RANGE * u.AA, holdout=0,
                                    iterations=3)
    table = result.table
    ges = ges_loggf()
    lines = load_atomic_data().lines
    has = np.isfinite(ges)
    np.testing.assert_allclose(table["loggf_lab"][has], ges[has])
    np.testing.assert_allclose(table["loggf_lab"][~has], lines["loggf"][~has])
    # physics v2: the laboratory prior and Unsöld factors >= 1 (its shipped calibration's)
    v2 = cal.calibrate_linelist(wave, flux, wave_range=RANGE * u.AA, holdout=0, iterations=2,
                                physics="v2").table
    np.testing.assert_allclose(v2["loggf_lab"], lines["loggf"])
    assert np.all(np.asarray(v2["vdw_enhancement"]) >= 1.0)
    with pytest.raises(ValueError, match="loggf_prior must be one of"):
        cal.calibrate_linelist(wave, flux, wave_range=RANGE * u.AA, loggf_prior="vald")


def test_linelist_option_and_defaults(tmp_path):
    with pytest.raises(ValueError, match="linelist"):
        LineListLibrary(wave_range=RANGE * u.AA, linelist="no-such-list")
    with pytest.raises(TypeError, match="linelist"):
        LineListLibrary(wave_range=RANGE * u.AA, linelist=3)
    bad = tmp_path / "bad.csv"
    bad.write_text("wavelength_air_AA,species\n5000.0,26.0\n")
    with pytest.raises(ValueError, match="missing column"):
        LineListLibrary(wave_range=RANGE * u.AA, linelist=str(bad))
    lib = LineListLibrary(wave_range=RANGE * u.AA)
    assert lib.linelist == "calibrated" and lib.vmicro is None
    spec = lib.spectrum(*SUN)
    assert spec.meta["vmicro"] == pytest.approx(vmicro_relation(*SUN))
    assert spec.meta["linelist"] == "calibrated"
    fixed = LineListLibrary(wave_range=RANGE * u.AA, vmicro=1.5)
    assert fixed.spectrum(*SUN).meta["vmicro"] == 1.5


def test_vmicro_relation_and_trusted_domain():
    assert vmicro_relation(5772, 4.44, 0.0) == pytest.approx(1.02, abs=0.01)
    # dwarfs: hotter -> larger; giants: lower log g -> larger; clipped
    assert vmicro_relation(6500, 4.3) > vmicro_relation(5500, 4.5)
    assert vmicro_relation(4800, 2.0) > vmicro_relation(4800, 3.0)
    assert vmicro_relation(3500, 5.0) == pytest.approx(0.5)
    grid = vmicro_relation(np.full(5, 5000.0), np.linspace(3.6, 4.3, 5))
    assert np.all(np.abs(np.diff(grid)) < 0.3)             # smooth blend, no step
    assert TRUSTED_DOMAIN.contains(5772, 4.44, 0.0)
    assert not TRUSTED_DOMAIN.contains(3700, 4.8, 0.0)     # M dwarf: no molecules
    assert TRUSTED_DOMAIN.contains(4200, 2.0, -0.5)        # K giant
    assert not TRUSTED_DOMAIN.contains(5772, 4.44, -2.5)
    assert LineListLibrary.trusted_domain is TRUSTED_DOMAIN
    inside = TRUSTED_DOMAIN.contains([5000, 3500], [4.5, 4.5], [0.0, 0.0])
    assert inside.tolist() == [True, False]


def test_cli_calibrate(tmp_path):
    from remap.cli.library import library
    lib, wave, flux = _stand_in(lambda lib: np.zeros(lib.n_lines))
    ref = tmp_path / "ref.txt"
    sel = (wave > RANGE[0] - 2) & (wave < RANGE[1] + 2)
    ref.write_text("\n".join(f"{w:.4f} {f:.6f}" for w, f in zip(wave[sel], flux[sel])))
    out = tmp_path / "cal.csv"
    result = CliRunner().invoke(library, ["calibrate", "--reference", str(ref), "--output",
                                          str(out), "--iterations", "3"])
    assert result.exit_code == 0, result.output
    assert "fitted" in result.output and out.is_file()
    assert load_calibration(out).size == load_atomic_data().lines.size
    bad = tmp_path / "bad.txt"
    bad.write_text("not numbers\n")
    result = CliRunner().invoke(library, ["calibrate", "--reference", str(bad)])
    assert result.exit_code != 0
