"""Quality flags of fitted stars: the `Flag` bits, their thresholds and their rules.

Each rule is a pure function of arrays beside the threshold it uses; the
``flags`` and ``neighbours`` stages of :func:`remap.fit`
(:mod:`remap.inference.stages`) call them and write the notes.

========================  ================================================
threshold                 rule
========================  ================================================
:data:`LOW_SNR`           :func:`low_snr`
:data:`MASKED_FRACTION`   :func:`heavily_masked`
:data:`EDGE_MASS`,        :func:`edge_mass`
:data:`EDGE_BINS`
:data:`TENSION_SIGMA`     :func:`beam_tension`
:data:`FAR_PERCENTILE`    :func:`far_threshold`, :func:`far_from_training`
trusted domain            :func:`outside_domain` (the library's ``trusted_domain``)
========================  ================================================
"""

from __future__ import annotations

import enum
import math

import numpy as np

__all__ = ["Flag", "flag_names", "EDGE_MASS", "EDGE_BINS", "LOW_SNR", "MASKED_FRACTION",
           "FAR_PERCENTILE", "TENSION_SIGMA", "low_snr", "heavily_masked", "edge_mass",
           "beam_tension", "far_threshold", "far_from_training", "outside_domain"]

#: `Flag.EDGE_PMF` is set when more than this fraction of a head's conflated PMF
#: lies in its lowest `EDGE_BINS` bins, or in its highest `EDGE_BINS` bins.
EDGE_MASS = 0.10
#: Number of bins at each end of a head's range counted by `EDGE_MASS`.
EDGE_BINS = 2
#: `Flag.LOW_SNR` is set when the signal-to-noise ratio per pixel of a used beam
#: (against the continuum) is below this.
LOW_SNR = 20.0
#: `Flag.MASKED` is set when more than this fraction of a used beam's model-grid
#: pixels is masked (bad in the input, a spike, or outside the spectrum's coverage).
MASKED_FRACTION = 0.20
#: `Flag.FAR_FROM_TRAINING` is set when the distance from a star's embedding to the
#: nearest training embedding exceeds this percentile of the training set's own
#: leave-one-out nearest-neighbour distances (per beam and head).
FAR_PERCENTILE = 99.0
#: `Flag.BEAMS_DISAGREE` is set when two beams' medians differ by more than this
#: many combined standard deviations, or when their PMFs share no bin.
TENSION_SIGMA = 3.0


class Flag(enum.IntFlag):
    """Quality flags of a fitted star (bits of `remap.FitResult.flags`).

    Attributes
    ----------
    MISSING_BEAM
        A beam of the model could not be used (not covered by the spectrum,
        too few usable pixels); the star's PMFs come from the other beam(s) only.
    EDGE_PMF
        More than `EDGE_MASS` (10 %) of a head's conflated PMF lies in the
        first or the last `EDGE_BINS` (2) bins: the star is probably outside the
        label domain of the training set.
    FAR_FROM_TRAINING
        The star's embedding is farther from the nearest training embedding
        than the `FAR_PERCENTILE` (99th) percentile of the training set's
        leave-one-out nearest-neighbour distances, in some used beam and head.
    LOW_SNR
        The signal-to-noise ratio of a used beam is below `LOW_SNR` (20),
        estimated from the uncertainties (or, without them, from a robust
        scatter of the normalized flux).
    MASKED
        More than `MASKED_FRACTION` (20 %) of a used beam's pixels are masked.
    BEAMS_DISAGREE
        The beams' PMFs of some head are in tension (medians more than
        `TENSION_SIGMA` combined standard deviations apart) or disjoint; for
        disjoint PMFs the reported PMF is the beams' average instead of their
        conflation.
    NO_COVERAGE
        No beam of the model could be used: every value is NaN and the
        message gives the reason.
    BAD_INPUT
        The input item could not be used at all (not a spectrum, a file that
        cannot be read, a spectrum that fails validation, two spectra of one
        beam that overlap): every value is NaN and the message is the error.
        Only with ``errors="flag"`` (the default for a batch); with
        ``errors="raise"`` the error is raised instead.
    RV_UNCERTAIN
        Set by the radial-velocity stage: the cross-correlation peak is
        weak or ambiguous.
    LOW_RESOLUTION
        Set by the resolution stage: the input's resolving power is below
        the model's.
    OUTSIDE_DOMAIN
        The conflated medians lie outside the domain where the model's
        training library is trusted (the library plugin's ``trusted_domain``,
        e.g. `remap.libraries.linelist.TRUSTED_DOMAIN`: no molecules, so no
        M dwarfs); the PMFs are reported but should not be believed.
    """

    MISSING_BEAM = 1
    EDGE_PMF = 2
    FAR_FROM_TRAINING = 4
    LOW_SNR = 8
    MASKED = 16
    BEAMS_DISAGREE = 32
    NO_COVERAGE = 64
    BAD_INPUT = 128
    RV_UNCERTAIN = 256
    LOW_RESOLUTION = 512
    OUTSIDE_DOMAIN = 1024


def flag_names(value: int) -> list[str]:
    """Names of the `Flag` bits set in ``value`` (lowest bit first)."""
    return [f.name for f in Flag if int(value) & int(f)]


def low_snr(snr: np.ndarray) -> np.ndarray:
    """True where a used beam's SNR is below :data:`LOW_SNR` (NaN: not used, False)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(snr, dtype=float) < LOW_SNR


def heavily_masked(fraction: np.ndarray) -> np.ndarray:
    """True where more than :data:`MASKED_FRACTION` of a beam's grid pixels are masked."""
    with np.errstate(invalid="ignore"):
        return np.asarray(fraction, dtype=float) > MASKED_FRACTION


def edge_mass(pmf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PMF mass in the :data:`EDGE_BINS` lowest and highest bins, and the `EDGE_PMF` rule.

    Parameters
    ----------
    pmf : ndarray, shape (n, n_bins)

    Returns
    -------
    low, high : ndarray, shape (n,)
        Mass in the lowest / highest :data:`EDGE_BINS` bins.
    edge : ndarray of bool, shape (n,)
        ``low > EDGE_MASS or high > EDGE_MASS`` (False for NaN rows).
    """
    low = pmf[:, :EDGE_BINS].sum(axis=1)
    high = pmf[:, -EDGE_BINS:].sum(axis=1)
    with np.errstate(invalid="ignore"):
        edge = (low > EDGE_MASS) | (high > EDGE_MASS)
    return low, high, edge


def beam_tension(bins, pmfs: list[np.ndarray]):
    """Largest pairwise absolute median difference / combined width between beam PMFs, per star.

    The width of a pair is ``sqrt(std_a² + std_b² + 2 w²/12)`` (``w`` the bin
    width, the floor of a one-bin PMF); NaN rows (unused beams) give 0.

    Parameters
    ----------
    bins : `remap.labels.LabelBins`
        The head's bins (for decoding and the bin width).
    pmfs : list of ndarray, shape (n, n_bins) each
        One per beam.

    Returns
    -------
    worst : ndarray, shape (n,)
        The largest tension in combined standard deviations; the rule of
        `Flag.BEAMS_DISAGREE` is ``worst > TENSION_SIGMA``.
    pair : list of (int, int) or None
        Per star, the indices (into ``pmfs``) of the beams in most tension.
    stats : list of dict
        ``bins.decode`` of each beam's PMFs.
    """
    stats = [bins.decode(p) for p in pmfs]
    floor2 = (bins.edges[1] - bins.edges[0]) ** 2 / 12.0
    worst = np.zeros(len(pmfs[0]))
    pair = [None] * len(pmfs[0])
    for a in range(len(pmfs)):
        for b in range(a + 1, len(pmfs)):
            sa, sb = stats[a], stats[b]
            width = np.sqrt(sa["std"] ** 2 + sb["std"] ** 2 + 2 * floor2)
            t = np.abs(sa["median"] - sb["median"]) / width
            t = np.where(np.isfinite(t), t, 0.0)
            for i in np.flatnonzero(t > worst):
                pair[i] = (a, b)
            worst = np.maximum(worst, t)
    return worst, pair, stats


def far_threshold(stored: np.ndarray, labels: np.ndarray) -> float:
    """:data:`FAR_PERCENTILE` of the training set's leave-one-star-out nearest distances.

    For every stored training embedding, the distance to the nearest stored
    embedding of a *different* star (different labels: the augmented copies
    of the same label point are left out with it).

    Parameters
    ----------
    stored : ndarray, shape (n, d)
        Training embeddings.
    labels : ndarray, shape (n, k)
        Their labels.

    Returns
    -------
    limit : float
        ``inf`` when no distance can be computed (a single star).
    """
    stored = np.asarray(stored, dtype=np.float64)
    _, star = np.unique(np.asarray(labels, dtype=np.float64), axis=0, return_inverse=True)
    star = np.asarray(star).ravel()
    nearest = np.full(len(stored), np.inf)
    sq = np.einsum("ij,ij->i", stored, stored)
    for start in range(0, len(stored), 512):
        block = stored[start:start + 512]
        d2 = sq[start:start + 512, None] + sq[None, :] - 2.0 * block @ stored.T
        d2[star[start:start + 512, None] == star[None, :]] = np.inf
        nearest[start:start + 512] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    finite = nearest[np.isfinite(nearest)]
    return float(np.percentile(finite, FAR_PERCENTILE)) if finite.size else math.inf


def far_from_training(distance: np.ndarray, limit: float) -> np.ndarray:
    """True where the nearest-neighbour distance exceeds :func:`far_threshold`'s limit."""
    return np.asarray(distance, dtype=float) > limit


def outside_domain(domain, teff, logg, feh):
    """The `Flag.OUTSIDE_DOMAIN` rule: labels outside a library's ``trusted_domain``.

    Parameters
    ----------
    domain : object with ``contains(teff, logg, feh)``, or None
        None (a library that declares no trusted domain) flags nothing.
    teff, logg, feh : ndarray
        The conflated medians; NaN (no result) is never flagged.

    Returns
    -------
    outside : ndarray of bool
    """
    teff, logg, feh = (np.asarray(x, dtype=float) for x in (teff, logg, feh))
    if domain is None:
        return np.zeros(teff.shape, bool)
    finite = np.isfinite(teff) & np.isfinite(logg) & np.isfinite(feh)
    inside = np.asarray(domain.contains(np.where(finite, teff, 5772.0),
                                        np.where(finite, logg, 4.44),
                                        np.where(finite, feh, 0.0)), dtype=bool)
    return finite & ~inside
