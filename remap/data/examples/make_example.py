"""Make remap's bundled example spectrum: a simulated MARVELS G dwarf.

This is how ``remap/data/examples/marvels_gdwarf_example.fits`` was made; it is
*simulated*, not observed (see ``README.rst`` next to this file).  Run it from
the repository root::

    python remap/data/examples/make_example.py -o remap/data/examples/marvels_gdwarf_example.fits

The star is one more member of remap's simulated MARVELS-like survey
(`remap.simulate`, the survey the default model is fine-tuned on), made with
the same physics and the same observation model:

* the spectrum: the built-in ``linelist`` library (remap's own line-list
  synthesis, `remap.libraries.linelist.LineListLibrary`, R = 100,000, physics
  `PHYSICS`, the default model's) at
  T_eff = 5800 K, log g = 4.4, [Fe/H] = 0.0 ([alpha/Fe] = 0), with the
  simulated survey's "synthetic gap" (:func:`remap.simulate.perturbed_library`):
  microturbulence 1.5 km/s and fixed per-line log gf errors (σ = 0.1 dex)
  drawn from the *survey* seed (``--survey-seed``, default 0, the seed of the
  simulated survey of ``configs/default.toml`` and of ``remap demo``: every
  star of one simulated survey shares its line-data errors);
* the observation (:func:`remap.simulate.simulate_star` with the default
  `~remap.simulate.SimulationConfig` except for three fixed values): a
  radial-velocity residual (σ = 0.3 km/s), a smooth wavelength-solution
  residual (rms 0.1 pixel) and a multiplicative continuum distortion
  (degree-3 Legendre, peak 3 %), each beam on its MARVELS grid (0.1 Å, air,
  rest frame); fixed here: resolving power R = 11,000 across both beams,
  signal-to-noise ratio 100 in the continuum (σ = continuum / 100) and no
  random spikes.  All draws come from ``numpy.random.default_rng(seed)``
  (``--seed``, default 2025), in `simulate_star`'s order;
* flux at the telescope: the library's surface flux π B_λ(T_eff) times the
  dilution factor (R_sun / 200 pc)**2, about 1e-13 erg / (s cm2 Å) in the
  continuum (a G dwarf of V ≈ 11.4, inside the MARVELS magnitude range);
* three injected spikes (`SPIKES`): a one-pixel cosmic ray, a two-pixel hit
  and a five-pixel interferometric feature, each pixel raised by a fixed
  fraction of the local continuum.

The beams are written with :func:`remap.spectra.io.write_beams` (format
``remap-beam``).  The same seeds give the same file; the test suite checks
that the shipped file matches :func:`synthesize`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import astropy.constants as const
import astropy.units as u
import numpy as np

__all__ = ["LABELS", "SNR", "RESOLUTION", "DISTANCE", "SPIKES", "SEED", "SURVEY_SEED",
           "PHYSICS", "simulation_config", "synthesize", "main"]

#: True labels of the simulated star (alpha/Fe = 0).
LABELS = {"teff": 5800.0, "logg": 4.4, "feh": 0.0}
#: Signal-to-noise ratio per 0.1 Å pixel in the continuum.
SNR = 100.0
#: Resolving power of the simulated instrument (both beams, whole detector).
RESOLUTION = 11000.0
#: Distance of the simulated one-solar-radius star (sets the flux scale).
DISTANCE = 200.0 * u.pc
#: Injected spikes: (centre wavelength in Å, width in pixels, height / continuum).
SPIKES = ((5012.35, 1, 0.45), (5433.0, 2, 0.30), (5611.0, 5, 0.25))
#: Default seed of the star's observation (noise, velocity, distortions).
SEED = 2025
#: Default seed of the simulated survey's log gf errors.
SURVEY_SEED = 0
#: Physics version of the ``linelist`` library: the one the default model was trained on
#: (its manifest's ``library_physics``), so that the example is one more star of the
#: default model's simulated survey.
PHYSICS = "v4"


def simulation_config():
    """The `~remap.simulate.SimulationConfig` of the example.

    The defaults of the simulated survey, with R, SNR fixed and random spikes
    off (the example's spikes are the documented `SPIKES`).
    """
    from remap.simulate import SimulationConfig

    return SimulationConfig(resolution_range=(RESOLUTION, RESOLUTION),
                            snr_range=(SNR, SNR), spike_fraction=0.0)


class _NoNoise:
    """Stands in for a `numpy.random.Generator` whose Gaussian noise is zero.

    Every call goes to the wrapped generator; ``standard_normal`` (the pixel
    noise of `remap.simulate.simulate_star`) draws as usual, so the stream
    stays in step, and returns zeros.  Driving `simulate_star` with it gives
    the noiseless spectrum of the same observation.
    """

    def __init__(self, rng):
        self._rng = rng

    def __getattr__(self, name):
        return getattr(self._rng, name)

    def standard_normal(self, size=None, *args, **kwargs):
        return np.zeros_like(self._rng.standard_normal(size, *args, **kwargs))


def synthesize(*, seed=SEED, survey_seed=SURVEY_SEED, library=None):
    """Compute the example spectrum.

    Parameters
    ----------
    seed : int
        Seed of the observation (``numpy.random.default_rng(seed)``); the same
        seeds give the same spectrum.
    survey_seed : int
        Seed of the simulated survey's per-line log gf errors
        (:func:`remap.simulate.perturbed_library`).
    library : `remap.libraries.linelist.LineListLibrary`, optional
        The perturbed library, if already made for ``survey_seed``.

    Returns
    -------
    beams : dict of str to `specutils.Spectrum`
        ``"A"`` and ``"B"`` on the MARVELS grids: noisy flux with the spikes
        and its `~astropy.nddata.StdDevUncertainty`, erg / (s cm2 Å).
    truth : dict of str to dict
        Per beam, the noiseless ``continuum`` (as observed, with the
        distortion) and ``normalized`` spectrum (arrays), for checks.
    """
    import remap
    from remap.simulate import perturbed_library, simulate_star

    config = simulation_config()
    if library is None:
        library = perturbed_library(survey_seed, config, physics=PHYSICS)
    survey = remap.get_survey("marvels")
    dilution = float((const.R_sun / DISTANCE).to_value(u.one) ** 2)

    beams, info = simulate_star(library, survey, LABELS, np.random.default_rng(seed), config)
    clean, _ = simulate_star(library, survey, LABELS, _NoNoise(np.random.default_rng(seed)),
                             config)
    if info["n_spikes"]:
        raise RuntimeError("the simulation added random spikes; spike_fraction must be 0")

    out, truth = {}, {}
    for beam, spec in beams.items():
        wave = spec.spectral_axis.to_value(u.AA)
        sigma = spec.uncertainty.array * dilution
        continuum = sigma * info["snr"]        # simulate_star: sigma = continuum / snr
        flux = spec.flux.value * dilution
        for centre, width, height in SPIKES:
            if wave[0] <= centre <= wave[-1]:
                i = int(np.searchsorted(wave, centre))
                flux[i:i + width] += height * continuum[i:i + width]
        unit = spec.flux.unit
        out[beam] = type(spec)(flux=flux * unit, spectral_axis=spec.spectral_axis,
                               uncertainty=type(spec.uncertainty)(sigma * unit),
                               meta=dict(spec.meta))
        truth[beam] = {"continuum": continuum,
                       "normalized": clean[beam].flux.value * dilution / continuum}
    return out, truth


def main(argv=None):
    """Command line: write the example file (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"seed of the observation (default {SEED})")
    parser.add_argument("--survey-seed", type=int, default=SURVEY_SEED,
                        help=f"seed of the survey's log gf errors (default {SURVEY_SEED})")
    parser.add_argument("-o", "--output", required=True, type=Path)
    args = parser.parse_args(argv)

    from remap.spectra.io import write_beams

    beams, truth = synthesize(seed=args.seed, survey_seed=args.survey_seed)
    write_beams(args.output, beams, overwrite=True, survey="marvels")
    cont = np.median(np.concatenate([t["continuum"] for t in truth.values()]))
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes; median continuum "
          f"{cont:.3g} erg / (s cm2 Å)): "
          + ", ".join(f"beam {b}: {len(s.spectral_axis)} px" for b, s in beams.items()))


if __name__ == "__main__":
    main()
