"""The real solar spectrum (UVES, shared/data) through ``remap.fit``: is the default model right?

The spectrum itself is GPL-3.0 and is never copied into the repository: it is
read from ``../shared/data/solar_uves_norm.txt`` beside the checkout (or
``REMAP_SOLAR_REFERENCE``).  It is continuum-normalized, in air wavelengths,
at R ~ 47,000 (shared/data/README.md); the Sun's labels are the IAU nominal
T_eff = 5772 K, log g = 4.44 and [Fe/H] = 0.00 (Prša et al. 2016; Asplund et
al. 2009).

:func:`fit_sun` gives ``remap.fit`` what an observer would: the spectrum at its
native resolution (declared in ``meta["resolution"]``) or degraded to the
model's, with Gaussian noise of a given SNR, cut to a wavelength range, and
optionally Doppler shifted.
"""

from __future__ import annotations

import os
from pathlib import Path

import astropy.units as u
import numpy as np

__all__ = ["SUN", "SOLAR_RESOLUTION", "solar_reference_path", "load_solar_reference",
           "observed_sun", "fit_sun"]

#: IAU nominal solar labels (Prša et al. 2016) and the Asplund et al. (2009) scale.
SUN = {"teff": 5772.0, "logg": 4.44, "feh": 0.0}

#: Resolving power quoted for the UVES set-up of the reference (shared/data/README.md).
SOLAR_RESOLUTION = 47_000.0

_C_KMS = 299_792.458


def solar_reference_path():
    """Path of the solar reference, or None where it is not available."""
    env = os.environ.get("REMAP_SOLAR_REFERENCE")
    candidates = [Path(env)] if env else []
    root = Path(__file__).resolve().parents[1]
    candidates += [root.parent / "shared" / "data" / "solar_uves_norm.txt",
                   root / "shared" / "data" / "solar_uves_norm.txt"]
    for path in candidates:
        if path.is_file():
            return path
    return None


def load_solar_reference(path=None):
    """(air wavelength in Å, normalized flux), duplicates in wavelength removed (first kept)."""
    path = solar_reference_path() if path is None else Path(path)
    if path is None or not Path(path).is_file():
        raise FileNotFoundError("the solar reference (../shared/data/solar_uves_norm.txt or "
                                "$REMAP_SOLAR_REFERENCE) is not available")
    data = np.loadtxt(path)
    wave, flux = data[:, 0], data[:, 1]
    order = np.argsort(wave, kind="stable")
    wave, flux = wave[order], flux[order]
    keep = np.concatenate([[True], np.diff(wave) > 0])
    return wave[keep], flux[keep]


def observed_sun(*, snr=100.0, seed=0, wave_range=(4840.0, 5760.0), degrade_to=None,
                 shift=0.0, path=None, declare_resolution=True, grid_step=None):
    """The solar reference as a `specutils.Spectrum` an observer could hand to ``remap.fit``.

    Parameters
    ----------
    snr : float or None
        Gaussian noise of sigma = 1/snr per pixel (None: noiseless, no uncertainty).
    seed : int
    wave_range : (float, float)
        Å, air.
    degrade_to : float or None
        Degrade to this resolving power first (None: keep the native ~47,000).
    shift : float
        Doppler shift applied, km/s (exact relativistic formula).
    declare_resolution : bool
        Put the resolution in ``meta["resolution"]``.
    grid_step : float or None
        Resample (linear interpolation, noiseless) onto a uniform grid of this
        step in Å before the noise is added, so that ``snr`` is per pixel of
        that grid (e.g. 0.1, MARVELS); None keeps the reference's 0.01 Å.
    """
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    from remap.augment import downconvolve

    wave, flux = load_solar_reference(path)
    sel = (wave >= wave_range[0]) & (wave <= wave_range[1])
    wave, flux = wave[sel], flux[sel]
    r = SOLAR_RESOLUTION
    if degrade_to is not None and degrade_to < SOLAR_RESOLUTION:
        spec = Spectrum(flux=flux * u.one, spectral_axis=wave * u.AA)
        flux = np.asarray(downconvolve(spec, degrade_to, from_resolution=SOLAR_RESOLUTION)
                          .flux.value)
        r = float(degrade_to)
    if grid_step is not None:
        grid = np.arange(wave[0], wave[-1], float(grid_step))
        flux = np.interp(grid, wave, flux)
        wave = grid
    if shift:
        beta = shift / _C_KMS
        wave = wave * np.sqrt((1 + beta) / (1 - beta))
    meta = {"wavelength_medium": "air"}
    if declare_resolution:
        meta["resolution"] = r
    if snr is None:
        return Spectrum(flux=flux * u.one, spectral_axis=wave * u.AA, meta=meta)
    rng = np.random.default_rng(seed)
    sigma = np.full(flux.shape, 1.0 / snr)
    noisy = flux + sigma * rng.standard_normal(flux.size)
    return Spectrum(flux=noisy * u.one, spectral_axis=wave * u.AA,
                    uncertainty=StdDevUncertainty(sigma), meta=meta)


def fit_sun(model=None, *, snr=100.0, seeds=(0, 1, 2), fit_options=None, **options):
    """``remap.fit`` on noisy copies of the Sun (:func:`observed_sun` ``**options``), per seed.

    Returns
    -------
    rows : list of dict
        ``seed``, ``teff``, ``logg``, ``feh`` (medians), ``teff_p16`` ... and
        ``flags`` (names), ``dteff``, ``dlogg``, ``dfeh`` against `SUN`.
    """
    import remap

    fit_options = dict(fit_options or {})
    rows = []
    for seed in seeds:
        spec = observed_sun(snr=snr, seed=seed, **options)
        result = remap.fit(spec, model=model, **fit_options)
        row = {"seed": seed, "flags": ",".join(result.flag_names()) or "-"}
        for p in ("teff", "logg", "feh"):
            par = getattr(result, p)
            row[p] = float(u.Quantity(par.median).value)
            row[f"{p}_p16"] = float(u.Quantity(par.p16).value)
            row[f"{p}_p84"] = float(u.Quantity(par.p84).value)
            row[f"d{p}"] = row[p] - SUN[p]
        table = result.to_table()
        for extra in ("rv", "rv_err", "resolution"):
            if extra in table.colnames:
                row[extra] = float(u.Quantity(table[extra][0]).value)
        rows.append(row)
    return rows
