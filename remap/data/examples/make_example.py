"""Make remap's bundled example spectrum: a simulated MARVELS-like G dwarf.

This is how ``remap/data/examples/marvels_gdwarf_example.fits`` was made; it is
*simulated*, not observed (see ``README.rst`` next to this file).  Run it from
the repository root with the shared atomic line list::

    python remap/data/examples/make_example.py -o remap/data/examples/marvels_gdwarf_example.fits

It reads the atomic line list and element data that remap ships in
``remap/data/linelist/`` (``--linelist`` and ``--elements`` select other copies).

The model, deliberately simple:

* continuum: a 5800 K blackbody (`astropy.modeling.models.BlackBody`) in
  F_lambda, scaled to about 1e-13 erg / (s cm2 Å);
* metal lines: for every line of the list a line-centre optical depth
  ``tau0 = 10**(log gf + log eps - 12 + log f_ion - theta * chi + C)``, with
  the Boltzmann factor ``theta = 5040 / T`` at T = 5800 K, a Saha ionization
  fraction ``f_ion`` at electron pressure 10**1.3 dyn cm-2 (partition
  functions set to 1) and a constant ``C`` that sets the overall line strength;
  Voigt profiles (thermal + 1 km/s microturbulence Doppler width, a small
  Lorentz width, broader for the Mg b triplet); the residual flux is
  ``1 - 0.85 * (1 - exp(-tau))`` (lines never reach zero flux);
* H beta with broad wings, ``tau = tau0 / (1 + |dl / w|**2.5)`` (a Stark-like
  power law) times a Doppler core;
* instrumental broadening to R = 11,000 with a Gaussian, then sampling at
  0.1 Å from 4850 to 5750 Å (air wavelengths, rest frame);
* Gaussian noise with a continuum signal-to-noise ratio of 100 (variance
  proportional to the flux), drawn from ``numpy.random.default_rng(seed)``;
* three injected spikes: a one-pixel cosmic ray, a two-pixel hit and a
  five-pixel interferometric feature, listed in the file's metadata.

The spectrum is split into the two MARVELS beams with the ``marvels`` survey
plugin and written with :func:`remap.io.write_beams` (format ``remap-beam``).
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import math
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.modeling.models import BlackBody
from scipy.ndimage import gaussian_filter1d
from scipy.special import voigt_profile

__all__ = ["TEFF", "LOG_PE", "SNR", "RESOLUTION", "SPIKES", "synthesize", "main"]

#: Effective temperature of the simulated star, K.
TEFF = 5800.0
#: log10 of the electron pressure (dyn cm-2) used in the Saha ionization fractions.
LOG_PE = 1.3
#: Signal-to-noise ratio per 0.1 Å pixel in the continuum.
SNR = 100.0
#: Resolving power of the simulated instrument.
RESOLUTION = 11000.0
#: Injected spikes: (centre wavelength in Å, width in pixels, relative height).
SPIKES = ((5012.35, 1, 0.45), (5433.0, 2, 0.30), (5611.0, 5, 0.25))

_FINE_STEP = 0.01          # Å, synthesis grid
_STEP = 0.1                # Å, output grid
_RANGE = (4850.0, 5750.0)  # Å
_MICROTURB = 1.0           # km/s
_GAMMA = 0.02              # Å, Lorentz HWHM of the metal lines
_GAMMA_MGB = 0.06          # Å, Lorentz HWHM of Mg b 5167/5173/5184
_STRENGTH = 9.9            # the constant C above
_MAX_DEPTH = 0.85
_KB = 1.380649e-16         # erg/K
_AMU = 1.66053907e-24      # g
_C_KMS = 299792.458


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _ion_fractions(elements, teff, log_pe):
    """Fraction of each element in the neutral and the singly ionized stage (Saha, U=1)."""
    theta = 5040.0 / teff
    out = {}
    for row in elements:
        log_ratio = (-0.1761 - log_pe + 2.5 * math.log10(teff)
                     - theta * float(row["chi_ion1_eV"]))
        ratio = 10.0 ** log_ratio
        out[row["symbol"]] = (1.0 / (1.0 + ratio), ratio / (1.0 + ratio))
    return out


def synthesize(linelist, elements, *, seed=2025, teff=TEFF, snr=SNR):
    """Compute the example spectrum.

    Parameters
    ----------
    linelist, elements : path-like
        The shared ``linelist_4800_5800.csv`` and ``elements.csv``.
    seed : int
        Seed of the noise generator; the same seed gives the same spectrum.
    teff : float
        Temperature of the Boltzmann and Saha factors and of the blackbody, K.
    snr : float
        Continuum signal-to-noise ratio per pixel.

    Returns
    -------
    wavelength : `~astropy.units.Quantity`
        Air wavelengths, Å, 0.1 Å steps from 4850 to 5750 Å.
    flux, uncertainty : `~astropy.units.Quantity`
        Noisy flux with spikes, and its standard deviation, erg / (s cm2 Å).
    truth : dict
        The noiseless continuum and normalized spectrum (arrays) for checks.
    """
    lines = _read_csv(linelist)
    elem_rows = _read_csv(elements)
    abund = {r["symbol"]: float(r["log_eps_sun"]) for r in elem_rows}
    mass = {r["symbol"]: float(r["mass_amu"]) for r in elem_rows}
    fractions = _ion_fractions(elem_rows, teff, LOG_PE)
    theta = 5040.0 / teff

    lo, hi = _RANGE
    pad = 30.0
    fine = np.arange(round((hi - lo + 2 * pad) / _FINE_STEP) + 1) * _FINE_STEP + (lo - pad)
    tau = np.zeros_like(fine)

    for row in lines:
        el = row["element"]
        if el == "H":
            continue
        wl = float(row["wavelength_air_AA"])
        ion = int(row["ion"])
        log_tau = (float(row["loggf"]) + abund[el] - 12.0 + math.log10(fractions[el][ion])
                   - theta * float(row["excitation_eV"]) + _STRENGTH)
        if log_tau < -3.0:
            continue
        v_dopp = math.sqrt(2 * _KB * teff / (mass[el] * _AMU)) / 1e5  # km/s
        sigma = wl * math.hypot(v_dopp, _MICROTURB) / _C_KMS / math.sqrt(2.0)
        is_mgb = el == "Mg" and ion == 0 and abs(wl - 5175.0) < 10.0
        gamma = _GAMMA_MGB if is_mgb else _GAMMA
        half = 25.0 if is_mgb else 2.0
        i0, i1 = np.searchsorted(fine, [wl - half, wl + half])
        profile = voigt_profile(fine[i0:i1] - wl, sigma, gamma)
        tau[i0:i1] += 10.0 ** log_tau * profile / voigt_profile(0.0, sigma, gamma)

    # H beta: Doppler core plus Stark-like power-law wings
    hb = 4861.323
    dl = fine - hb
    sigma_h = hb * math.sqrt(2 * _KB * teff / (1.008 * _AMU)) / 1e5 / _C_KMS / math.sqrt(2.0)
    tau += 3.0 * np.exp(-0.5 * (dl / sigma_h) ** 2) + 1.2 / (1.0 + np.abs(dl / 2.5) ** 2.5)

    normalized_fine = 1.0 - _MAX_DEPTH * (1.0 - np.exp(-tau))
    sigma_pix = (lo + hi) / 2.0 / RESOLUTION / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    normalized_fine = gaussian_filter1d(normalized_fine, sigma_pix / _FINE_STEP)
    stride = round(_STEP / _FINE_STEP)
    start = round(pad / _FINE_STEP)
    npix = round((hi - lo) / _STEP) + 1
    normalized = normalized_fine[start:start + stride * npix:stride]
    wavelength = lo + _STEP * np.arange(npix)

    bb = BlackBody(temperature=teff * u.K)
    flam_unit = u.erg / (u.s * u.cm ** 2 * u.AA)
    flam = (bb(wavelength * u.AA) * u.sr).to(flam_unit, u.spectral_density(wavelength * u.AA))
    continuum = flam.value / np.median(flam.value) * 1e-13

    clean = continuum * normalized
    rng = np.random.default_rng(seed)
    ref = np.median(continuum)
    sigma = np.sqrt(clean * ref) / snr
    flux = clean + rng.normal(0.0, 1.0, npix) * sigma
    for centre, width, height in SPIKES:
        i = int(np.searchsorted(wavelength, centre))
        flux[i:i + width] += height * continuum[i:i + width]

    unit = u.erg / (u.s * u.cm ** 2 * u.AA)
    truth = {"continuum": continuum, "normalized": normalized}
    return wavelength * u.AA, flux * unit, sigma * unit, truth


def main(argv=None):
    """Command line: write the example file (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = importlib.resources.files("remap") / "data" / "linelist"
    parser.add_argument("--linelist", type=Path, default=data / "linelist_4800_5800.csv",
                        help="atomic line list CSV (default: remap's copy)")
    parser.add_argument("--elements", type=Path, default=data / "elements.csv",
                        help="element data CSV (default: remap's copy)")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("-o", "--output", required=True, type=Path)
    args = parser.parse_args(argv)

    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    import remap
    from remap.io import write_beams

    wavelength, flux, sigma, _ = synthesize(args.linelist, args.elements, seed=args.seed)
    # the remap-beam format keeps beam, survey and medium; the simulation
    # parameters are documented in README.rst and remap.examples.PROVENANCE
    meta = {"wavelength_medium": "air"}
    spectrum = Spectrum(flux=flux, spectral_axis=wavelength,
                        uncertainty=StdDevUncertainty(sigma), meta=meta)
    beams = remap.get_survey("marvels").split(spectrum)
    write_beams(args.output, beams, overwrite=True)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes): "
          + ", ".join(f"beam {b}: {len(s.spectral_axis)} px" for b, s in beams.items()))


if __name__ == "__main__":
    main()
