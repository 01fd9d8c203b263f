"""``linelist``: remap's built-in, offline LTE line-list spectrum synthesizer.

It computes spectra over 4800-5800 Å (air wavelengths) at a resolving power
of ~100,000 from 3,405 atomic lines (linemake, Placco et al. 2021; see
``remap/data/linelist/ATTRIBUTION.rst``) for any continuous labels
3000 <= T_eff <= 7000 K, 1.0 <= log g <= 5.5, -2 <= [Fe/H] <= +1 and
-0.2 <= [alpha/Fe] <= +1.2.  It does not reproduce PHOENIX; it makes line
strengths respond to the labels the way stellar lines do, so that learning
labels from its spectra is a problem with the real degeneracies.

Physics and simplifications
---------------------------
Atmosphere (:mod:`remap.libraries._atmosphere`)
    Grey Eddington T(tau); hydrostatic gas pressure with H-, H I, Rayleigh and
    Thomson continuous opacity (Gray 2005, ch. 8); electron pressure from a
    Saha balance (stages 0-2) of 26 elements.  Metals (Z > 2) scale with
    [Fe/H]; O, Ne, Mg, Si, S, Ar, Ca and Ti additionally with [alpha/Fe].
    No molecules: cool M-star spectra lack their TiO bands.
Line opacity
    For each line and layer the integrated line-to-continuum opacity ratio
    ``S = pi r_e lambda^2 gf (n_lower / N_H) (1 - e^{-hc/lambda kT}) / kappa_c``,
    with n_lower from Boltzmann (excitation potential) and Saha (ionization
    stage) using partition functions U(T) (:mod:`remap.libraries._atomic`):
    T_eff acts through excitation and ionization, log g through the electron
    pressure (Fe II/Fe I) and the continuum (H-, proportional to P_e), [Fe/H]
    through the abundances.
Line formation
    eta(lambda) = S_eff * V(lambda), where S_eff averages S over depth with
    the weak-line weighting function of the atmosphere's source function
    (``Atmosphere.source_weights``) and V is a Voigt profile
    (:func:`scipy.special.voigt_profile`) with thermal + microturbulent
    Doppler width and a Lorentz width from classical radiation damping and
    Unsöld's van der Waals approximation
    ``log gamma_6 = 19.6 + 0.4 log C6 + log P_g - 0.7 log T`` (Gray 2005,
    eq. 11.29-11.30), P_g and T averaged with the line's own depth weights.
    Beyond 8 Gaussian widths the Voigt profile is replaced by its asymptotic
    expansion ``L(x) [1 + sigma^2 (3x^2 - gamma^2)/(x^2 + gamma^2)^2]``, which
    is accurate to < 0.5 % there and far cheaper.  The residual flux is
    ``1 - d_lin eta / (1 + eta d_lin / d_sat)``: exact in the weak-line limit
    and in saturation, and the Milne-Eddington result for a linear source
    function.  Strong lines (Mg b) thus grow pressure-broadened wings with
    log g.  Metal-line Stark broadening is neglected.
H beta
    Same level populations (n = 2, 10.2 eV), but a quasi-static linear Stark
    profile: ``phi(x) ~ 1 / (1 + |x|^(5/2))`` (Holtsmark's asymptotic
    ``|x|^(-5/2)`` wings), ``x = delta lambda / (C F0)`` with the Holtsmark
    normal field ``F0 = 2.603 e N_e^(2/3)``, ``C = 3 a0 e lambda^2 / (2 h c) * k``
    and k = 10 (the displacement, in units of 3/2 e a0 F, of the strongest
    Hbeta Stark components), convolved with the thermal Doppler profile.  Its
    strength grows steeply from cool to A-type stars (n = 2 population
    against the H- continuum).
Continuum and instrument
    The un-normalized flux is the blackbody surface flux
    ``pi B_lambda(T_eff)`` (the Planck law of
    :class:`astropy.modeling.physical_models.BlackBody`, evaluated directly for
    speed) times the residual flux; ``meta["continuum"]`` holds that continuum.  The
    residual flux is convolved with a Gaussian of FWHM lambda/R.

Sampling
    Pixels are uniform in ln(lambda) with ``sampling`` pixels per resolution
    element (default 3: 0.016-0.019 Å at R = 100,000, 56,750 pixels),
    Nyquist-sampling the instrumental profile (remap degrades to R ~ 11,000
    and resamples to 0.1 Å afterwards, so PHOENIX's finer 0.01 Å would only
    cost time) and keeping ~2.5 pixels per FWHM of the narrowest (thermal Fe,
    3000 K) lines.  The instrumental kernel is then a fixed number of pixels.

Lines whose peak eta is below 1e-4 are skipped (a jump of < 1e-4 in
normalized flux when a line crosses that threshold); Lorentz wings are tapered
smoothly to zero where eta falls to 2e-3 (at most 50 Å from the line; H beta
is cut at eta = 1e-4, at most 200 Å).  All
computation is deterministic numpy; the same labels give identical bytes.
"""

from __future__ import annotations

import numbers

import numpy as np
from astropy import constants as const
from astropy import units as u
from astropy.table import Table
from scipy.ndimage import gaussian_filter1d
from scipy.special import voigt_profile

from ..hookspecs import hookimpl
from ._atmosphere import LOG_TAU, build_atmosphere
from ._atomic import THETA_EV, load_atomic_data
from .base import Domain, SyntheticLibrary

__all__ = ["LineListLibrary", "remap_synthetic_libraries", "ALPHA_ELEMENTS",
           "FLUX_UNIT", "LINELIST_RANGE"]

#: Elements scaled by [alpha/Fe] in addition to [Fe/H].
ALPHA_ELEMENTS = ("O", "Ne", "Mg", "Si", "S", "Ar", "Ca", "Ti")

#: Unit of the un-normalized flux (surface flux density per unit wavelength).
FLUX_UNIT = u.erg / (u.s * u.cm**2 * u.AA)

#: Wavelength range covered by the shipped line list (air, Å).
LINELIST_RANGE = (4800.0, 5800.0) * u.AA

_DOMAIN = Domain(teff=(3000.0, 7000.0), logg=(1.0, 5.5), feh=(-2.0, 1.0), alpha=(-0.2, 1.2))
_GRID_STEPS = {"teff": 100.0, "logg": 0.5, "feh": 0.5}

_ETA_EDGE = 1e-4            # lines with a peak eta below this are skipped
_ETA_WING = 2e-3            # Lorentz wings are tapered to zero where eta falls to this
_CORE_SIGMAS = 8.0          # exact Voigt within this many Gaussian sigmas
_MAX_WING_AA = 50.0
_MAX_HBETA_WING_AA = 200.0
_LINE_MARGIN_AA = 60.0      # lines this far outside the range still contribute wings
_STARK_K = 10.0
_HOLTSMARK_F0 = 2.603       # F0 = 2.603 e N_e^(2/3) (Holtsmark normal field strength)
_LINE_LAYERS = LOG_TAU >= -4.0 - 1e-9

_C_CGS = const.c.cgs.value
_K_B = const.k_B.cgs.value
_AMU = const.u.cgs.value
_E_ESU = const.e.esu.value
_M_E = const.m_e.cgs.value
_PI_RE = np.pi * _E_ESU**2 / (_M_E * _C_CGS**2)                     # cm
_GAMMA_RAD = 8.0 * np.pi**2 * _E_ESU**2 / (3.0 * _M_E * _C_CGS)      # s^-1 cm^2
_HC_EV_AA = (const.h * const.c).to_value(u.eV * u.AA)
_HC_K_AA = (const.h * const.c / const.k_B).to_value(u.K * u.AA)
_A0 = const.a0.cgs.value
_HC_CGS = (const.h * const.c).cgs.value
# pi * 2 h c^2 in erg/s/cm^2/Å with lambda in Å: pi B_lambda = that / lambda^5 / (e^x - 1)
_PLANCK_PREFACTOR = (np.pi * 2.0 * const.h * const.c**2 / u.AA**5).to_value(FLUX_UNIT)
_HOLTSMARK_NORM = 2.0 * (np.pi / 2.5) / np.sin(np.pi / 2.5)         # ∫ dx / (1 + |x|^2.5)


def _real(value, name, low=None, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return value


class LineListLibrary(SyntheticLibrary):
    """An LTE line-list spectrum synthesizer with continuous labels (offline).

    Parameters
    ----------
    resolution : float
        Resolving power R = lambda / FWHM of the Gaussian instrumental profile.
    wave_range : `~astropy.units.Quantity`
        (min, max) wavelength (air), inside 4800-5800 Å.
    vmicro : float or `~astropy.units.Quantity`
        Microturbulence in km/s (default 1).
    sampling : float
        Pixels per resolution element (default 3).  ``resolution * sampling``
        must lie between 150,000 and 2,000,000 so that the pixels resolve the
        intrinsic line profiles.
    normalized : bool
        Default for :meth:`spectrum` and :meth:`spectra`: return
        continuum-normalized flux instead of erg/s/cm²/Å.

    Raises
    ------
    TypeError, ValueError, `~astropy.units.UnitsError`
        An option has the wrong type, unit or value; the message names it.

    Examples
    --------
    >>> import astropy.units as u
    >>> from remap.libraries.linelist import LineListLibrary
    >>> lib = LineListLibrary(wave_range=(5160, 5190) * u.AA)
    >>> sun = lib.spectrum(teff=5777, logg=4.44, feh=0.0)
    >>> sun.meta["wavelength_medium"], sun.flux.unit
    ('air', Unit("erg / (Angstrom s cm2)"))
    """

    name = "linelist"
    wavelength_medium = "air"

    def __init__(self, resolution=100_000, wave_range=LINELIST_RANGE, vmicro=1.0,
                 sampling=3.0, normalized=False):
        self._resolution = _real(resolution, "resolution", 1.0)
        self._sampling = _real(sampling, "sampling", 2.0, 20.0)
        if not 150_000 <= self._resolution * self._sampling <= 2_000_000:
            raise ValueError(f"resolution * sampling must lie in [150000, 2000000] so that the "
                             f"pixels resolve the thermal line widths (~0.03 Å); got "
                             f"resolution={resolution}, sampling={sampling}")
        if isinstance(vmicro, u.Quantity):
            vmicro = vmicro.to_value(u.km / u.s)
        self._vmicro = _real(vmicro, "vmicro (km/s)", 0.0, 10.0)
        if not isinstance(normalized, (bool, np.bool_)):
            raise TypeError(f"normalized must be True or False, got {normalized!r}")
        self._normalized = bool(normalized)
        if not isinstance(wave_range, u.Quantity):
            raise TypeError(f"wave_range must be a Quantity with length units, e.g. "
                            f"(4800, 5800) * u.AA; got {wave_range!r}")
        wr = np.asarray(wave_range.to_value(u.AA), dtype=float)
        if wr.shape != (2,) or not np.all(np.isfinite(wr)) or not wr[0] < wr[1]:
            raise ValueError(f"wave_range must be (min, max) with min < max, got {wave_range}")
        lo, hi = LINELIST_RANGE.to_value(u.AA)
        if wr[0] < lo or wr[1] > hi:
            raise ValueError(f"wave_range {wr[0]:g}-{wr[1]:g} Å extends beyond the line list, "
                             f"which covers {lo:g}-{hi:g} Å (air)")
        step = 1.0 / (self._sampling * self._resolution)
        n = int(np.floor(np.log(wr[1] / wr[0]) / step)) + 1
        self._wave = wr[0] * np.exp(np.arange(n) * step)
        self._setup_lines()

    # -- public properties -------------------------------------------------
    @property
    def domain(self):
        """The label ranges (`~remap.libraries.base.Domain`)."""
        return _DOMAIN

    @property
    def resolution(self):
        """Resolving power R of the instrumental profile."""
        return self._resolution

    @property
    def vmicro(self):
        """Microturbulence, km/s."""
        return self._vmicro

    @property
    def wavelength(self):
        """The pixel wavelengths (air), a Quantity in Å."""
        return self._wave * u.AA

    @property
    def wavelength_range(self):
        """(min, max) pixel wavelength (air), a Quantity in Å."""
        return np.array([self._wave[0], self._wave[-1]]) * u.AA

    @property
    def grid(self):
        """A PHOENIX-like sampling of the domain as an `~astropy.table.Table`.

        T_eff 3000-7000 K in 100 K steps, log g 1.0-5.5 and [Fe/H] -2 ... +1 in
        0.5 dex steps, [alpha/Fe] = 0 (2,870 rows).  The library itself
        accepts any labels inside :attr:`domain`.
        """
        axes = []
        for name in ("teff", "logg", "feh"):
            lo, hi = getattr(_DOMAIN, name)
            step = _GRID_STEPS[name]
            axes.append(lo + step * np.arange(int(round((hi - lo) / step)) + 1))
        t, g, f = (a.ravel() for a in np.meshgrid(*axes, indexing="ij"))
        table = Table([t, g, f, np.zeros_like(t)], names=("teff", "logg", "feh", "alpha"))
        table["teff"].unit = u.K
        return table

    # -- spectra -------------------------------------------------------------
    def spectrum(self, teff, logg, feh, alpha=0.0, normalized=None):
        """Synthesize one spectrum.

        Parameters
        ----------
        teff, logg, feh : float
            Effective temperature (K), log10 surface gravity (cgs), [Fe/H] (dex).
        alpha : float
            [alpha/Fe] (dex), default 0.
        normalized : bool, optional
            Continuum-normalized flux; defaults to the library's setting.

        Returns
        -------
        spectrum : `specutils.Spectrum`
            Flux in erg/s/cm²/Å (or dimensionless if normalized) on
            :attr:`wavelength`.  ``meta`` holds ``teff, logg, feh, alpha,
            wavelength_medium ("air"), resolution, vmicro, normalized,
            library`` and ``continuum`` (the true continuum, erg/s/cm²/Å).

        Raises
        ------
        ValueError
            A label is not finite or lies outside :attr:`domain`.
        TypeError
            A label is not a real number.
        """
        labels = self._check_labels(teff, logg, feh, alpha)
        resid = self._residual(*labels)
        cont = self._continuum(labels[0])
        return self._make_spectrum(resid[None], cont[None], [labels], normalized, batch=False)

    def spectra(self, labels, normalized=None):
        """Synthesize a batch of spectra.

        Parameters
        ----------
        labels : `~astropy.table.Table` or array_like
            A table with columns ``teff, logg, feh`` and optionally ``alpha``,
            or an array of shape ``(n, 3)`` or ``(n, 4)`` in that column order.
        normalized : bool, optional
            Continuum-normalized flux; defaults to the library's setting.

        Returns
        -------
        spectra : `specutils.Spectrum`
            Flux of shape ``(n, n_pixels)``; ``meta`` holds label arrays and
            the continua (``(n, n_pixels)`` Quantity) under the keys of
            :meth:`spectrum`.

        Raises
        ------
        ValueError
            Bad shape, a missing column, or a label outside the domain (the
            message names the row).
        """
        rows = self._label_rows(labels)
        resid = np.empty((len(rows), self._wave.size))
        cont = np.empty_like(resid)
        for i, row in enumerate(rows):
            resid[i] = self._residual(*row)
            cont[i] = self._continuum(row[0])
        return self._make_spectrum(resid, cont, rows, normalized, batch=True)

    # -- internals -------------------------------------------------------------
    def _check_labels(self, teff, logg, feh, alpha, where=""):
        values = []
        for name, v in (("teff", teff), ("logg", logg), ("feh", feh), ("alpha", alpha)):
            if isinstance(v, u.Quantity):
                v = v.to_value(u.K) if name == "teff" else v.to_value(u.dimensionless_unscaled)
            if isinstance(v, np.ndarray) and v.ndim == 0:
                v = v.item()
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"linelist{where}: {name} must be a real number, got {v!r}")
            v = float(v)
            if not np.isfinite(v):
                raise ValueError(f"linelist{where}: {name} must be finite, got {v}")
            values.append(v)
        try:
            _DOMAIN.check(*values, name=f"linelist{where}")
        except ValueError as exc:
            raise ValueError(f"{exc}; the domain is teff {_DOMAIN.teff} K, logg "
                             f"{_DOMAIN.logg}, feh {_DOMAIN.feh}, alpha {_DOMAIN.alpha}") from None
        return tuple(values)

    def _label_rows(self, labels):
        if isinstance(labels, Table):
            missing = [c for c in ("teff", "logg", "feh") if c not in labels.colnames]
            if missing:
                raise ValueError(f"labels table lacks column(s) {missing}; expected teff, logg, "
                                 f"feh and optionally alpha")
            cols = [np.asarray(u.Quantity(labels[c]).value if getattr(labels[c], "unit", None)
                               else labels[c], dtype=float)
                    for c in ("teff", "logg", "feh")]
            cols.append(np.asarray(labels["alpha"], dtype=float) if "alpha" in labels.colnames
                        else np.zeros(len(labels)))
            arr = np.stack(cols, axis=1) if len(labels) else np.empty((0, 4))
        else:
            try:
                arr = np.asarray(labels, dtype=float)
            except (TypeError, ValueError):
                raise TypeError(f"labels must be an astropy Table or a numeric (n, 3|4) array, "
                                f"got {type(labels).__name__}") from None
            if arr.ndim != 2 or arr.shape[1] not in (3, 4):
                raise ValueError(f"labels array must have shape (n, 3) or (n, 4) "
                                 f"(teff, logg, feh[, alpha]); got shape {arr.shape}")
            if arr.shape[1] == 3:
                arr = np.column_stack([arr, np.zeros(len(arr))])
        if len(arr) == 0:
            raise ValueError("labels are empty: need at least one (teff, logg, feh) row")
        return [self._check_labels(*row, where=f" (labels row {i})") for i, row in enumerate(arr)]

    def _setup_lines(self):
        atomic = load_atomic_data()
        self._atomic = atomic
        lines = atomic.lines
        lam = lines["wavelength_air_AA"].astype(float)
        keep = ((lam >= self._wave[0] - _LINE_MARGIN_AA)
                & (lam <= self._wave[-1] + _LINE_MARGIN_AA))
        is_h = lines["element"] == "H"
        hb = keep & is_h
        metal = keep & ~is_h
        self._has_hbeta = bool(hb.any())
        # H beta goes last (when in range): it gets its own Stark profile
        sel = np.concatenate([np.flatnonzero(metal), np.flatnonzero(hb)])
        lam = lam[sel]
        el = lines["el"][sel]
        ion = lines["ion"][sel].astype(int)
        chi = lines["excitation_eV"][sel].astype(float)
        loggf = lines["loggf"][sel].astype(float)
        self._l_lam = lam
        self._l_el = el
        self._l_ion = ion
        self._l_chi = chi
        self._l_mass = atomic.mass_amu[el] * _AMU
        # log10 of pi r_e lambda^2 gf per Å of profile (S in Å)
        self._l_logc = np.log10(_PI_RE * (lam * 1e-8) ** 2 * 1e8) + loggf
        # Unsöld C6 with the ionization energy of the line's own stage
        ip = atomic.chi_ion[el, np.minimum(ion, 1)]
        d_low = ip - chi
        d_up = np.maximum(d_low - _HC_EV_AA / lam, 0.5)
        d_low = np.maximum(d_low, d_up + 1e-3)
        c6 = 0.3e-30 * (1.0 / d_up**2 - 1.0 / d_low**2)
        self._l_g6 = 10.0 ** 19.6 * c6 ** 0.4
        self._l_grad = _GAMMA_RAD / (lam * 1e-8) ** 2
        self._l_hwhm_per_gamma = lam**2 * 1e-8 / (4.0 * np.pi * _C_CGS)      # Å per s^-1
        # continuum-opacity nodes and each line's interpolation weights
        self._nodes = np.linspace(self._wave[0] - _LINE_MARGIN_AA,
                                  self._wave[-1] + _LINE_MARGIN_AA, 13)
        pos = np.interp(lam, self._nodes, np.arange(self._nodes.size))
        i0 = np.minimum(np.floor(pos).astype(int), self._nodes.size - 2)
        interp = np.zeros((self._nodes.size, lam.size))
        interp[i0, np.arange(lam.size)] = 1.0 - (pos - i0)
        interp[i0 + 1, np.arange(lam.size)] += pos - i0
        self._l_interp = interp
        species, self._l_sp = np.unique(np.stack([el, ion], axis=1), axis=0, return_inverse=True)
        self._l_sp = self._l_sp.ravel()
        self._sp_el, self._sp_ion = species[:, 0], species[:, 1]
        alpha_mask = np.isin(np.array(atomic.symbols), ALPHA_ELEMENTS)
        self._alpha_mask = alpha_mask
        self._metal_mask = atomic.atomic_number > 2

    def _line_strengths(self, atm, feh, alpha):
        """Depth-averaged S, T, P_g T^-0.7 and N_e of every line."""
        atomic = self._atomic
        layers = _LINE_LAYERS
        t = atm.temperature[layers]
        theta = THETA_EV / t                                         # (K,)
        log_abund = (atomic.log_eps_sun - 12.0 + feh * self._metal_mask
                     + alpha * self._alpha_mask)
        # log10 (N_stage / U / N_H) of each species, then gathered per line: (K, n_lines)
        sp_el, sp_ion = self._sp_el, self._sp_ion
        with np.errstate(divide="ignore"):
            log_pop = (np.log10(atm.fractions[layers][:, sp_el, sp_ion])
                       - atm.log_u[layers][:, sp_el, sp_ion] + log_abund[sp_el])
        # stimulated emission and continuous opacity vary slowly with wavelength:
        # evaluate at the nodes and interpolate linearly (a matrix product) to each line
        t_col = t[:, None]
        log_cont = (np.log10(-np.expm1(-_HC_K_AA / (self._nodes * t_col)))
                    - np.log10(atm.kappa(self._nodes, layers)))      # (K, W)
        log_s = (log_pop[:, self._l_sp] + log_cont @ self._l_interp
                 - theta[:, None] * self._l_chi + self._l_logc)
        s = 10.0 ** log_s                                            # (K, n_lines)
        kernel, d_lin, d_sat = atm.source_weights(self._nodes)
        mid = self._nodes.size // 2
        w = kernel[layers, mid] * atm.tau[layers]
        w = w / w.sum()
        ws = s * w[:, None]
        s_eff = ws.sum(axis=0)
        safe = np.where(s_eff > 0, s_eff, 1.0)
        t_eff = (t @ ws) / safe
        press = ((atm.pg[layers] * t ** -0.7) @ ws) / safe
        ne = ((atm.pe[layers] / (_K_B * t)) @ ws) / safe
        return s_eff, t_eff, press, ne, d_lin, d_sat

    def _residual(self, teff, logg, feh, alpha):
        atomic = self._atomic
        log_abund = atomic.log_eps_sun + feh * self._metal_mask + alpha * self._alpha_mask
        atm = build_atmosphere(atomic, teff, logg, log_abund)
        s, t_line, press, ne, d_lin, d_sat = self._line_strengths(atm, feh, alpha)
        wave = self._wave
        eta = np.zeros(wave.size)
        nmet = s.size - int(self._has_hbeta)
        lam = self._l_lam[:nmet]
        vel2 = 2.0 * _K_B * t_line[:nmet] / self._l_mass[:nmet] + (self._vmicro * 1e5) ** 2
        sigma = lam * np.sqrt(vel2) / _C_CGS / np.sqrt(2.0)         # Gaussian sigma, Å
        gamma = self._l_hwhm_per_gamma[:nmet] * (self._l_grad[:nmet]
                                                 + self._l_g6[:nmet] * press[:nmet])
        strength = s[:nmet]
        eta0 = strength * voigt_profile(0.0, sigma, gamma)
        use = eta0 > _ETA_EDGE
        lam, sigma, gamma, strength, eta0 = (a[use] for a in (lam, sigma, gamma, strength, eta0))
        core = sigma * np.clip(np.sqrt(2.0 * np.log(eta0 / _ETA_EDGE)), 1.0, _CORE_SIGMAS)
        wing = np.minimum(np.sqrt(strength * gamma / (np.pi * _ETA_WING)), _MAX_WING_AA)
        has_wing = wing > core
        core = np.where(has_wing, _CORE_SIGMAS * sigma, core)
        has_wing &= wing > core
        self._accumulate(eta, lam, core, lambda dx, j: strength[j] * voigt_profile(
            dx, sigma[j], gamma[j]))
        if has_wing.any():
            # asymptotic Voigt wing beyond the core, tapered smoothly to 0 at the window edge
            wl, wa, wg2, wc, ww, wsig2 = (a[has_wing] for a in (
                lam, strength * gamma / np.pi, gamma**2, core, wing, sigma**2))

            def wing_profile(dx, j):
                dx2 = dx * dx
                x2g2 = dx2 + wg2[j]
                taper = np.clip(1.0 - dx2 / ww[j] ** 2, 0.0, None) ** 2
                val = wa[j] / x2g2 * (1.0 + wsig2[j] * (3.0 * dx2 - wg2[j]) / (x2g2 * x2g2))
                return np.where(dx2 > wc[j] ** 2, val * taper, 0.0)
            self._accumulate(eta, wl, ww, wing_profile)
        if self._has_hbeta:
            self._add_hbeta(eta, s[-1], t_line[-1], ne[-1])
        dl = np.interp(wave, self._nodes, d_lin)
        ds = np.interp(wave, self._nodes, d_sat)
        resid = 1.0 - dl * eta / (1.0 + eta * dl / ds)
        sig_pix = self._sampling / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        return gaussian_filter1d(resid, sig_pix, mode="nearest", truncate=5.0)

    def _accumulate(self, eta, centers, half_widths, profile, chunk=1_000_000):
        """Add ``profile(dx, rep)`` of lines ``rep`` over |dx| <= half_width into eta.

        The (pixel, line) pairs of all windows are flattened into one array
        (in chunks of about ``chunk`` pairs) and summed with `numpy.bincount`.
        """
        wave = self._wave
        lo = np.searchsorted(wave, centers - half_widths, side="left")
        hi = np.searchsorted(wave, centers + half_widths, side="right")
        counts = hi - lo
        ends = np.cumsum(counts)
        start = 0
        while start < centers.size:
            base = int(ends[start - 1]) if start else 0
            stop = max(int(np.searchsorted(ends, base + chunk, side="right")), start + 1)
            c = counts[start:stop]
            total = int(c.sum())
            if total:
                rep = np.repeat(np.arange(start, stop), c)
                shift = lo[start:stop] - (ends[start:stop] - c - base)
                pix = np.arange(total) + shift[rep - start]
                vals = profile(wave[pix] - centers[rep], rep)
                eta += np.bincount(pix, weights=vals, minlength=wave.size)
            start = stop

    def _add_hbeta(self, eta, strength, temp, ne):
        lam0 = self._l_lam[-1]
        f0 = _HOLTSMARK_F0 * _E_ESU * ne ** (2.0 / 3.0)
        stark = 3.0 * _A0 * _E_ESU * (lam0 * 1e-8) ** 2 / (2.0 * _HC_CGS) * _STARK_K * f0 * 1e8
        half = stark * (strength / (_HOLTSMARK_NORM * stark * _ETA_EDGE)) ** 0.4
        half = min(max(half, 5.0 * stark), _MAX_HBETA_WING_AA)
        wave = self._wave
        lo, hi = np.searchsorted(wave, [lam0 - half, lam0 + half])
        if hi <= lo:
            return
        x = (wave[lo:hi] - lam0) / stark
        prof = strength / (_HOLTSMARK_NORM * stark) / (1.0 + np.abs(x) ** 2.5)
        vel2 = 2.0 * _K_B * temp / self._l_mass[-1] + (self._vmicro * 1e5) ** 2
        sigma = lam0 * np.sqrt(vel2 / 2.0) / _C_CGS
        dpix = lam0 / (self._sampling * self._resolution)
        prof = gaussian_filter1d(prof, sigma / dpix, mode="constant", truncate=5.0)
        eta[lo:hi] += prof

    def _continuum(self, teff):
        """Surface flux pi B_lambda(T_eff) in erg/s/cm^2/Å on the pixels.

        Evaluates the Planck law directly (astropy's ``BlackBody`` model
        computes the same formula but its unit handling costs ~30 ms per call
        on 57k pixels, more than the synthesis); the tests check the two agree.
        """
        x = _HC_K_AA / (self._wave * teff)
        return _PLANCK_PREFACTOR / self._wave**5 / np.expm1(x)

    def _make_spectrum(self, resid, cont, rows, normalized, batch):
        from specutils import Spectrum
        normalized = self._normalized if normalized is None else normalized
        if not isinstance(normalized, (bool, np.bool_)):
            raise TypeError(f"normalized must be True or False, got {normalized!r}")
        if normalized:
            flux = resid * u.dimensionless_unscaled
        else:
            flux = resid * cont * FLUX_UNIT
        labels = np.asarray(rows, dtype=float)
        meta = {"library": self.name, "wavelength_medium": self.wavelength_medium,
                "resolution": self._resolution, "vmicro": self._vmicro,
                "normalized": bool(normalized)}
        for i, key in enumerate(("teff", "logg", "feh", "alpha")):
            meta[key] = labels[:, i].copy() if batch else float(labels[0, i])
        meta["continuum"] = (cont if batch else cont[0]) * FLUX_UNIT
        if not batch:
            flux = flux[0]
        return Spectrum(flux=flux, spectral_axis=self.wavelength, meta=meta)


@hookimpl
def remap_synthetic_libraries():
    """Register the built-in ``linelist`` library (the class; options go to its constructor)."""
    return [LineListLibrary]
