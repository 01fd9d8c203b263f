"""Van der Waals damping of the ``linelist`` library: ABO theory, Unsöld, physics versions."""

import numpy as np
import pytest
from astropy import constants as const
from astropy import units as u

from remap.libraries._atomic import load_ges_data
from remap.libraries._atmosphere import build_atmosphere
from remap.libraries.linelist import (PHYSICS, UNSOLD_ENHANCEMENT, LineListLibrary, abo_gamma6)

SUN = (5772.0, 4.44, 0.0)
MG_B = (5160.0, 5190.0)


def _mean_speed(temperature, mass_amu):
    mu = mass_amu * 1.008 / (mass_amu + 1.008) * const.u
    return np.sqrt(8 * const.k_B * temperature * u.K / (np.pi * mu)).cgs.value


def test_abo_formula_limits_and_scalings():
    a0_2 = const.a0.cgs.value ** 2
    # alpha = 0: a velocity-independent cross-section, FWHM = 2 N vbar sigma
    g = abo_gamma6(300.0, 0.0, 56.0, 6000.0, 1e16)
    assert g == pytest.approx(2.0 * 1e16 * _mean_speed(6000.0, 56.0) * 300.0 * a0_2, rel=1e-10)
    # at vbar = v0 = 10^4 m/s the width does not depend on alpha beyond the Gamma-function factor
    t0 = 1e12 * np.pi * (56.0 * 1.008 / 57.008 * const.u.cgs.value) / (8 * const.k_B.cgs.value)
    from scipy.special import gamma
    for alpha in (0.2, 0.3):
        expected = 2.0 * (4 / np.pi) ** (alpha / 2) * gamma(2 - alpha / 2) * 1e6 * 300.0 * a0_2
        assert abo_gamma6(300.0, alpha, 56.0, t0, 1.0) == pytest.approx(expected, rel=1e-10)
    # Gamma_6 ~ N_H T^((1 - alpha)/2)
    assert abo_gamma6(300.0, 0.25, 56.0, 5000.0, 2e16) == pytest.approx(
        2.0 * abo_gamma6(300.0, 0.25, 56.0, 5000.0, 1e16))
    ratio = abo_gamma6(300.0, 0.25, 56.0, 8000.0, 1.0) / abo_gamma6(300.0, 0.25, 56.0, 4000.0, 1.0)
    assert ratio == pytest.approx(2.0 ** 0.375, rel=1e-12)
    # Mg b 5183 (sigma 729, alpha 0.238): log10 Gamma_6 / N_H at 10^4 K = -7.27
    assert np.log10(abo_gamma6(729.0, 0.238, 24.305, 1e4, 1.0)) == pytest.approx(-7.27, abs=0.01)
    out = abo_gamma6([300.0, 729.0], [0.25, 0.238], [56.0, 24.3], 5000.0, 1e16)
    assert out.shape == (2,)


@pytest.fixture(scope="module")
def mgb_pair():
    return {p: LineListLibrary(wave_range=MG_B * u.AA, linelist="laboratory", physics=p,
                               accuracy="high") for p in PHYSICS}


def _gamma6(lib):
    st = lib._line_state(*SUN, 0.0)
    n = st["lam"].size
    return st["lam"], st["gamma"] - lib._l_hwhm_per_gamma[:n] * lib._l_grad[:n]


def test_v3_uses_abo_where_the_ges_list_has_it(mgb_pair):
    v3, v2 = mgb_pair["v3"], mgb_pair["v2"]
    lam, g3 = _gamma6(v3)
    _, g2 = _gamma6(v2)
    ges = load_ges_data()
    has = np.isfinite(ges["abo_sigma"][v3._l_index[:lam.size]])
    np.testing.assert_array_equal(has, v3._l_has_abo[:lam.size])
    assert has.sum() > 20 and (~has).sum() > 20
    # Mg b has ABO data; ABO broadens it ~2.1x more than Unsöld (Anstee & O'Mara 1995)
    for center in (5167.32, 5172.68, 5183.60):
        i = int(np.argmin(np.abs(lam - center)))
        assert has[i]
        assert 1.8 < g3[i] / g2[i] < 2.5
    # the other lines: Unsöld x UNSOLD_ENHANCEMENT (the depth averages differ slightly, as
    # the partition functions changed the line weights)
    ratio = g3[~has] / g2[~has]
    assert np.median(ratio) == pytest.approx(UNSOLD_ENHANCEMENT, rel=0.02)
    # v2 has no ABO lines
    assert not mgb_pair["v2"]._l_has_abo.any()


def test_unsold_enhancement_is_the_median_abo_ratio():
    lib = LineListLibrary(linelist="laboratory", physics="v3", accuracy="high")
    atomic = lib._atomic
    atm = build_atmosphere(atomic, *SUN[:2], atomic.log_eps_sun)
    s, t, press, ne, abo, d_lin, d_sat, hb = lib._line_strengths(atm, 0.0, 0.0, False)
    has = lib._l_has_abo
    # Unsöld's gamma_6 of the ABO lines, as the v2 physics would compute it
    v2 = LineListLibrary(linelist="laboratory", physics="v2")
    assert np.array_equal(v2._l_index, lib._l_index)
    ratio = (lib._l_abo_coef * abo)[has] / (v2._l_g6 * press)[has]
    assert has.sum() == 989
    assert np.median(ratio) == pytest.approx(UNSOLD_ENHANCEMENT, abs=0.05)


def test_physics_option_is_recorded_and_validated():
    wr = (5180.0, 5186.0) * u.AA
    v3 = LineListLibrary(wave_range=wr, physics="v3")
    v2 = LineListLibrary(wave_range=wr, physics="v2")
    assert LineListLibrary(wave_range=wr).physics == PHYSICS[0] == "v4"
    assert v3.physics == "v3" and v2.physics == "v2"
    s3, s2 = v3.spectrum(*SUN), v2.spectrum(*SUN)
    assert s3.meta["physics"] == "v3" and s2.meta["physics"] == "v2"
    assert np.max(np.abs(s3.flux.value - s2.flux.value) / s3.meta["continuum"].value) > 1e-3
    with pytest.raises(ValueError, match="physics must be one of"):
        LineListLibrary(wave_range=wr, physics="v1")
    with pytest.raises(ValueError, match="physics must be one of"):
        LineListLibrary(wave_range=wr, physics=3)
