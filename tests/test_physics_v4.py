"""Physics v4 of the ``linelist`` library: H beta formal solution, exact metal-line depths."""

import numpy as np
import pytest
import astropy.units as u

from remap.libraries import linelist as ll
from remap.libraries._atmosphere import LOG_TAU
from remap.libraries.linelist import LineListLibrary

SUN = (5772.0, 4.44, 0.0)
HB = 4861.323


@pytest.fixture(scope="module")
def pair():
    wr = (4830, 4895) * u.AA
    return (LineListLibrary(wave_range=wr, physics="v4"),
            LineListLibrary(wave_range=wr, physics="v4", accuracy="high"))


def _hbeta(lib, labels, offset=0.0):
    st = lib._line_state(*labels, 0.0)
    lo, hi, r = lib._hbeta_residual(st["hbeta"], st["vmicro"], loggf_offset=offset)
    return lib._wave[lo:hi], r, st


@pytest.mark.parametrize("fast", [True, False])
def test_formal_flux_is_exact_for_a_linear_source_function(fast):
    # S = a + b tau with a depth-constant eta: F_line / F_cont = (a/2 + b / (3 (1 + eta)))
    # / (a/2 + b/3) (the Milne-Eddington result), whatever the layer spacing
    tau = 10.0 ** LOG_TAU
    a, b = 1.0, 2.5
    src = a + b * tau
    eta = np.array([0.0, 0.01, 0.3, 1.0, 10.0, 1e3])
    ttot = tau[:, None] * (1.0 + eta[None, :])
    got = ll._formal_flux(src, ttot, fast) / ll._formal_flux(src, tau[:, None], fast)[0]
    want = (a / 2 + b / (3 * (1 + eta))) / (a / 2 + b / 3)
    # the layers stop at tau = 10 (below: S constant), so the tail differs by < 1e-5
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def test_weak_limit_is_linear_and_strong_limit_is_the_surface(pair):
    fast, _ = pair
    wave, r_weak, st = _hbeta(fast, SUN, -5.0)
    _, r_weaker, _ = _hbeta(fast, SUN, -6.0)
    core = np.argmin(np.abs(wave - HB))
    depth = 1.0 - r_weak
    # linear in the line strength: 10x the strength, 10x the depth (to 1e-3 relative)
    np.testing.assert_allclose(depth[core], 10.0 * (1.0 - r_weaker[core]), rtol=1e-3)
    # saturated: the centre tends to the top layers' source function, never below it
    _, r_sat, _ = _hbeta(fast, SUN, 6.0)
    atm = st["hbeta"][2][3]
    b = ll.planck_lambda(np.array([HB]), atm.temperature)[:, 0]
    top = b[LOG_TAU >= -4.0 - 1e-9][0] / (2.0 * ll._formal_flux(b, atm.tau[:, None], False)[0])
    assert r_sat.min() == pytest.approx(top, rel=0.1)
    assert np.all(np.diff(r_sat[core:core + 200]) >= -1e-9)      # deepest at the centre


@pytest.mark.parametrize("labels", [SUN, (4500.0, 4.6, -1.0), (6800.0, 4.0, 0.5),
                                    (4200.0, 1.5, -1.5)])
def test_fast_matches_high_accuracy(pair, labels):
    fast, high = pair
    w1, r1, _ = _hbeta(fast, labels)
    w2, r2, _ = _hbeta(high, labels)
    np.testing.assert_array_equal(w1, w2)
    assert np.max(np.abs(r1 - r2)) < 2e-4


def test_hbeta_wings_deepen_with_temperature_and_core_is_not_one_floor(pair):
    fast, _ = pair
    wing = {}
    for teff in (5000.0, 5800.0, 6500.0):
        wave, r, _ = _hbeta(fast, (teff, 4.4, 0.0))
        sel = (np.abs(wave - HB) > 2.0) & (np.abs(wave - HB) < 8.0)
        wing[teff] = 1.0 - r[sel].mean()
    assert wing[5000.0] < wing[5800.0] < wing[6500.0]
    # unlike the Milne-Eddington floor of v3 the profile keeps deepening towards the centre
    wave, r, _ = _hbeta(fast, SUN)
    at = {d: np.interp(HB + d, wave, r) for d in (0.0, 0.3, 1.0)}
    assert at[0.0] < at[0.3] < at[1.0]


def test_v4_spectrum_combines_hbeta_with_the_metal_lines():
    wr = (4850, 4875) * u.AA
    v4 = LineListLibrary(wave_range=wr, physics="v4")
    spec = v4.spectrum(*SUN, normalized=True)
    assert spec.meta["physics"] == "v4"
    flux = spec.flux.value
    assert np.all(np.isfinite(flux)) and flux.min() > 0.0 and flux.max() <= 1.0 + 1e-9
    w = spec.spectral_axis.to_value(u.AA)
    # H beta shapes the whole window: 3 Å from the centre the flux is well below 1
    assert np.interp(HB + 3.0, w, flux) < 0.9
    np.testing.assert_array_equal(flux, v4.spectrum(*SUN, normalized=True).flux.value)


def test_metal_line_depth_is_the_exact_constant_eta_solution(pair):
    fast, _ = pair
    st = fast._line_state(*SUN, 0.0)
    atm = st["hbeta"][2][3]
    eta = np.geomspace(1e-3, 1e5, 57)
    for node in (0, fast._nodes.size // 2, fast._nodes.size - 1):
        src = ll.planck_lambda(fast._nodes[node:node + 1], atm.temperature)[:, 0]
        exact = (ll._formal_flux(src, atm.tau[:, None] * (1.0 + eta[None, :]), False)
                 / ll._formal_flux(src, atm.tau[:, None], False)[0])
        c, _ = ll._cog_factor(st["cog"], np.full(eta.size, float(node)), eta)
        dl, ds = st["d_lin"][node], st["d_sat"][node]
        np.testing.assert_allclose(1.0 - c * dl * eta / (1.0 + eta * dl / ds), exact,
                                   rtol=0, atol=1e-4)
    # v3 keeps the Milne-Eddington formula (no table)
    v3 = LineListLibrary(wave_range=(4850, 4860) * u.AA, physics="v3")
    assert v3._line_state(*SUN, 0.0)["cog"] is None


def test_flux_derivative_matches_finite_differences(pair):
    # calibrate_linelist's Gauss-Newton step uses it
    fast, _ = pair
    st = fast._line_state(*SUN, 0.0)
    rng = np.random.default_rng(1)
    eta = 10.0 ** rng.uniform(-3.0, 4.0, fast._wave.size)
    f, d = fast._flux_from_eta(eta, st["d_lin"], st["d_sat"], st["cog"], derivative=True)
    h = 1e-6 * eta
    f_up = fast._flux_from_eta(eta + h, st["d_lin"], st["d_sat"], st["cog"])
    np.testing.assert_allclose(f, fast._flux_from_eta(eta, st["d_lin"], st["d_sat"], st["cog"]))
    np.testing.assert_allclose(d, (f_up - f) / h, rtol=2e-3, atol=1e-9)
