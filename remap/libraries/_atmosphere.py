"""Grey LTE model atmosphere and continuous opacity for the ``linelist`` library.

Physics (all cgs; references are to Gray 2005, *The Observation and Analysis
of Stellar Photospheres*, 3rd ed., chapters 8-9):

* Temperature (:func:`temperature_structure`): the non-grey relation
  T(tau)^4 = 3/4 Teff^4 [tau + q(tau)] with the Hopf-like function of
  Krishna Swamy (1966, ApJ 145, 174), ``q = 1.39 - 0.815 e^(-2.54 tau)
  - 0.025 e^(-30 tau)`` (an empirical fit to the solar limb darkening, the
  ``Krishna_Swamy`` T-tau relation of MESA), minus a surface line-blanketing
  term ``beta e^(-tau / 0.1)`` (the cooling of the upper photosphere by line
  opacity that grey and continuum-only relations lack; ``beta =``
  :data:`SURFACE_COOLING`, in units of T_eff, applied to every star).  It is
  0: with the physics-v4 library recalibrated at beta = 0.1 and 0.2 the
  Mg b 5183.6 core deepens (0.17 and 0.12 against 0.23 at R 47,000; the Sun 0.08)
  but the whole spectrum moves away from the real Sun (1.28 % and 2.92 % rms
  against 1.23 %; ``python -m benchmarks realism`` conditions).  The grey Eddington relation
  (``grey_temperature``) is kept for reference.  tau is the continuum
  optical depth at 5000 Å, on 31 layers log tau = -5 ... +1 (step 0.2).
* Continuous opacity per hydrogen nucleus: H- bound-free (polynomial fit to
  Wishart 1979, Gray eq. 8.11-8.12), H- free-free (Bell & Berrington 1987 fit,
  Gray eq. 8.13), H I bound-free and free-free (Kramers cross-sections with
  Gaunt factors set to 1, Gray eq. 8.8-8.10), Rayleigh scattering by H I
  (Dalgarno 1962 fit as used by Kurucz 1970) and Thomson scattering by free
  electrons.  Molecules (H2, TiO, ...) and metal bound-free edges are ignored.
* Ionization: Saha over stages 0-2 for the 26 elements with partition
  functions (:mod:`remap.libraries._atomic`); the electron pressure solves
  charge conservation at each (T, P_g).
* Hydrostatic equilibrium dP_g/dtau = g / kappa_5000(T, P_g) (no turbulent or
  radiation pressure), integrated in ln tau with Heun's method on a table of
  kappa_5000(T(tau), P_g) over log P_g = -6 ... 9.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from astropy import constants as const
from scipy.special import expn

from ._atomic import electron_pressure, ionization_fractions

__all__ = ["LOG_TAU", "Atmosphere", "grey_temperature", "temperature_structure",
           "SURFACE_COOLING", "continuous_opacity",
           "planck_lambda", "build_atmosphere"]

#: log10 of the continuum optical depth at 5000 Å of the atmosphere's layers.
LOG_TAU = np.round(np.linspace(-5.0, 1.0, 31), 10)

_LOG_PG_NODES = np.linspace(-6.0, 9.0, 16)          # log10 P_g table for hydrostatics
# Newton steps in ln P_e stop below this: the iteration converges quadratically, so
# the next step would be ~1e-20, and the solution is exact to rounding (~2e-15)
_NEWTON_RTOL = 1e-10
_LN10 = np.log(10.0)
_K_B = const.k_B.cgs.value
_M_U = const.u.cgs.value
_SIGMA_T = const.sigma_T.cgs.value
_HC_OVER_K_AA = (const.h * const.c / const.k_B).cgs.value * 1e8   # K Å
_CHI_LAMBDA_EV_AA = (const.h * const.c).to_value("eV AA")         # 12398.4 eV Å
_H_ION_EV = 13.598434                                             # NIST ASD
_RYDBERG_LIMIT_AA = 911.267                                       # H Lyman limit (vacuum), Å

# Gray (2005) eq. 8.11: H- bound-free cross-section, fit of Wishart (1979), 1e-18 cm^2, λ in Å
_HMINUS_BF = (1.99654, -1.18267e-5, 2.64243e-6, -4.40524e-10, 3.23992e-14,
              -1.39568e-18, 2.78701e-23)
# Gray (2005) eq. 8.13: H- free-free, fit of Bell & Berrington (1987); f_i(log10 λ[Å])
_HMINUS_FF_F0 = (-2.2763, -1.6850, 0.76661, -0.053346)
_HMINUS_FF_F1 = (15.2827, -9.2846, 1.99381, -0.142631)
_HMINUS_FF_F2 = (-197.789, 190.266, -67.9775, 10.6913, -0.625151)
# Gray (2005) eq. 8.8: hydrogenic bound-free constant alpha_0 (cm^2, λ in Å)
_ALPHA0 = 1.0449e-26
# Rayleigh scattering by H I (Dalgarno 1962, as used in Kurucz 1970): cm^2, λ in Å
_RAYLEIGH = (5.799e-13, 1.422e-6, 2.784)


def grey_temperature(teff, tau):
    """Eddington grey temperature T(tau) = Teff (3/4 (tau + 2/3))^(1/4).

    Parameters
    ----------
    teff : float
        Effective temperature in K.
    tau : array_like
        Optical depth.

    Returns
    -------
    temperature : `numpy.ndarray`
        In K, the shape of ``tau``.
    """
    return teff * (0.75 * (np.asarray(tau, dtype=float) + 2.0 / 3.0)) ** 0.25


#: beta of the surface line-blanketing term of :func:`temperature_structure`.
SURFACE_COOLING = 0.0
_COOLING_TAU = 0.1


def temperature_structure(teff, tau, surface_cooling=None):
    """Non-grey T(tau): Krishna Swamy (1966) with a surface line-blanketing term.

    ``T^4 = 3/4 Teff^4 [tau + 1.39 - 0.815 e^(-2.54 tau) - 0.025 e^(-30 tau)
    - beta e^(-tau / 0.1)]``.

    Parameters
    ----------
    teff : float
        Effective temperature in K.
    tau : array_like
        Optical depth at 5000 Å.
    surface_cooling : float, optional
        beta (default :data:`SURFACE_COOLING`; 0 gives Krishna Swamy's relation).

    Returns
    -------
    temperature : `numpy.ndarray`
        In K, the shape of ``tau``.
    """
    beta = SURFACE_COOLING if surface_cooling is None else float(surface_cooling)
    tau = np.asarray(tau, dtype=float)
    q = 1.39 - 0.815 * np.exp(-2.54 * tau) - 0.025 * np.exp(-30.0 * tau)
    q = q - beta * np.exp(-tau / _COOLING_TAU)
    return teff * (0.75 * (tau + q)) ** 0.25


def planck_lambda(wave_aa, temperature):
    """Planck function B_λ up to a constant factor, λ^-5 / (exp(hc/λkT) - 1).

    Used only for ratios (source-function gradients), never as a flux.

    Parameters
    ----------
    wave_aa : array_like
        Wavelengths in Å, shape ``(W,)``.
    temperature : array_like
        Temperatures in K, shape ``S``.

    Returns
    -------
    b : `numpy.ndarray`
        Shape ``S + (W,)``.
    """
    wave_aa = np.asarray(wave_aa, dtype=float)
    x = _HC_OVER_K_AA / (wave_aa * np.asarray(temperature, dtype=float)[..., None])
    return (wave_aa / 5000.0) ** -5 / np.expm1(x)


def continuous_opacity(wave_aa, temperature, pe, f_hi, ne_per_h):
    """Continuous opacity per hydrogen nucleus (cm^2).

    Parameters
    ----------
    wave_aa : array_like
        Wavelengths in Å (air or vacuum: the fits are far smoother than the
        difference), shape ``(W,)``.
    temperature, pe, f_hi, ne_per_h : array_like
        Temperature (K), electron pressure (dyn cm^-2), neutral fraction of
        hydrogen and free electrons per H nucleus, all of shape ``S``.

    Returns
    -------
    kappa : `numpy.ndarray`
        Shape ``S + (W,)``: absorption (with stimulated emission) plus
        scattering, per H nucleus.
    """
    lam = np.asarray(wave_aa, dtype=float)
    t = np.asarray(temperature, dtype=float)[..., None]
    pe = np.asarray(pe, dtype=float)[..., None]
    alpha_bf, f0, f1, f2, n0, lam3, rayleigh = _wavelength_terms(lam.tobytes())
    theta = 5040.0 / t
    stim = 1.0 - 10.0 ** (-theta * (_CHI_LAMBDA_EV_AA / lam))
    # H- bound-free and free-free, per neutral H atom
    hm_bf = 4.158e-10 * alpha_bf * pe * theta**2.5 * 10.0 ** (0.754 * theta) * stim
    logt = np.log10(theta)
    hm_ff = 1e-26 * pe * 10.0 ** (f0 + f1 * logt + f2 * logt**2)
    # H I bound-free (three levels above the edge + integral beyond) and free-free
    h_bf = np.zeros(np.broadcast_shapes(t.shape, lam.shape))
    for k in range(3):
        n = n0 + k
        h_bf = h_bf + 10.0 ** (-theta * _H_ION_EV * (1.0 - 1.0 / n**2)) / n**3
    chi3 = _H_ION_EV * (1.0 - 1.0 / (n0 + 3.0) ** 2)
    loge = np.log10(np.e)
    h_bf = h_bf + loge / (2.0 * theta * _H_ION_EV) * (10.0 ** (-theta * chi3)
                                                      - 10.0 ** (-theta * _H_ION_EV))
    h_bf = _ALPHA0 * lam3 * h_bf * stim
    h_ff = _ALPHA0 * lam3 * loge / (2.0 * theta * _H_ION_EV) * 10.0 ** (-theta * _H_ION_EV) * stim
    per_hi = hm_bf + hm_ff + h_bf + h_ff + rayleigh
    return np.asarray(f_hi)[..., None] * per_hi + _SIGMA_T * np.asarray(ne_per_h)[..., None]


@functools.lru_cache(maxsize=16)
def _wavelength_terms(wave_bytes):
    """The temperature-independent factors of `continuous_opacity` (cached per grid)."""
    lam = np.frombuffer(wave_bytes, dtype=float)
    alpha_bf = np.clip(np.polynomial.polynomial.polyval(lam, _HMINUS_BF), 0.0, None) * 1e-18
    alpha_bf = np.where(lam < 16_419.0, alpha_bf, 0.0)
    loglam = np.log10(lam)
    f0 = np.polynomial.polynomial.polyval(loglam, _HMINUS_FF_F0)
    f1 = np.polynomial.polynomial.polyval(loglam, _HMINUS_FF_F1)
    f2 = np.polynomial.polynomial.polyval(loglam, _HMINUS_FF_F2)
    n0 = np.ceil(np.sqrt(lam / _RYDBERG_LIMIT_AA))
    rayleigh = (_RAYLEIGH[0] + (_RAYLEIGH[1] + _RAYLEIGH[2] / lam**2) / lam**2) / lam**4
    terms = (alpha_bf, f0, f1, f2, n0, lam**3, rayleigh)
    for term in terms:
        term.setflags(write=False)
    return terms


@dataclasses.dataclass(frozen=True, eq=False)
class Atmosphere:
    """An LTE model atmosphere on the layers :data:`LOG_TAU`.

    Attributes
    ----------
    teff, logg : float
        Labels it was built for.
    tau, temperature, pg, pe : `numpy.ndarray`
        Optical depth at 5000 Å, temperature (K), gas and electron pressure
        (dyn cm^-2), shape ``(L,)``.
    log_u : `numpy.ndarray`
        log10 partition functions, shape ``(L, n_el, 3)``.
    fractions : `numpy.ndarray`
        Ionization fractions, shape ``(L, n_el, 3)``.
    ne_per_h : `numpy.ndarray`
        Free electrons per H nucleus, shape ``(L,)``.
    abundance_sum : float
        Sum of the number abundances relative to H (N_nuclei / N_H).
    """

    teff: float
    logg: float
    tau: np.ndarray
    temperature: np.ndarray
    pg: np.ndarray
    pe: np.ndarray
    log_u: np.ndarray
    fractions: np.ndarray
    ne_per_h: np.ndarray
    abundance_sum: float

    @property
    def f_hi(self):
        """Neutral fraction of hydrogen, shape ``(L,)``."""
        return self.fractions[:, 0, 0]

    def kappa(self, wave_aa, layers=slice(None)):
        """Continuous opacity per H nucleus (cm^2) at some layers, shape ``(L', W)``."""
        return continuous_opacity(wave_aa, self.temperature[layers], self.pe[layers],
                                  self.f_hi[layers], self.ne_per_h[layers])

    def source_weights(self, wave_aa):
        """Weak-line weighting function and the weak/saturated line-depth limits.

        For a source function S(tau) = B_λ(T(tau)) the flux depression of a
        weak line with line-to-continuum opacity ratio eta(tau) is
        ``∫ eta(t) K(t) dt / ∫ S E2 dtau`` with ``K(t) = ∫_t^∞ S'(tau) E2(tau) dtau``
        (perturb the formal solution for the flux and integrate by parts).  For
        constant eta that is ``d_lin * eta`` with
        ``d_lin = ∫ tau S' E2 dtau / ∫ S E2 dtau``; for eta -> infinity the
        emergent flux tends to pi S(0), a depth ``d_sat = 1 - S(0) / (2 ∫ S E2 dtau)``.
        For a source function linear in tau both are the Milne-Eddington
        ``beta / (1 + beta)``.

        Parameters
        ----------
        wave_aa : array_like
            Wavelengths in Å, shape ``(W,)``.

        Returns
        -------
        kernel : `numpy.ndarray`
            K(tau) on the layers, shape ``(L, W)``.
        d_lin, d_sat : `numpy.ndarray`
            Weak-line depth per unit eta and saturated depth, shape ``(W,)``.
        """
        s = planck_lambda(wave_aa, self.temperature)                   # (L, W)
        tau = self.tau
        mid = np.sqrt(tau[1:] * tau[:-1])
        ds = np.diff(s, axis=0) * expn(2, mid)[:, None]                # (L-1, W)
        kernel = np.zeros_like(s)
        kernel[:-1] = np.cumsum(ds[::-1], axis=0)[::-1]
        dtau = np.diff(tau)[:, None]
        int_k = np.sum(0.5 * (kernel[1:] + kernel[:-1]) * dtau, axis=0) + kernel[0] * tau[0]
        se2 = s * expn(2, tau)[:, None]
        # S(0) by linear extrapolation from the two top layers (tau ~ 1e-5)
        s0 = s[0] - (s[1] - s[0]) * tau[0] / (tau[1] - tau[0])
        int_s = np.sum(0.5 * (se2[1:] + se2[:-1]) * dtau, axis=0) + s0 * tau[0]
        return kernel, int_k / int_s, 1.0 - s0 / (2.0 * int_s)


def _kappa_mass(atomic, log_phi, pg, weights, mu, temperature, phi=None):
    """κ_5000 per gram and P_e at (T, P_g) points; shapes of ``pg``.

    ``phi`` is ``10 ** log_phi`` if already computed (it may be a broadcast
    view).  Only hydrogen's neutral fraction is needed (element 0, stages 0-1).
    """
    if phi is None:
        phi = 10.0 ** log_phi
    pe = electron_pressure(log_phi, pg, weights, rtol=_NEWTON_RTOL, phi=phi)
    f_hi = ionization_fractions(log_phi[..., :1, :], pe, phi=phi[..., :1, :])[..., 0, 0]
    ne_per_h = pe / (pg - pe) / weights[0]
    kap = continuous_opacity(np.array([5000.0]), temperature, pe, f_hi, ne_per_h)[..., 0]
    return kap / (mu * _M_U), pe


def build_atmosphere(atomic, teff, logg, log_abundance, surface_cooling=None):
    """Build the hydrostatic LTE atmosphere of one star (:func:`temperature_structure`).

    Parameters
    ----------
    atomic : `~remap.libraries._atomic.AtomicData`
        Element data.
    teff : float
        Effective temperature, K.
    logg : float
        log10 surface gravity, cgs.
    log_abundance : `numpy.ndarray`
        log10 (N_X / N_H) + 12 of every element of ``atomic``, shape ``(n_el,)``.
    surface_cooling : float, optional
        beta of :func:`temperature_structure` (default :data:`SURFACE_COOLING`).

    Returns
    -------
    atmosphere : `Atmosphere`

    Raises
    ------
    RuntimeError
        The gas pressure left the tabulated range (labels far outside the
        library's domain).
    """
    tau = 10.0 ** LOG_TAU
    temperature = temperature_structure(teff, tau, surface_cooling)
    log_u = atomic.log_partition(temperature)
    log_phi = atomic.log_saha(temperature, log_u)
    abund = 10.0 ** (np.asarray(log_abundance, dtype=float) - 12.0)
    weights = abund / abund.sum()
    mu = float(abund @ atomic.mass_amu)          # mass per H nucleus, amu
    g = 10.0 ** logg

    pg_nodes = 10.0 ** _LOG_PG_NODES
    shape = (len(tau), len(pg_nodes))
    phi = 10.0 ** log_phi                         # (L, n_el, 2), shared by every P_g node
    kap, _ = _kappa_mass(atomic, np.broadcast_to(log_phi[:, None], shape + log_phi.shape[1:]),
                         np.broadcast_to(pg_nodes, shape), weights, mu,
                         np.broadcast_to(temperature[:, None], shape),
                         phi=np.broadcast_to(phi[:, None], shape + phi.shape[1:]))
    ln_kap = np.log(kap)                          # (L, M)
    ln_nodes = _LOG_PG_NODES * _LN10
    ln_g = np.log(g)
    x = LOG_TAU * _LN10

    # top boundary: P = g tau / kappa(P), monotonic in ln P
    ln_p = float(np.interp(ln_g + x[0], ln_nodes + ln_kap[0], ln_nodes))
    ln_pg = np.empty(len(tau))
    ln_pg[0] = ln_p
    # the integration is sequential: plain Python floats (np.interp and np.exp on
    # scalars cost microseconds each); linear interpolation on the uniform ln P_g
    # nodes, clamped at the ends like np.interp
    table = ln_kap.tolist()
    node0, dnode, last = float(ln_nodes[0]), float(ln_nodes[1] - ln_nodes[0]), len(ln_nodes) - 1
    offset = [ln_g + float(v) for v in x]

    def slope(k, y):
        pos = (y - node0) / dnode
        row = table[k]
        if pos <= 0.0:
            ln_k = row[0]
        elif pos >= last:
            ln_k = row[last]
        else:
            i = int(pos)
            ln_k = row[i] + (pos - i) * (row[i + 1] - row[i])
        return math.exp(offset[k] - y - ln_k)

    for k in range(len(tau) - 1):
        h = float(x[k + 1] - x[k])
        f0 = slope(k, ln_p)
        f1 = slope(k + 1, ln_p + h * f0)
        ln_p = ln_p + 0.5 * h * (f0 + f1)
        ln_pg[k + 1] = ln_p
    if ln_pg.min() < ln_nodes[0] or ln_pg.max() > ln_nodes[-1]:
        raise RuntimeError(f"gas pressure of the (teff={teff}, logg={logg}) atmosphere left the "
                           f"tabulated range 1e{_LOG_PG_NODES[0]:.0f}-1e{_LOG_PG_NODES[-1]:.0f} "
                           f"dyn/cm^2")
    pg = np.exp(ln_pg)
    pe = electron_pressure(log_phi, pg, weights, rtol=_NEWTON_RTOL, phi=phi)
    fractions = ionization_fractions(log_phi, pe, phi=phi)
    ne_per_h = pe / (pg - pe) / weights[0]
    return Atmosphere(teff=float(teff), logg=float(logg), tau=tau, temperature=temperature,
                      pg=pg, pe=pe, log_u=log_u, fractions=fractions, ne_per_h=ne_per_h,
                      abundance_sum=float(abund.sum()))
