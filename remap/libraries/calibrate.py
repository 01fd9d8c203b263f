"""Astrophysical calibration of the ``linelist`` library's line data on a reference spectrum.

Laboratory log gf values and Unsöld's van der Waals damping, put through the
library's simplified line formation, do not reproduce real stars (the
uncalibrated library is ~3 % rms from the Sun at R 11,000 and its lines carry
too little absorption).  Spectroscopic surveys close that gap by fitting the
line data to benchmark spectra ("astrophysical log gf").  This module does
that for the library at the labels of a reference star (by default the Sun:
T_eff 5772 K, log g 4.44, [Fe/H] 0.00, Prša et al. 2016).

Method
------
At fixed labels the line-to-continuum opacity of the library is linear in the
line strengths: ``eta(lambda) = sum_i 10^x_i A_i(lambda; E_i)``, where ``A_i``
is line i's laboratory-strength Voigt profile (the library's own depth-averaged
strength, Doppler and damping widths), ``x_i`` its log gf correction and
``E_i`` the factor on its Unsöld gamma_6.  The model of the reference is
``c(lambda) G[1 - d_lin eta / (1 + eta d_lin / d_sat)]`` with G a Gaussian
broadening to an effective resolving power (instrument, macroturbulence and
rotation together; fitted) and c a smooth continuum correction
(piecewise-linear, nodes every ``continuum_step`` Å).  All parameters are
fitted together by damped Gauss-Newton (Levenberg-Marquardt) with the exact
sparse Jacobian (each line's response is local), minimizing::

    sum_pixels w (model - f)^2 / sigma_f^2 + sum_i (x_i - m_s(i))^2 / sigma_gf^2
      + sum_strong (log E_i - log E)^2 / sigma_E^2 + sum_nodes (c_k - 1)^2 / sigma_c^2

i.e. a Gaussian prior centred on the laboratory log gf plus a per-species
offset ``m_s`` (the robust mean correction of the well-constrained lines of
that species, re-estimated during the fit), of width ``prior_sigma``
(default 0.3 dex, a typical spread between laboratory and astrophysical log gf
for the less accurate lines of compilations like linemake).  The damping of
saturated lines (peak line-to-continuum opacity > 30 at the reference labels,
whose wings constrain it) is fitted per line, the others share a global
enhancement E.  Pixel weights are Cauchy-robust (a missing line does not drag
its neighbours far).  Lines whose calibrated strength collapses (log gf
correction <= -1 dex for a line predicted deeper than 1 %) are flagged
``removed``: they are absent from the reference (spurious identifications).
Lines that cannot be constrained (too weak, outside the fitted range or held
out) keep the laboratory value plus their species offset (``global``).

Hold-out
--------
With ``holdout=k`` the fitted range is cut into ``window`` Å windows and every
k-th is held out: its pixels are not fitted and the lines centred in it get
only the global corrections (species offsets, global damping, resolution,
continuum interpolated).  The rms over the held-out windows measures how well
the calibration generalizes to lines it has not seen.  The shipped calibration
is a fit with ``holdout=0`` (all windows); the held-out figures quoted in the
docs come from the ``holdout=4`` run.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import numbers
import time

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from astropy import units as u
from astropy.table import Table
from scipy.special import voigt_profile

from .._util.fs import atomic_write_text
from ._atomic import CALIBRATION_COLUMNS, ges_loggf, load_ges_data
from .linelist import _ME_HBETA, LINELIST_RANGE, PHYSICS, LineListLibrary

__all__ = ["calibrate_linelist", "CalibrationResult", "write_calibration", "read_reference",
           "SOLAR_LABELS", "LOGGF_PRIORS"]

#: Labels of the Sun (Prša et al. 2016 nominal T_eff; log g; [Fe/H]; [alpha/Fe]).
SOLAR_LABELS = (5772.0, 4.44, 0.0, 0.0)

_ETA_WINDOW = 1e-4          # profile windows reach where 10 x (lab strength) falls to this
_STRONG_ETA = 30.0          # lines with a peak eta above this get their own damping factor
_MAX_WING_AA = 50.0
_X_BOUNDS = (-3.0, 1.5)     # dex, bounds of the log gf corrections
_LOG_E_BOUNDS = (0.0, 0.8)  # log10 of the damping factors (Unsöld underestimates gamma_6)
_LOG_E_BOUNDS_ABO = (-0.3, 0.8)   # physics v3: factors on ABO (or 1.3 x Unsöld) may be < 1
_REMOVE_BELOW = -1.0        # dex: a line whose correction falls to this is removed ...
_REMOVE_DEPTH = 0.01        # ... if the laboratory list predicts it deeper than this
_MIN_SPECIES_LINES = 10    # a species offset needs this many well-constrained lines
_MAX_SPECIES_OFFSET = 0.5  # dex, species offsets are clipped to +-this
_HBETA_MASK_AA = 1.5        # the NLTE/chromospheric H beta core is not fitted
_HB_STEP = 0.01             # finite step (dex) of the formal-solution H beta's derivative


@dataclasses.dataclass
class CalibrationResult:
    """Result of :func:`calibrate_linelist`.

    Attributes
    ----------
    table : `~astropy.table.Table`
        One row per line of the shipped line list, columns
        ``wavelength_air_AA, species, loggf_lab, loggf, vdw_enhancement, status``
        (the calibration file format, see :func:`write_calibration`).
    resolution : float
        Fitted effective resolving power of the reference.
    velocity : float
        Fitted velocity shift of the reference (km/s, reference = rest * (1 + v/c)).
    vdw_enhancement : float
        Global factor on Unsöld's gamma_6.
    species_offsets : dict
        Species name (e.g. ``"Fe I"``) -> global log gf correction (dex).
    rms_fit, rms_holdout : float
        rms of (model - reference) over the fitted and the held-out pixels at
        the reference's resolution (``nan`` without hold-out).
    absorption_ratio_holdout : float
        Summed absorption of the model over that of the reference in the held-out windows.
    n_fit, n_global, n_removed : int
        Lines per status.
    holdout_windows : list of (float, float)
        The held-out wavelength windows (Å).
    seconds : float
        Wall time of the calibration.
    """

    table: Table
    resolution: float
    velocity: float
    vdw_enhancement: float
    species_offsets: dict
    rms_fit: float
    rms_holdout: float
    absorption_ratio_holdout: float
    n_fit: int
    n_global: int
    n_removed: int
    holdout_windows: list
    seconds: float

    def write(self, path):
        """Write the calibration CSV (atomically); see :func:`write_calibration`."""
        write_calibration(self.table, path)

    def summary(self):
        """A few lines of text describing the fit."""
        lines = [f"lines: {self.n_fit} fitted, {self.n_global} global, "
                 f"{self.n_removed} removed",
                 f"effective resolving power {self.resolution:,.0f}, velocity "
                 f"{self.velocity:+.3f} km/s, global vdW enhancement "
                 f"{self.vdw_enhancement:.2f}",
                 f"rms fitted {100 * self.rms_fit:.2f} %"]
        if self.holdout_windows:
            lines.append(f"rms held-out {100 * self.rms_holdout:.2f} % over "
                         f"{len(self.holdout_windows)} windows, absorption ratio "
                         f"{self.absorption_ratio_holdout:.3f}")
        lines.append(f"{self.seconds:.0f} s")
        return "\n".join(lines)


def write_calibration(table, path):
    """Write a calibration table as CSV (atomic replace).

    Parameters
    ----------
    table : `~astropy.table.Table`
        With the columns of `remap.libraries._atomic.CALIBRATION_COLUMNS`.
    path : str or os.PathLike
        Destination.
    """
    missing = [c for c in CALIBRATION_COLUMNS if c not in table.colnames]
    if missing:
        raise ValueError(f"calibration table lacks column(s) {missing}")
    buf = io.StringIO()
    buf.write(",".join(CALIBRATION_COLUMNS) + "\n")
    for row in table:
        buf.write(f"{row['wavelength_air_AA']:.3f},{row['species']:.1f},"
                  f"{row['loggf_lab']:.3f},{row['loggf']:.3f},"
                  f"{row['vdw_enhancement']:.3f},{row['status']}\n")
    atomic_write_text(path, buf.getvalue())


def read_reference(path):
    """Read a reference spectrum: two columns, air wavelength (Å) and normalized flux.

    Parameters
    ----------
    path : str or os.PathLike
        Whitespace- or comma-separated text file.

    Returns
    -------
    wave, flux : `numpy.ndarray`
        Strictly increasing wavelengths; fluxes of repeated wavelengths
        (overlapping orders spliced together) are averaged.

    Raises
    ------
    ValueError
        The file does not hold two numeric columns with non-decreasing wavelengths.
    """
    with open(path, "r", encoding="utf-8") as handle:
        text = handle.read().replace(",", " ")
    try:
        data = np.loadtxt(io.StringIO(text), ndmin=2)
    except ValueError as exc:
        raise ValueError(f"reference {path}: cannot read two numeric columns ({exc})") from None
    if data.shape[1] < 2 or len(data) < 10:
        raise ValueError(f"reference {path}: need >= 10 rows of (wavelength Å, normalized flux)")
    try:
        return _merge_duplicates(data[:, 0], data[:, 1])
    except ValueError as exc:
        raise ValueError(f"reference {path}: {exc}") from None


def _merge_duplicates(wave, flux):
    """Average the fluxes of repeated wavelengths (spliced orders); they must not decrease."""
    if np.any(np.diff(wave) < 0):
        raise ValueError("wavelengths must increase (repeated values are averaged)")
    uniq, inverse, counts = np.unique(wave, return_inverse=True, return_counts=True)
    if uniq.size == wave.size:
        return wave, flux
    return uniq, np.bincount(inverse, weights=flux) / counts


def _species_name(el_symbol, ion):
    return f"{el_symbol} {'I' * (int(ion) + 1)}"


class _Model:
    """The linearized library at fixed labels (see the module docstring)."""

    def __init__(self, lib, labels, ref_wave):
        self.lib = lib
        st = lib._line_state(*labels)
        self.d_lin, self.d_sat, self.cog = st["d_lin"], st["d_sat"], st["cog"]
        n = st["lam"].size
        self.lam, self.sigma, self.strength = st["lam"], st["sigma"], st["strength"]
        grad = lib._l_hwhm_per_gamma[:n] * lib._l_grad[:n]
        self.gamma_rad = grad
        self.gamma6 = st["gamma"] - grad
        wave = lib._wave
        self.wave = wave
        # H beta: the library's Stark profile at the laboratory strength (scaled in the fit)
        self.eta_fixed = np.zeros(wave.size)
        # physics v4: H beta by its own formal solution, a factor on the metal-line flux
        self.formal_hbeta = st["hbeta"] is not None and lib.physics not in _ME_HBETA
        self._hbeta = (st["hbeta"], st["vmicro"])
        # the fit asks for the same offsets again (forward, Jacobian, line search)
        self.hbeta = functools.lru_cache(maxsize=8)(self._hbeta_flux)
        if st["hbeta"] is not None and not self.formal_hbeta:
            lib._add_hbeta(self.eta_fixed, *st["hbeta"], vmicro=st["vmicro"])
        dl = np.interp(wave, lib._nodes, self.d_lin)
        ds = np.interp(wave, lib._nodes, self.d_sat)
        self.dl, self.ds = dl, ds
        # windows: wide enough for 10x the laboratory strength and 6x gamma_6
        gam_max = grad + 6.0 * self.gamma6
        s10 = 10.0 * self.strength
        eta0 = s10 * voigt_profile(0.0, self.sigma, gam_max)
        self.active = eta0 > _ETA_WINDOW
        core = self.sigma * np.clip(np.sqrt(2.0 * np.log(np.maximum(eta0, 1.0) / _ETA_WINDOW)),
                                    3.0, 8.0)
        wing = np.minimum(np.sqrt(s10 * gam_max / (np.pi * _ETA_WINDOW)), _MAX_WING_AA)
        half = np.maximum(core, wing)
        idx = np.flatnonzero(self.active)
        lo = np.searchsorted(wave, self.lam[idx] - half[idx])
        hi = np.searchsorted(wave, self.lam[idx] + half[idx])
        counts = hi - lo
        self.cols = np.repeat(np.arange(idx.size), counts)
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        self.rows = np.arange(counts.sum()) + starts
        self.idx = idx                                   # active line -> line index
        self.dx = wave[self.rows] - self.lam[idx][self.cols]
        self.ref_wave = ref_wave

    def _hbeta_flux(self, offset):
        """Residual flux of the formal-solution H beta at log gf ``offset`` on all pixels
        (``self.hbeta``, cached)."""
        r = np.ones(self.wave.size)
        lo, hi, r_hb = self.lib._hbeta_residual(*self._hbeta, loggf_offset=float(offset))
        r[lo:hi] = r_hb
        return r

    def profiles(self, log_e):
        """Sparse (pixels x active lines) laboratory-strength profiles with damping 10^log_e."""
        j = self.idx[self.cols]
        gamma = self.gamma_rad[j] + 10.0 ** log_e[self.cols] * self.gamma6[j]
        vals = self.strength[j] * voigt_profile(self.dx, self.sigma[j], gamma)
        return sp.csc_matrix((vals, (self.rows, self.cols)),
                             shape=(self.wave.size, self.idx.size))

    def broadening(self, resolution, velocity):
        """Sparse operator: Gaussian of FWHM lambda/R on the pixels, then to the reference grid."""
        step = np.log(self.wave[1] / self.wave[0])
        sig = 1.0 / (resolution * step * 2.0 * np.sqrt(2.0 * np.log(2.0)))
        half = int(np.ceil(4.0 * sig))
        offs = np.arange(-half, half + 1)
        kern = np.exp(-0.5 * (offs / sig) ** 2)
        kern /= kern.sum()
        npix = self.wave.size
        # reference pixel -> fractional library pixel (rest frame)
        rest = self.ref_wave / (1.0 + velocity / 299792.458)
        pos = np.log(rest / self.wave[0]) / step
        i0 = np.clip(np.floor(pos).astype(int), 0, npix - 2)
        f = np.clip(pos - i0, 0.0, 1.0)
        nref = rest.size
        rows = np.repeat(np.arange(nref), 2 * offs.size)
        base = np.stack([i0, i0 + 1], axis=1)                        # (nref, 2)
        wts = np.stack([1.0 - f, f], axis=1)
        cols = (base[:, :, None] + offs[None, None, :]).reshape(nref, -1)
        vals = (wts[:, :, None] * kern[None, None, :]).reshape(nref, -1)
        cols = np.clip(cols, 0, npix - 1)
        return sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=(nref, npix))


def _hat_basis(x, nodes):
    """Piecewise-linear (hat-function) basis on ``nodes`` evaluated at ``x``, sparse."""
    pos = np.interp(x, nodes, np.arange(nodes.size))
    i0 = np.minimum(np.floor(pos).astype(int), nodes.size - 2)
    f = pos - i0
    rows = np.concatenate([np.arange(x.size)] * 2)
    cols = np.concatenate([i0, i0 + 1])
    return sp.csr_matrix((np.concatenate([1.0 - f, f]), (rows, cols)),
                         shape=(x.size, nodes.size))


def _check_positive(value, name, integer=False, allow_zero=False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be a{'n integer' if integer else ' real number'}, "
                        f"got {value!r}")
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def calibrate_linelist(reference_wave, reference_flux, *, labels=SOLAR_LABELS, vmicro=None,
                       wave_range=None, holdout=4, window=10.0, prior_sigma=0.3,
                       flux_sigma=0.005, damping_sigma=0.3, continuum_step=50.0,
                       continuum_sigma=0.003, resolution=None, iterations=12,
                       reference_step=0.02, physics=PHYSICS[0], loggf_prior=None,
                       verbose=False):
    """Fit per-line log gf and damping of the ``linelist`` library to a reference spectrum.

    Parameters
    ----------
    reference_wave, reference_flux : array_like or `~astropy.units.Quantity`
        Air wavelengths (Å) and continuum-normalized flux of the reference
        star (e.g. the Sun), non-decreasing wavelengths (repeats are averaged).
    labels : tuple of float
        (T_eff, log g, [Fe/H], [alpha/Fe]) of the reference (default the Sun).
    vmicro : float, optional
        Microturbulence of the reference (km/s); default the library's relation.
    wave_range : `~astropy.units.Quantity`, optional
        (min, max) range fitted; default the overlap of the reference with the line list.
    holdout : int
        Hold out every ``holdout``-th window of ``window`` Å (0: fit everything).
    window : float
        Width of the hold-out windows, Å.
    prior_sigma : float
        Width (dex) of the Gaussian prior of each line's log gf around its
        laboratory value plus its species offset.
    flux_sigma : float
        Flux error per reference pixel assumed in the fit (the model error
        dominates real reference noise; it sets the balance with the priors).
    damping_sigma : float
        Prior width of the per-line log10 damping factors around the global one.
    continuum_step, continuum_sigma : float
        Node spacing (Å) of the continuum correction and its prior width.
    resolution : float, optional
        Effective resolving power of the reference; default: fitted (grid search).
    iterations : int
        Gauss-Newton iterations.
    reference_step : float
        The reference is resampled to this step (Å) before fitting.
    physics : {"v4", "v3", "v2"}
        Physics version of the library whose line data are fitted (see
        `remap.libraries.linelist.PHYSICS`); the calibration belongs to it.
        In v4 H beta is its own formal solution (a factor on the metal-line
        flux; its log gf fitted through finite differences), in v3 and v2 it
        shares the metal lines' depth formula.
    loggf_prior : {"laboratory", "ges"}, optional
        Centre of the log gf prior (and the ``loggf_lab`` column):
        linemake's laboratory values, or the Gaia-ESO log gf (Heiter et al.
        2021; `remap.libraries._atomic.ges_loggf`) where the GES list has the
        line as a single component (linemake's elsewhere).  Default: what the
        shipped calibration of ``physics`` used, ``"ges"`` for v4 and v3
        (v3: held-out rms 2.20 % against 2.53 % with the laboratory prior) and
        ``"laboratory"`` for v2.
    verbose : bool
        Print progress.

    Returns
    -------
    result : `CalibrationResult`

    Raises
    ------
    ValueError, TypeError
        Bad reference arrays or options (the message names them).
    """
    t_start = time.perf_counter()
    wave = np.asarray(u.Quantity(reference_wave, u.AA).value if isinstance(
        reference_wave, u.Quantity) else reference_wave, dtype=float)
    flux = np.asarray(u.Quantity(reference_flux).value if isinstance(
        reference_flux, u.Quantity) else reference_flux, dtype=float)
    if wave.ndim != 1 or wave.shape != flux.shape or wave.size < 10:
        raise ValueError(f"reference_wave and reference_flux must be 1-D arrays of the same "
                         f"length >= 10; got shapes {wave.shape} and {flux.shape}")
    wave, flux = _merge_duplicates(wave, flux)
    holdout = _check_positive(holdout, "holdout", integer=True, allow_zero=True)
    if holdout == 1:
        raise ValueError("holdout must be 0 (none) or >= 2 (hold out every k-th window)")
    for name, value in (("window", window), ("prior_sigma", prior_sigma),
                        ("flux_sigma", flux_sigma), ("damping_sigma", damping_sigma),
                        ("continuum_step", continuum_step), ("continuum_sigma", continuum_sigma),
                        ("reference_step", reference_step)):
        _check_positive(value, name)
    _check_positive(iterations, "iterations", integer=True)
    if loggf_prior is None:
        loggf_prior = "laboratory" if physics == "v2" else "ges"
    if loggf_prior not in LOGGF_PRIORS:
        raise ValueError(f"loggf_prior must be one of {LOGGF_PRIORS}, got {loggf_prior!r}")
    labels = tuple(float(v) for v in labels) + (0.0,) * (4 - len(labels))
    lo_list, hi_list = LINELIST_RANGE.to_value(u.AA)
    if wave_range is None:
        lo, hi = max(wave[0], lo_list) + 1.0, min(wave[-1], hi_list) - 1.0
    else:
        lo, hi = (float(v) for v in u.Quantity(wave_range, u.AA).value)
    if not lo_list <= lo < hi <= hi_list or lo < wave[0] or hi > wave[-1]:
        raise ValueError(f"wave_range {lo:g}-{hi:g} Å must lie inside both the reference "
                         f"({wave[0]:g}-{wave[-1]:g} Å) and the line list ({lo_list:g}-"
                         f"{hi_list:g} Å)")
    # reference on a uniform grid (0.02 Å: > 5 pixels per resolution element at R 47,000)
    ref_wave = np.arange(lo, hi, reference_step)
    good = np.isfinite(flux)
    ref_flux = np.interp(ref_wave, wave[good], flux[good])
    n_ref = ref_wave.size

    wr = (max(lo - 3.0, lo_list), min(hi + 3.0, hi_list)) * u.AA
    lib = LineListLibrary(wave_range=wr, vmicro=vmicro, linelist="laboratory", accuracy="high",
                          physics=physics)
    prior_loggf = lib._atomic.lines["loggf"].astype(float)
    if loggf_prior == "ges":
        ges = ges_loggf()
        prior_loggf = np.where(np.isfinite(ges), ges, prior_loggf)
        shift = prior_loggf[lib._l_index] - lib._atomic.lines["loggf"][lib._l_index]
        lib = LineListLibrary(wave_range=wr, vmicro=vmicro, linelist="laboratory",
                              accuracy="high", physics=physics, loggf_offsets=shift)
    model = _Model(lib, labels, ref_wave)
    n_act = model.idx.size
    atomic = lib._atomic
    line_index = lib._l_index[:model.lam.size]           # metal lines -> shipped list rows
    species = np.array([_species_name(atomic.symbols[e], i)
                        for e, i in zip(lib._l_el[:model.lam.size], lib._l_ion[:model.lam.size])])
    sp_act = species[model.idx]
    lam_act = model.lam[model.idx]

    # windows and weights
    win = np.floor((ref_wave - lo) / window).astype(int)
    held = (win % holdout == holdout - 1) if holdout else np.zeros(n_ref, bool)
    weight = np.where(held, 0.0, 1.0)
    if lib._has_hbeta:
        weight[np.abs(ref_wave - lib._l_lam[-1]) < _HBETA_MASK_AA] = 0.0
    line_win = np.floor((lam_act - lo) / window).astype(int)
    inside = (lam_act >= lo) & (lam_act <= hi)
    line_held = (line_win % holdout == holdout - 1) if holdout else np.zeros(n_act, bool)
    free = inside & ~line_held                            # lines whose log gf is fitted

    nodes = np.linspace(lo, hi, max(int(round((hi - lo) / continuum_step)), 1) + 1)
    basis = _hat_basis(ref_wave, nodes)
    n_c = nodes.size

    # parameters: x (n_act), log E per strong line, global log E, continuum (n_c)
    x = np.zeros(n_act)
    x_hb = np.zeros(1)              # log gf correction of H beta (its wings; core masked)
    log_e_glob = np.log10(1.5)     # a typical enhancement of Unsöld's gamma_6 to start from
    prior_mean = np.zeros(n_act)
    cont = np.ones(n_c)
    velocity = 0.0
    res = 45_000.0 if resolution is None else float(resolution)

    def forward(x, log_e_vec, cont, res, velocity, jac=False):
        a = model.profiles(log_e_vec)
        q = 10.0 ** x
        if model.formal_hbeta:
            eta = a @ q
            r_hb = model.hbeta(x_hb[0])
        else:
            eta = a @ q + 10.0 ** x_hb[0] * model.eta_fixed
            r_hb = 1.0
        f_met, dfde = model.lib._flux_from_eta(eta, model.d_lin, model.d_sat, model.cog,
                                               derivative=True)
        f0 = f_met * r_hb
        g = model.broadening(res, velocity)
        smooth = g @ f0
        c = basis @ cont
        out = c * smooth
        if not jac:
            return out, None
        dfde = dfde * r_hb                                # d f0 / d eta
        jx = sp.diags(dfde) @ a @ sp.diags(_LN10 * q)
        if model.formal_hbeta:                            # d f0 / d x_hb
            hb_pix = f_met * (model.hbeta(x_hb[0] + _HB_STEP) - r_hb) / _HB_STEP
        else:
            hb_pix = dfde * _LN10 * 10.0 ** x_hb[0] * model.eta_fixed
        return out, (a, q, dfde, g, c, smooth, jx, hb_pix)

    def chi_resid(out, w):
        return (out - ref_flux) * np.sqrt(w) / flux_sigma

    # initial velocity and resolution from the laboratory model (x = 0 except a mean offset)
    log_e_vec = np.full(n_act, log_e_glob)
    best = None
    for v in np.arange(-1.0, 1.01, 0.1):
        out, _ = forward(x, log_e_vec, cont, res, v)
        r = np.sum(weight * (out - ref_flux) ** 2)
        if best is None or r < best[0]:
            best = (r, v)
    velocity = best[1]
    strong = np.zeros(n_act, bool)
    out0, _ = forward(x, log_e_vec, cont, res, velocity)
    # laboratory depth of each line (peak of its own broadened profile, approx.)
    a0 = model.profiles(log_e_vec)
    peak_eta = np.asarray(a0.max(axis=0).todense()).ravel()
    strong = free & (peak_eta > _STRONG_ETA)
    # laboratory central depth of each line alone (before broadening), for the removal rule
    dl_m, ds_m = float(model.dl.mean()), float(model.ds.mean())
    lab_depth = dl_m * peak_eta / (1.0 + peak_eta * dl_m / ds_m)
    n_strong = int(strong.sum())
    s_idx = np.flatnonzero(strong)
    # physics v3: lines with ABO damping keep their own scale (factor 1, the prior centre of
    # the strong ones); the global factor applies to the Unsöld lines only
    abo_act = lib._l_has_abo[model.idx]
    e_bounds = _LOG_E_BOUNDS if physics == "v2" else _LOG_E_BOUNDS_ABO
    tied = ~abo_act[s_idx]                        # strong lines whose prior centre is global
    n_tied = int(tied.sum())
    glob_cols = np.flatnonzero(~strong & ~abo_act)
    log_e_line = np.where(tied, log_e_glob, 0.0)
    if verbose:
        print(f"{n_act} active lines ({int(free.sum())} free, {n_strong} strong), "
              f"{n_ref} reference pixels, velocity {velocity:+.2f} km/s")

    lam_lm = 1e-3
    robust = np.ones(n_ref)
    h = 0.02                                                # finite step in log E

    def pack_e(log_e_glob, log_e_line):
        v = np.where(abo_act, 0.0, log_e_glob)
        v[s_idx] = log_e_line
        return v

    def objective(out, x, log_e_glob, log_e_line, cont):
        r = chi_resid(out, weight * robust)
        prior = np.sum(((x - prior_mean) / prior_sigma)[free] ** 2)
        prior += np.sum(((log_e_line - np.where(tied, log_e_glob, 0.0)) / damping_sigma) ** 2)
        prior += np.sum(((cont - 1.0) / continuum_sigma) ** 2) + x_hb[0] ** 2
        return float(r @ r + prior)

    for it in range(iterations):
        log_e_vec = pack_e(log_e_glob, log_e_line)
        out, (a, q, dfde, g, c, smooth, jx, hb_pix) = forward(x, log_e_vec, cont, res,
                                                              velocity, True)
        if it in (2, 5) and resolution is None:
            # effective resolution: grid search at the current line data
            trial = []
            for r_try in (35e3, 40e3, 45e3, 50e3, 55e3, 60e3, 70e3, 80e3, 90e3, 100e3):
                o, _ = forward(x, log_e_vec, cont, r_try, velocity)
                trial.append((np.sum(weight * (o - ref_flux) ** 2), r_try))
            res = min(trial)[1]
            out, (a, q, dfde, g, c, smooth, jx, hb_pix) = forward(x, log_e_vec, cont, res,
                                                                  velocity, True)
        if it >= 3:
            resid = (out - ref_flux)[weight > 0]
            scale = 1.4826 * np.median(np.abs(resid)) + 1e-6
            robust = 1.0 / (1.0 + ((out - ref_flux) / (4.0 * scale)) ** 2)
        if it == 4 or it == 8:
            prior_mean = _species_prior(x, free, sp_act, jx, g, c, weight, flux_sigma, n_act)
        # damping derivatives: columns of d a / d log E (finite differences)
        a_h = model.profiles(log_e_vec + h)
        da = (a_h - a) / h
        d_eta_glob = da[:, glob_cols] @ q[glob_cols]
        cols = [sp.diags(c) @ (g @ jx[:, free])]
        if n_strong:
            jd = sp.diags(dfde) @ da[:, s_idx] @ sp.diags(q[s_idx])
            cols.append(sp.diags(c) @ (g @ jd))
        cols.append(sp.csr_matrix((c * (g @ (dfde * d_eta_glob)))[:, None]))
        cols.append(sp.diags(smooth) @ basis)
        cols.append(sp.csr_matrix((c * (g @ hb_pix))[:, None]))
        jac = sp.hstack(cols).tocsr()
        wvec = weight * robust / flux_sigma ** 2
        jtw = jac.T @ sp.diags(wvec)
        normal = (jtw @ jac).toarray()
        grad = jtw @ (out - ref_flux)
        n_free = int(free.sum())
        # priors
        pdiag = np.zeros(normal.shape[0])
        pgrad = np.zeros(normal.shape[0])
        pdiag[:n_free] = 1.0 / prior_sigma ** 2
        pgrad[:n_free] = (x[free] - prior_mean[free]) / prior_sigma ** 2
        k = n_free
        if n_strong:
            pdiag[k:k + n_strong] = 1.0 / damping_sigma ** 2
            centre = np.where(tied, log_e_glob, 0.0)
            pgrad[k:k + n_strong] = (log_e_line - centre) / damping_sigma ** 2
            # the prior couples each (Unsöld) line's log E with the global one
            t_idx = k + np.flatnonzero(tied)
            normal[t_idx, k + n_strong] -= 1.0 / damping_sigma ** 2
            normal[k + n_strong, t_idx] -= 1.0 / damping_sigma ** 2
            normal[k + n_strong, k + n_strong] += n_tied / damping_sigma ** 2
            pgrad[k + n_strong] = -np.sum((log_e_line - log_e_glob)[tied]) / damping_sigma ** 2
        k2 = k + n_strong + 1
        pdiag[k2:k2 + n_c] = 1.0 / continuum_sigma ** 2
        pgrad[k2:k2 + n_c] = (cont - 1.0) / continuum_sigma ** 2
        pdiag[-1] = 1.0                                     # H beta: 1 dex prior
        pgrad[-1] = x_hb[0]
        normal[np.diag_indices_from(normal)] += pdiag
        grad = grad + pgrad
        f_old = objective(out, x, log_e_glob, log_e_line, cont)
        for _ in range(6):
            lhs = normal + lam_lm * np.diag(np.diag(normal))
            try:
                step = -scipy.linalg.solve(lhs, grad, assume_a="pos")
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
                step = -np.linalg.lstsq(lhs, grad, rcond=None)[0]
            step = np.clip(step, -0.5, 0.5)
            x_new = x.copy()
            x_new[free] = np.clip(x[free] + step[:n_free], *_X_BOUNDS)
            le_new = np.clip(log_e_line + step[k:k + n_strong], *e_bounds)
            leg_new = float(np.clip(log_e_glob + step[k + n_strong], *e_bounds))
            c_new = cont + step[k2:k2 + n_c]
            hb_old = x_hb.copy()
            x_hb[0] = np.clip(x_hb[0] + step[-1], *_X_BOUNDS)
            out_new, _ = forward(x_new, pack_e(leg_new, le_new), c_new, res, velocity)
            f_new = objective(out_new, x_new, leg_new, le_new, c_new)
            if f_new < f_old:
                x, log_e_line, log_e_glob, cont = x_new, le_new, leg_new, c_new
                lam_lm = max(lam_lm / 3.0, 1e-6)
                break
            x_hb[:] = hb_old
            lam_lm *= 4.0
        if verbose:
            fit_rms = np.sqrt(np.sum(weight * (out_new - ref_flux) ** 2) / weight.sum())
            print(f"iteration {it}: objective {f_old:.4g} -> {f_new:.4g}, rms fitted "
                  f"{100 * fit_rms:.3f} %, R {res:,.0f}, E {10 ** log_e_glob:.2f}, "
                  f"H beta {x_hb[0]:+.2f} dex, continuum {cont.min():.3f}-{cont.max():.3f}, "
                  f"lambda {lam_lm:.1e}", flush=True)

    # unconstrained lines get their species offset (the prior mean); held-out too
    x_final = np.where(free, x, prior_mean)
    log_e_vec = pack_e(log_e_glob, log_e_line)
    out, _ = forward(x_final, log_e_vec, cont, res, velocity)
    fit_px = weight > 0
    rms_fit = float(np.sqrt(np.mean((out - ref_flux)[fit_px] ** 2)))
    if holdout:
        # the held-out continuum is interpolated from the fitted nodes (it is a fit parameter
        # constrained by the neighbouring windows)
        rms_hold = float(np.sqrt(np.mean((out - ref_flux)[held] ** 2)))
        absorb = float(np.sum(1.0 - out[held]) / np.sum(1.0 - ref_flux[held]))
        hw = sorted({(lo + k * window, lo + (k + 1) * window) for k in np.unique(win[held])})
    else:
        rms_hold, absorb, hw = float("nan"), float("nan"), []

    # assemble the table over the whole shipped list
    lines = atomic.lines
    n_all = lines.size
    loggf = prior_loggf.copy()
    vdw = np.where(_abo_lines(lines, lib.physics), 1.0, 10.0 ** log_e_glob)
    status = np.full(n_all, "global", dtype="U8")
    offsets = _species_table(prior_mean, sp_act)
    all_species = np.array([_species_name(s, i) for s, i in zip(lines["element"], lines["ion"])])
    for name, off in offsets.items():
        loggf[all_species == name] += off
    rows = line_index[model.idx]
    loggf[rows] = prior_loggf[rows] + x_final
    vdw[rows[s_idx]] = 10.0 ** log_e_line
    status[rows[free]] = "fit"
    removed = free & (x <= _REMOVE_BELOW) & (lab_depth >= _REMOVE_DEPTH)
    status[rows[removed]] = "removed"
    is_h = lines["element"] == "H"
    vdw[is_h] = 1.0
    loggf[is_h] = prior_loggf[is_h] + (x_hb[0] if lib._has_hbeta else 0.0)
    status[is_h] = "fit" if lib._has_hbeta else "global"
    table = Table({"wavelength_air_AA": lines["wavelength_air_AA"].astype(float),
                   "species": lines["species"].astype(float),
                   "loggf_lab": prior_loggf, "loggf": loggf,
                   "vdw_enhancement": vdw, "status": status})
    return CalibrationResult(
        table=table, resolution=float(res), velocity=float(velocity),
        vdw_enhancement=float(10.0 ** log_e_glob), species_offsets=offsets,
        rms_fit=rms_fit, rms_holdout=rms_hold, absorption_ratio_holdout=absorb,
        n_fit=int(np.sum(status == "fit")), n_global=int(np.sum(status == "global")),
        n_removed=int(np.sum(status == "removed")), holdout_windows=hw,
        seconds=time.perf_counter() - t_start)


_LN10 = np.log(10.0)

#: Values of ``calibrate_linelist(loggf_prior=...)``.
LOGGF_PRIORS = ("laboratory", "ges")


def _abo_lines(lines, physics):
    """Which lines of the shipped list get ABO damping under ``physics`` (see linelist)."""
    if physics == "v2":
        return np.zeros(lines.size, bool)
    return np.isfinite(load_ges_data()["abo_sigma"]) & (lines["element"] != "H")


def _species_prior(x, free, sp_act, jx, g, c, weight, flux_sigma, n_act):
    """Per-line prior means: each species' robust mean correction of its well-constrained lines.

    A line is well constrained when the data alone fix its log gf to < 0.1 dex
    (Fisher information of its column).  Species with fewer than 10 such lines
    fall back to the neutral / ionized mean; offsets are clipped to +-0.5 dex.
    """
    col = sp.diags(c) @ (g @ jx)
    info = np.asarray((col.multiply(col)).T @ (weight / flux_sigma ** 2)).ravel()
    good = free & (info > 100.0) & (x > _REMOVE_BELOW)
    mean = np.zeros(n_act)
    ion = np.array([s.endswith("II") for s in sp_act])
    fallback = {}
    for flag in (False, True):
        sel = good & (ion == flag)
        fallback[flag] = float(np.median(x[sel])) if sel.sum() >= _MIN_SPECIES_LINES else 0.0
    for name in np.unique(sp_act):
        members = sp_act == name
        sel = good & members
        value = (float(np.median(x[sel])) if sel.sum() >= _MIN_SPECIES_LINES
                 else fallback[name.endswith("II")])
        mean[members] = np.clip(value, -_MAX_SPECIES_OFFSET, _MAX_SPECIES_OFFSET)
    return mean


def _species_table(prior_mean, sp_act):
    return {str(name): round(float(prior_mean[sp_act == name][0]), 3)
            for name in np.unique(sp_act)}
