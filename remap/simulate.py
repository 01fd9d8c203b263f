"""A simulated MARVELS-like survey: labelled "observed" spectra with a synthetic gap.

No MARVELS spectra can be had offline, so transfer learning (pre-train on the
augmented library, fine-tune on survey stars) is exercised on a simulated
survey made from the ``linelist`` library, deliberately *different* from the
training library in the ways real spectra differ from models (the "synthetic
gap" of Gilda 2025, §3.3):

* **line data**: every line's log gf is off by a fixed random error
  (default σ = 0.1 dex, the same error for a line in every star);
* **microturbulence**: 1.5 km/s instead of the library's 1.0 km/s;
* **resolution varying across the detector**: R changes linearly with
  wavelength between two values drawn in 10,000-12,000 for each star and
  beam (the range of Gilda 2025, §3.3 (i));
* **wavelength solution**: a smooth residual (low-order polynomial, rms
  ~0.1 pixel) and a radial-velocity residual after the rest-frame shift
  (σ = 0.3 km/s);
* **continuum**: the blackbody continuum times a random low-order (degree
  ≤ 3 Legendre) multiplicative distortion of a few per cent;
* **spikes**: ~20 % of spectra carry bright artefacts up to six pixels wide
  (Gilda 2025, §3.3, after Grieves et al. 2017, 2018);
* **noise**: SNR drawn uniformly in 50-200 (Gilda 2025, §3.3 (iii));
* **labels**: the stored labels are the true ones plus Gaussian errors like
  the survey's spectral-index labels (80 K, 0.1 dex, 0.1 dex; 80 K is the
  median calibration uncertainty behind the T_eff bins, METHOD.md), and the
  uncertainties are stored with them; the true labels are kept as metadata.

The simulated spectra then go through what observed spectra get: spike
removal (:meth:`remap.surveys.Survey.remove_spikes`) and continuum
normalization (Algorithm 1).  Set sizes and label ranges follow Gilda 2025,
§3.1: 2,313 dwarfs for fine-tuning and 30 calibration stars, both with
4700 ≤ T_eff ≤ 6000 K, 3.5 ≤ log g ≤ 4.7, −0.9 ≤ [Fe/H] ≤ +0.5, and 732 giant
candidates (remap's choice of range for them: 4000-5200 K, log g 1.5-3.5,
[Fe/H] −0.9…+0.3).

Each star is simulated from its own seed, ``SeedSequence(seed, spawn_key=(set
index, star index))``, so results do not depend on sharding or resuming; the
log gf errors come from ``seed`` alone and are shared by all sets of a seed.
"""

from __future__ import annotations

import dataclasses
import numbers

import astropy.units as u
import numpy as np
from numpy.polynomial import legendre
from scipy.interpolate import make_interp_spline
from tqdm import tqdm

from ._util.validators import check_int, check_real, is_real
from .continuum import normalize
from .datasets import DatasetWriter, limit_blas_threads
from .heads import FEH, LOGG, TEFF
from .libraries.linelist import LineListLibrary
from .plugins import get_continuum_fitter, get_survey

__all__ = ["SET_NAMES", "SET_SIZES", "SET_DOMAINS", "SIM_METADATA_FIELDS", "SimulationConfig",
           "perturbed_library",
           "simulate_star", "simulated_stars", "build_simulated"]

#: Sets of the simulated survey, in a fixed order (their index enters the seeds).
SET_NAMES = ("dwarfs", "calibration", "giants")

#: Sizes of the sets (Gilda 2025, §3.1).
SET_SIZES = {"dwarfs": 2313, "calibration": 30, "giants": 732}

#: Label ranges (teff K, logg, feh) of each set: dwarfs and calibration stars from
#: the spectral-index domain of Grieves et al. 2018 (Gilda 2025, §3.1); giants: remap.
SET_DOMAINS = {
    "dwarfs": {"teff": (4700.0, 6000.0), "logg": (3.5, 4.7), "feh": (-0.9, 0.5)},
    "calibration": {"teff": (4700.0, 6000.0), "logg": (3.5, 4.7), "feh": (-0.9, 0.5)},
    "giants": {"teff": (4000.0, 5200.0), "logg": (1.5, 3.5), "feh": (-0.9, 0.3)},
}

_C_KMS = 299_792.458

#: Metadata stored per simulated star.
SIM_METADATA_FIELDS = {"resolution": "float32", "sigma": "float32", "draw": "int16",
                       "seed": "uint64", "label_point": "int64", "source": "str",
                       "snr": "float32", "rv_residual": "float32", "n_spikes": "int16",
                       "teff_true": "float64", "logg_true": "float64", "feh_true": "float64"}


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """How the simulated survey differs from the training library.

    Attributes
    ----------
    loggf_sigma : float
        σ of the fixed per-line log gf errors (dex).
    vmicro : float or "relation"
        Microturbulence of the simulated stars (km/s), or ``"relation"`` for
        the line-list library's label-dependent microturbulence.
    resolution_range : (float, float)
        Range of the resolving power across the detector.
    wavelength_rms_px : float
        rms of the smooth wavelength-solution residual, in pixels.
    rv_sigma : float
        σ of the radial-velocity residual (km/s).
    continuum_amplitude : float
        Peak amplitude of the multiplicative continuum distortion.
    spike_fraction : float
        Probability that a beam's spectrum carries spikes.
    max_spike_width : int
        Widest spike, pixels.
    snr_range : (float, float)
        Range of the SNR (per pixel, against the continuum).
    label_sigma : (float, float, float)
        Errors of the stored labels: T_eff (K), log g, [Fe/H] (dex).
    """

    loggf_sigma: float = 0.1
    vmicro: float = 1.5
    resolution_range: tuple = (10_000.0, 12_000.0)
    wavelength_rms_px: float = 0.1
    rv_sigma: float = 0.3
    continuum_amplitude: float = 0.03
    spike_fraction: float = 0.2
    max_spike_width: int = 6
    snr_range: tuple = (50.0, 200.0)
    label_sigma: tuple = (80.0, 0.1, 0.1)

    def __post_init__(self):
        for name in ("loggf_sigma", "vmicro", "wavelength_rms_px", "rv_sigma",
                     "continuum_amplitude"):
            value = getattr(self, name)
            if not (name == "vmicro" and value == "relation"):
                check_real(name, value, 0)
        check_real("spike_fraction", self.spike_fraction, 0, 1)
        for name in ("resolution_range", "snr_range"):
            lo, hi = getattr(self, name)
            if not (is_real(lo) and is_real(hi) and 0 < lo <= hi):
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high; received "
                                 f"{name}={getattr(self, name)!r}")
        check_int("max_spike_width", self.max_spike_width, 1)


def perturbed_library(seed, config=None, **options):
    """The ``linelist`` library with the simulation's microturbulence and log gf errors.

    Parameters
    ----------
    seed : int
        Seed of the per-line log gf errors (``default_rng(seed)``, one normal
        draw per line in the library's line order).
    config : `SimulationConfig`, optional
        Defaults to ``SimulationConfig()``.
    **options
        Further options of `remap.libraries.linelist.LineListLibrary`.

    Returns
    -------
    library : `remap.libraries.linelist.LineListLibrary`
        With ``loggf_offsets`` (dex, one per line) applied.

    Notes
    -----
    The offsets are drawn in the library's line order, so they are fixed per
    line for a given seed (the same "wrong" line list for every star).
    """
    config = SimulationConfig() if config is None else config

    vmicro = None if config.vmicro == "relation" else config.vmicro
    n_lines = LineListLibrary(vmicro=vmicro, **options).n_lines
    offsets = np.random.default_rng(int(seed)).normal(0.0, config.loggf_sigma, n_lines)
    return LineListLibrary(vmicro=vmicro, loggf_offsets=offsets, **options)


def _variable_resolution(wave, flux, r_in, r_lo, r_hi, grid):
    """Convolve to R varying linearly in λ from r_lo (at grid[0]) to r_hi (at grid[-1])."""
    from .augment import _LnConvolver, gaussian_sigma_ln

    nodes = np.linspace(min(r_lo, r_hi), max(r_lo, r_hi), 5) if r_lo != r_hi else [r_lo]
    sigmas = [gaussian_sigma_ln(r, r_in) for r in nodes]
    conv = _LnConvolver(wave, sigmas[0], max_sigma_ln=max(sigmas))
    f = conv.transform(flux)
    smoothed = np.stack([conv.inverse(f, s / conv.step) for s in sigmas])
    if len(nodes) == 1:
        return smoothed[0]
    frac = np.clip((wave - grid[0]) / (grid[-1] - grid[0]), 0.0, 1.0)
    r_pix = r_lo + (r_hi - r_lo) * frac
    pos = np.interp(r_pix, nodes, np.arange(len(nodes)))
    i0 = np.minimum(np.floor(pos).astype(int), len(nodes) - 2)
    w = pos - i0
    cols = np.arange(wave.size)
    return smoothed[i0, cols] * (1 - w) + smoothed[i0 + 1, cols] * w


def simulate_star(library, survey, labels, rng, config=None, beams=None):
    """One simulated observation of a star in every beam (before spike removal).

    Parameters
    ----------
    library : `remap.libraries.linelist.LineListLibrary`
        Usually :func:`perturbed_library`.
    survey : survey object
    labels : dict
        True ``teff``, ``logg``, ``feh``.
    rng : `numpy.random.Generator`
    config : `SimulationConfig`, optional
        Defaults to ``SimulationConfig()``.
    beams : sequence of str, optional

    Returns
    -------
    spectra : dict of str to `specutils.Spectrum`
        Raw (un-normalized) flux on each beam's grid, with `StdDevUncertainty`.
    info : dict
        ``snr``, ``rv_residual`` (km/s), ``n_spikes`` (over all beams) and
        ``resolution`` (mean R over the beams).
    """
    config = SimulationConfig() if config is None else config
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    from .augment import _continuum_of, crop, to_medium

    beams = list(survey.beams) if beams is None else list(beams)
    spec = library.spectrum(teff=labels["teff"], logg=labels["logg"], feh=labels["feh"])
    spec = to_medium(spec, survey.wavelength_medium)
    rv = rng.normal(0.0, config.rv_sigma)
    snr = rng.uniform(*config.snr_range)
    out, n_spikes, r_mean = {}, 0, []
    for beam in beams:
        grid = survey.grid(beam).to_value(u.AA)
        step = float(np.median(np.diff(grid)))
        part = crop(spec, (grid[0] - 10) * u.AA, (grid[-1] + 10) * u.AA)
        wave = part.spectral_axis.to_value(u.AA) * (1.0 + rv / _C_KMS)
        flux = np.asarray(part.flux.value, dtype=float)
        cont = _continuum_of(part)
        cont = flux.copy() if cont is None else cont
        r_lo, r_hi = rng.uniform(*config.resolution_range, size=2)
        r_mean.append(0.5 * (r_lo + r_hi))
        flux = _variable_resolution(wave, flux, library.resolution, r_lo, r_hi, grid)
        x = 2.0 * (grid - grid[0]) / (grid[-1] - grid[0]) - 1.0
        # wavelength-solution residual: sample the spectrum at grid + a smooth error
        dlam = legendre.legval(x, rng.normal(0.0, 1.0, 4))
        dlam *= config.wavelength_rms_px * step / max(np.std(dlam), 1e-12)
        spline = make_interp_spline(wave, np.stack([flux, cont]), k=3, axis=-1)
        flux, cont = spline(grid + dlam)
        distortion = legendre.legval(x, np.concatenate([[1.0], rng.uniform(-1, 1, 3)]))
        distortion = 1.0 + (distortion - 1.0) * config.continuum_amplitude / max(
            np.max(np.abs(distortion - 1.0)), 1e-12)
        cont = cont * distortion
        flux = flux * distortion
        sigma = cont / snr
        flux = flux + sigma * rng.standard_normal(flux.size)
        if rng.random() < config.spike_fraction:
            for _ in range(int(rng.integers(1, 4))):
                width = int(rng.integers(1, config.max_spike_width + 1))
                start = int(rng.integers(0, flux.size - width))
                profile = np.hanning(width + 2)[1:-1]
                flux[start:start + width] += rng.uniform(0.3, 1.0) * cont[start] * profile
                n_spikes += 1
        out[beam] = Spectrum(flux=flux * part.flux.unit, spectral_axis=grid * u.AA,
                             uncertainty=StdDevUncertainty(sigma * part.flux.unit),
                             meta={"wavelength_medium": survey.wavelength_medium})
    return out, {"snr": snr, "rv_residual": rv, "n_spikes": n_spikes,
                 "resolution": float(np.mean(r_mean))}


def build_simulated(directory, which="dwarfs", *, n=None, seed=0, survey="marvels",
                    config=None, shard_size=500, fitter="algorithm1",
                    overwrite=False, progress=False, library_options=None, blas_threads=1):
    """Write one set of the simulated survey with `~remap.datasets.DatasetWriter`.

    Parameters
    ----------
    directory : str or path
    which : {"dwarfs", "calibration", "giants"}
    n : int, optional
        Number of stars (default: the paper's size of that set, `SET_SIZES`).
    seed : int
        Root seed (log gf errors, labels, every star's observation).
    survey : str or survey object
    config : `SimulationConfig`, optional
        Defaults to ``SimulationConfig()``.
    shard_size : int
        Stars per shard.
    fitter : str
        Continuum fitter applied after spike removal.
    overwrite, progress : bool
    library_options : dict, optional
        Extra options of the line-list library.
    blas_threads : int or None
        BLAS threads while simulating (`remap.datasets.limit_blas_threads`).

    Returns
    -------
    summary : dict
        ``n_samples``, ``shards``, ``shards_written``, ``shards_skipped``.
    """
    config = SimulationConfig() if config is None else config
    if which not in SET_NAMES:
        raise ValueError(f"unknown set {which!r}; choose one of {', '.join(SET_NAMES)}")
    n = SET_SIZES[which] if n is None else n
    if not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be an integer >= 1; received n={n!r}")
    if isinstance(survey, str):
        survey = get_survey(survey)
    fitter_obj = get_continuum_fitter(fitter)
    library = perturbed_library(seed, config, **(library_options or {}))
    set_index = SET_NAMES.index(which)
    domain = SET_DOMAINS[which]
    heads = (TEFF, LOGG, FEH)
    writer = DatasetWriter(
        directory, survey=survey.name, grids={b: survey.grid(b) for b in survey.beams},
        label_names=[h.name for h in heads], label_units=[h.unit.to_string() for h in heads],
        metadata_fields=SIM_METADATA_FIELDS, wavelength_medium=survey.wavelength_medium,
        overwrite=overwrite,
        config={"kind": "simulated", "set": which, "n": int(n), "seed": int(seed),
                "shard_size": int(shard_size), "fitter": {"name": fitter,
                                                          **fitter_obj.get_config()},
                "simulation": dataclasses.asdict(config),
                "library_options": {k: str(v) for k, v in (library_options or {}).items()}})
    n_shards = -(-n // shard_size)
    written = skipped = 0
    bar = tqdm(total=n, unit="stars", disable=not progress, desc=f"simulating {which}")
    limits = limit_blas_threads(blas_threads)
    try:
        for k in range(n_shards):
            stars = range(k * shard_size, min((k + 1) * shard_size, n))
            if writer.has_shard(k, len(stars)):
                skipped += 1
                bar.update(len(stars))
                continue
            with writer.shard(k, len(stars)) as shard:
                for i in stars:
                    ss = np.random.SeedSequence(int(seed), spawn_key=(set_index, i))
                    star_seed = int(ss.generate_state(1, np.uint64)[0])
                    rng = np.random.default_rng(star_seed)
                    true = {name: rng.uniform(*domain[name]) for name in ("teff", "logg", "feh")}
                    raw, info = simulate_star(library, survey, true, rng, config)
                    flux, mask = {}, {}
                    for beam, spec in raw.items():
                        clean = survey.remove_spikes(spec)
                        norm = normalize(clean, fitter=fitter_obj)
                        flux[beam] = np.asarray(norm.flux.value, dtype=np.float32)[None]
                        mask[beam] = np.asarray(norm.mask, dtype=bool)[None]
                    truth = np.array([[true["teff"], true["logg"], true["feh"]]])
                    noisy = truth + rng.normal(0.0, 1.0, 3) * np.asarray(config.label_sigma)
                    shard.append(
                        flux=flux, mask=mask, labels=noisy,
                        label_uncertainty=np.asarray(config.label_sigma, dtype=float)[None],
                        metadata={"resolution": [info["resolution"]],
                                  "sigma": [1.0 / info["snr"]], "snr": [info["snr"]],
                                  "rv_residual": [info["rv_residual"]],
                                  "n_spikes": [info["n_spikes"]], "seed": [star_seed],
                                  "label_point": [i], "source": [f"simulated-{which}"],
                                  "teff_true": [true["teff"]], "logg_true": [true["logg"]],
                                  "feh_true": [true["feh"]]})
                    bar.update(1)
            written += 1
    finally:
        bar.close()
        limits.__exit__(None, None, None)
    summary = {"n_samples": int(writer.manifest["n_samples"]), "shards": n_shards}
    writer.finish(**summary)
    summary.update(shards_written=written, shards_skipped=skipped)
    return summary


def simulated_stars(which="calibration", *, n=None, seed=0, survey="marvels", config=None,
                    library_options=None):
    """Raw simulated observations of one set, in memory (nothing written, nothing normalized).

    The stars are those :func:`build_simulated` writes for the same ``which``,
    ``seed``, ``survey``, ``config`` and ``library_options`` (same per-star
    seeds, labels and noise), before spike removal and continuum
    normalization: what an observer would have.  ``remap demo`` fits them.

    Parameters
    ----------
    which : {"dwarfs", "calibration", "giants"}
    n : int, optional
        Number of stars (default: the paper's size of the set, `SET_SIZES`).
    seed : int
        Root seed.
    survey : str or survey object
    config : `SimulationConfig`, optional
    library_options : dict, optional
        Extra options of the line-list library.

    Yields
    ------
    spectra : dict of str to `specutils.Spectrum`
        One raw spectrum per beam (flux in the library's unit, with
        `~astropy.nddata.StdDevUncertainty`).
    labels : dict
        ``teff``, ``logg``, ``feh``: the true labels; ``teff_obs``,
        ``logg_obs``, ``feh_obs``: the labels with the simulated catalogue
        errors (``config.label_sigma``), as stored by :func:`build_simulated`;
        ``snr``, ``n_spikes`` and ``index``.
    """
    config = SimulationConfig() if config is None else config

    if which not in SET_NAMES:
        raise ValueError(f"unknown set {which!r}; choose one of {', '.join(SET_NAMES)}")
    n = SET_SIZES[which] if n is None else n
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1; received n={n!r}")
    if isinstance(survey, str):
        survey = get_survey(survey)
    library = perturbed_library(seed, config, **(library_options or {}))
    set_index = SET_NAMES.index(which)
    domain = SET_DOMAINS[which]
    names = ("teff", "logg", "feh")
    for i in range(int(n)):
        # the same per-star seeding and draw order as build_simulated
        ss = np.random.SeedSequence(int(seed), spawn_key=(set_index, i))
        rng = np.random.default_rng(int(ss.generate_state(1, np.uint64)[0]))
        true = {name: rng.uniform(*domain[name]) for name in names}
        raw, info = simulate_star(library, survey, true, rng, config)
        noisy = np.array([true[k] for k in names]) + rng.normal(0.0, 1.0, 3) * np.asarray(
            config.label_sigma)
        labels = dict(true)
        labels.update({f"{k}_obs": float(v) for k, v in zip(names, noisy)})
        labels.update(snr=float(info["snr"]), n_spikes=int(info["n_spikes"]), index=i)
        yield raw, labels
