"""Partition functions of the ``linelist`` library: Irwin's polynomials and the two-point table."""

import dataclasses

import numpy as np
import pytest

from remap.libraries import _atomic
from remap.libraries._atomic import IRWIN_RANGE, irwin_log_partition, load_atomic_data


@pytest.mark.parametrize("symbol, ion, temperature, expected, tol", [
    ("H", 0, 5000.0, np.log10(2.0), 0.002),     # ground state only: U = 2
    ("H", 1, 5000.0, 0.0, 1e-12),               # a bare proton
    ("He", 1, 8000.0, np.log10(2.0), 0.002),
    ("Fe", 0, 5000.0, 1.44, 0.02),
    ("Fe", 1, 5000.0, 1.63, 0.02),
    ("Mg", 0, 5000.0, 0.0, 0.02),               # 3s2 1S0, first excited level at 2.7 eV
    ("Ca", 1, 5000.0, np.log10(2.0), 0.05),     # 4s 2S, 3d at 1.7 eV
    ("Ti", 0, 5040.0, 1.48, 0.03),              # Allen (Cox 2000): 1.48
])
def test_irwin_values(symbol, ion, temperature, expected, tol):
    assert irwin_log_partition(symbol, ion, temperature) == pytest.approx(expected, abs=tol)


def test_irwin_agrees_with_the_independent_table_at_5040k():
    # Allen's Astrophysical Quantities (the two-point table) at theta = 1: another data set
    irwin = load_atomic_data("irwin").log_partition(5040.0)[:, :2]
    table = load_atomic_data("two-point").log_partition(5040.0)[:, :2]
    assert np.nanmax(np.abs(irwin - table)) < 0.07


def test_irwin_follows_temperature_and_is_clipped():
    t = np.array([3000.0, 4000.0, 5000.0, 6000.0, 8000.0, 10000.0])
    fe = irwin_log_partition("Fe", 0, t)
    assert fe.shape == t.shape and np.all(np.diff(fe) > 0)
    # Fe I at 3000 K: the two-point table holds its 5040 K value, Irwin is ~0.09 dex lower
    assert fe[0] == pytest.approx(1.34, abs=0.02)
    assert irwin_log_partition("Fe", 0, 300.0) == irwin_log_partition("Fe", 0, IRWIN_RANGE[0])
    assert irwin_log_partition("Fe", 0, 3e4) == irwin_log_partition("Fe", 0, IRWIN_RANGE[1])


def test_atomic_data_uses_irwin_for_every_stage_and_falls_back():
    atomic = load_atomic_data("irwin")
    assert atomic.partition == "irwin"
    assert load_atomic_data("two-point").partition == "two-point"
    # every existing stage (0-2) of the 26 elements has coefficients; H III does not exist
    assert len(atomic.irwin_species) == 3 * len(atomic.symbols) - 1
    t = np.array([4500.0, 6500.0])
    fe = atomic.index("Fe")
    np.testing.assert_allclose(atomic.log_partition(t)[:, fe, 1],
                               irwin_log_partition("Fe", 1, t), rtol=1e-12)
    assert np.isnan(atomic.log_partition(t)[:, atomic.index("H"), 2]).all()
    # a species without coefficients falls back to the two-point table
    coef = atomic.irwin.copy()
    coef[fe, 0] = np.nan
    partial = dataclasses.replace(atomic, irwin=coef)
    np.testing.assert_allclose(partial.log_partition(t)[:, fe, 0],
                               load_atomic_data("two-point").log_partition(t)[:, fe, 0])
    np.testing.assert_allclose(partial.log_partition(t)[:, fe, 1],
                               atomic.log_partition(t)[:, fe, 1])
    assert ("Fe", 0) not in partial.irwin_species


def test_missing_species_and_bad_options_raise():
    with pytest.raises(KeyError, match="no Irwin partition-function coefficients for Fe stage 3"):
        irwin_log_partition("Fe", 3, 5000.0)
    with pytest.raises(KeyError, match="Xx"):
        irwin_log_partition("Xx", 0, 5000.0)
    with pytest.raises(ValueError, match="partition must be one of"):
        load_atomic_data("allen")


def test_ges_loggf_only_for_single_component_lines():
    ges = _atomic.load_ges_data()
    lines = load_atomic_data().lines
    loggf = _atomic.ges_loggf()
    single = (ges["n_ges"] == 1) & np.isfinite(ges["ges_loggf"]) & (lines["element"] != "H")
    np.testing.assert_array_equal(loggf[single], ges["ges_loggf"][single])
    assert np.isnan(loggf[~single]).all()
    assert 4000 < single.sum() < lines.size
    # the match is tight: the GES and linemake values agree for most lines in common
    assert np.median(np.abs(loggf[single] - lines["loggf"][single])) < 0.2
    assert not lines.flags.writeable
