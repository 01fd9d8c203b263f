"""Survey and beam descriptions, beam selection and spike removal.

A *survey* (an instrument) delivers spectra in one or more *beams*: wavelength
ranges with their own resolving power and pixel grid, each of which gets its
own network in deep-REMAP (Gilda 2025, §5).  A `Survey` subclass only declares
its beams; the base class supplies

* :meth:`Survey.grid` -- the uniform output pixel grid of a beam,
* :meth:`Survey.split` -- cut an observed spectrum (or a batch) into beams,
  converting air/vacuum wavelengths to the survey's medium first,
* :meth:`Survey.remove_spikes` -- mask and interpolate over narrow bright
  artefacts (cosmic rays, fixed-wavelength interferometric features; Gilda
  2025 §3.3 reports features up to six pixels wide in ~20 % of MARVELS
  spectra).
"""

from __future__ import annotations

import dataclasses
import logging
import numbers

import astropy.units as u
import numpy as np
from scipy import ndimage
from scipy.special import ndtri

from .._util.stats import MAD_TO_SIGMA, nanmedian_rows
from .._util.validators import wavelength_range
from ..exceptions import NoOverlapError
from ..spectra.medium import convert_medium, validate_medium
from ..spectra.validation import MIN_PIXELS, prepare, spectrum_class

__all__ = ["Beam", "Survey", "DEFAULT_MIN_COVERAGE", "find_spikes", "fill_spikes"]

log = logging.getLogger(__name__)

#: Default smallest fraction of a beam's range a spectrum must cover for
#: :meth:`Survey.split` to return that beam.
DEFAULT_MIN_COVERAGE = 0.1


def _angstrom(value, what):
    if not isinstance(value, u.Quantity):
        raise TypeError(f"{what} must be an astropy Quantity with a wavelength unit; "
                        f"received {value!r}")
    try:
        out = value.to(u.AA)
    except u.UnitConversionError:
        raise u.UnitsError(f"{what} must have a wavelength unit; received unit "
                           f"{value.unit}") from None
    if out.ndim != 0 or not np.isfinite(out.value) or out.value <= 0:
        raise ValueError(f"{what} must be one positive finite wavelength; received {value!r}")
    return out


@dataclasses.dataclass(frozen=True)
class Beam:
    """One wavelength range of a survey, with its resolving power and pixel grid.

    Parameters
    ----------
    name : str
        Beam name, unique within its survey (e.g. ``"A"``).
    wave_min, wave_max : `~astropy.units.Quantity`
        Wavelength range, stored in Å (in the survey's wavelength medium).
    resolution : float
        Nominal resolving power R = λ/Δλ.
    resolution_range : tuple of float
        Smallest and largest R across the detector.
    sampling : `~astropy.units.Quantity`
        Pixel size of the uniform output grid, stored in Å.

    Raises
    ------
    TypeError, astropy.units.UnitsError, ValueError
        A field has the wrong type, unit or value (e.g. ``wave_max <= wave_min``,
        a sampling larger than the range, R outside ``resolution_range``).
    """

    name: str
    wave_min: u.Quantity
    wave_max: u.Quantity
    resolution: float
    resolution_range: tuple
    sampling: u.Quantity

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Beam name must be a non-empty string; received {self.name!r}")
        lo = _angstrom(self.wave_min, "wave_min")
        hi = _angstrom(self.wave_max, "wave_max")
        step = _angstrom(self.sampling, "sampling")
        if hi <= lo:
            raise ValueError(f"beam {self.name!r}: wave_max ({hi}) must exceed wave_min ({lo})")
        if step > hi - lo:
            raise ValueError(f"beam {self.name!r}: sampling {step} is larger than the range "
                             f"{lo}-{hi}")
        if not isinstance(self.resolution, numbers.Real) or not self.resolution > 0:
            raise ValueError(f"beam {self.name!r}: resolution must be a positive number; "
                             f"received {self.resolution!r}")
        rmin, rmax = (float(r) for r in self.resolution_range)
        if not 0 < rmin <= self.resolution <= rmax:
            raise ValueError(f"beam {self.name!r}: resolution_range must be (min, max) with "
                             f"0 < min <= resolution <= max; received {self.resolution_range!r}"
                             f" for resolution {self.resolution}")
        object.__setattr__(self, "wave_min", lo)
        object.__setattr__(self, "wave_max", hi)
        object.__setattr__(self, "sampling", step)
        object.__setattr__(self, "resolution", float(self.resolution))
        object.__setattr__(self, "resolution_range", (rmin, rmax))

    @classmethod
    def from_range(cls, name, wave_range, *, resolution, resolution_range, sampling):
        """A beam from its ``(min, max)`` wavelength range, e.g. ``(4850, 5280) * u.AA``.

        ``wave_range`` may also be a pair of Quantities (``(4850 * u.AA, 528 * u.nm)``);
        the other parameters are those of `Beam`.

        Raises
        ------
        TypeError, astropy.units.UnitsError, ValueError
            As `Beam`, and for a malformed ``wave_range``.
        """
        lo, hi = wavelength_range(wave_range, f"beam {name!r} wave_range")
        return cls(name, lo, hi, resolution=resolution, resolution_range=resolution_range,
                   sampling=sampling)

    @property
    def wave_range(self):
        """``(wave_min, wave_max)`` as a Quantity of shape (2,), in Å."""
        return u.Quantity([self.wave_min, self.wave_max])

    @property
    def npix(self):
        """Number of pixels of :meth:`grid`."""
        span = ((self.wave_max - self.wave_min) / self.sampling).to_value(u.one)
        return int(np.floor(span + 1e-9)) + 1

    def grid(self):
        """The uniform output pixel grid of the beam.

        Returns
        -------
        grid : `~astropy.units.Quantity`
            ``wave_min + k * sampling`` for ``k = 0 … npix-1`` in Å: it starts
            at ``wave_min`` and ends at the last pixel not beyond ``wave_max``
            (at ``wave_max`` itself when the range is a whole number of pixels).
        """
        return self.wave_min + np.arange(self.npix) * self.sampling

    def coverage(self, wave_first, wave_last):
        """Fraction of the beam range covered by the interval ``[wave_first, wave_last]``.

        Parameters
        ----------
        wave_first, wave_last : `~astropy.units.Quantity`
            Ends of the interval (wavelengths).

        Returns
        -------
        fraction : float
            In [0, 1].
        """
        lo = max(wave_first.to_value(u.AA), self.wave_min.value)
        hi = min(wave_last.to_value(u.AA), self.wave_max.value)
        return float(np.clip((hi - lo) / (self.wave_max - self.wave_min).value, 0.0, 1.0))


def _row_structure(ndim, size):
    """A footprint that acts along the last axis only (rows of a batch stay apart)."""
    return (1,) * (ndim - 1) + (size,)


def _rank_filter_rows(filter_fn, data, size, **kwargs):
    """Apply a scipy.ndimage rank filter (median, percentile) along the last axis, row by row.

    Identical to ``filter_fn(data, size=_row_structure(data.ndim, size))`` but
    an order of magnitude faster: SciPy's rank filters have a fast path for
    1-D input only (measured: 200 x 4,301 pixels, window 101, 5.5 s as one 2-D
    call, 0.38 s row by row, bit-identical).
    """
    if data.ndim == 1:
        return filter_fn(data, size=size, **kwargs)
    rows = data.reshape(-1, data.shape[-1])
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        out[i] = filter_fn(row, size=size, **kwargs)
    return out.reshape(data.shape)


def _spike_kernel():
    """The compiled spike kernels (the numba boundary: imported and compiled on first use)."""
    from . import _spike_kernel
    return _spike_kernel


def _spike_sigma(flux, stddev, mask, window, *, reference=False):
    """Per-pixel noise of ``find_spikes`` for a 2-D batch: ``stddev`` or a running estimate.

    Without ``stddev`` the noise is the running median (``window`` pixels) of
    the absolute second-difference residual ``r = f_i - (f_{i-1} + f_{i+1}) /
    2`` (masked pixels and the ends replaced by the row's median), times
    1.4826 / sqrt(1.5) (the variance of ``r`` is 1.5 sigma^2).  Non-finite or
    non-positive values are replaced by the median of the row's positive
    ones, and every value is at least 1e-12 times the row's largest absolute
    flux.  Each row is treated on its own.  ``reference=True`` computes the
    running median with SciPy instead of the compiled kernel (same values).
    """
    if stddev is None:
        resid = np.zeros_like(flux)
        resid[:, 1:-1] = flux[:, 1:-1] - 0.5 * (flux[:, :-2] + flux[:, 2:])
        absr = np.where(mask, np.nan, np.abs(resid))
        absr[:, [0, -1]] = np.nan
        fill = nanmedian_rows(absr, keepdims=True)   # a row with every pixel masked: NaN
        fill = np.where(np.isfinite(fill), fill, 0.0)
        absr = np.where(np.isfinite(absr), absr, fill)
        if reference:
            med = _rank_filter_rows(ndimage.median_filter, absr, window, mode="nearest")
        else:
            med = np.empty_like(absr)
            _spike_kernel().running_rank_rows(absr, window, window // 2, med)
        sigma = MAD_TO_SIGMA * med / np.sqrt(1.5)
    else:
        sigma = np.asarray(stddev, dtype=float)
    # reductions without temporaries (NaN propagates through min/max: such a row fails)
    floor = 1e-12 * np.maximum(np.maximum(flux.max(axis=1), -flux.min(axis=1)), 1e-300)
    bad_rows = np.flatnonzero(~((sigma.min(axis=1) > 0) & (sigma.max(axis=1) < np.inf)))
    if bad_rows.size:
        sigma = sigma.copy()
    for i in bad_rows:
        ok = (sigma[i] > 0) & (sigma[i] < np.inf)   # False at NaN too
        positive = sigma[i, ok]
        sigma[i, ~ok] = np.median(positive) if positive.size else floor[i]
    return np.maximum(sigma, floor[:, None])


def _spike_flags(flux, sigma, *, max_width, nsigma, grow_nsigma, window, percentile,
                 reference=False):
    """The spike flags of ``find_spikes`` for a 2-D batch, from the final noise ``sigma``.

    ``reference=True`` evaluates the SciPy formulation (grey opening, running
    percentile, binary propagation) instead of the compiled kernel, which
    gives the same flags (see `remap.surveys._spike_kernel`).
    """
    q = float(ndtri(percentile / 100.0))
    if reference:
        opening = ndimage.grey_opening(flux, size=(1, max_width + 1), mode="nearest")
        level = _rank_filter_rows(ndimage.percentile_filter, flux, window,
                                  percentile=percentile, mode="nearest")
        level = level - q * sigma
        excess = (flux - np.maximum(opening, level)) / sigma
        structure = np.zeros((3, 3), bool)
        structure[1, :] = True
        return ndimage.binary_propagation(excess > nsigma, structure=structure,
                                          mask=excess > grow_nsigma)
    # the rank scipy.ndimage.percentile_filter takes for this window and percentile
    rank = int(float(window) * percentile / 100.0)
    spikes = np.zeros(flux.shape, dtype=bool)
    _spike_kernel().spike_rows(np.ascontiguousarray(flux), np.ascontiguousarray(sigma),
                               int(max_width), int(window), rank, q, float(nsigma),
                               float(grow_nsigma), spikes)
    return spikes


def find_spikes(flux, wavelength=None, *, stddev=None, mask=None, max_width=6, nsigma=5.0,
                grow_nsigma=2.0, window=101, percentile=85.0, known_spikes=None,
                known_width=0.6 * u.AA):
    """Find narrow bright outliers (cosmic rays, interferometric features) in spectra.

    A pixel is a spike when its flux exceeds a local baseline by more than
    ``nsigma`` standard deviations.  The baseline is the larger of

    * the grey *opening* of the flux with a flat element ``max_width + 1``
      pixels wide (which removes every bright feature narrower than that and
      leaves absorption lines and the continuum alone), and
    * a running ``percentile`` of the flux over ``window`` pixels, lowered by
      the amount that percentile lies above the mean of Gaussian noise (i.e.
      a robust estimate of the local continuum level that narrow spikes
      cannot lift),

    so a spike has to be both narrow and above the local continuum, while the
    continuum peaks between two absorption lines are below the second
    baseline.  Pixels next to a spike whose excess is above
    ``grow_nsigma`` are added to it.  The noise is ``stddev`` where given,
    else a running robust estimate from the scatter of second differences.

    Measured on seeded simulations (20 spectra of 9,001 pixels with ~400
    strong Gaussian absorption lines at R ~ 11,000, SNR 50): no false
    pixel with the uncertainty given and one in 180,000 without; flat spikes
    1-6 pixels wide on the continuum were all found at 10, 20 and 50 σ, and
    60-80 % of them at 5 σ (the threshold itself).  A bright feature inside
    an absorption line that does not rise above the local continuum is not
    flagged: it cannot mislead a continuum fit, which is what the removal is
    for (Gilda 2025 §3.3).

    Each row of a batch is treated on its own (its noise fill and floor
    included).  The work is done by compiled kernels (numba; see
    ``remap.surveys._spike_kernel``) that give the same flags as the
    SciPy formulation above (``scipy.ndimage`` grey opening, percentile and
    median filters and binary propagation, all with ``mode="nearest"``); the
    running percentile is evaluated only where a pixel can be flagged at all.

    Parameters
    ----------
    flux : array_like
        Flux, 1-D or 2-D (spectra × pixels), finite.
    wavelength : `~astropy.units.Quantity`, optional
        Spectral axis (1-D); needed only with ``known_spikes``.
    stddev : array_like, optional
        Per-pixel standard deviations, shape of ``flux``.  Non-finite or
        non-positive values are replaced by the median of the row's positive
        ones, and no value is taken below 1e-12 times the row's largest
        absolute flux.
    mask : array_like of bool, optional
        Pixels already bad (ignored when estimating the noise; not reported).
    max_width : int
        Widest spike, in pixels.
    nsigma : float
        Detection threshold in standard deviations.
    grow_nsigma : float
        Threshold to extend a detected spike to neighbouring pixels.
    window : int
        Width in pixels of the running continuum and noise estimates; must
        exceed ``4 * max_width``.
    percentile : float
        Percentile of the running continuum estimate (50 < percentile < 100).
    known_spikes : `~astropy.units.Quantity`, optional
        Wavelengths of fixed features to flag always.
    known_width : `~astropy.units.Quantity`
        Full width flagged around each known spike.

    Returns
    -------
    spikes : `numpy.ndarray` of bool
        True at spike pixels; shape of ``flux``.

    Raises
    ------
    ValueError
        A parameter is out of range, shapes disagree, or the flux is not finite.
    """
    flux = np.asarray(flux, dtype=float)
    if flux.ndim not in (1, 2):
        raise ValueError(f"flux must be 1-D or 2-D; received shape {flux.shape}")
    if not np.all(np.isfinite(flux)):
        raise ValueError("flux must be finite (fill masked pixels first, e.g. with "
                         "remap.spectra.prepare)")
    if not isinstance(max_width, numbers.Integral) or max_width < 1:
        raise ValueError(f"max_width must be a positive integer; received: {max_width!r}")
    if not isinstance(window, numbers.Integral) or window <= 4 * max_width:
        raise ValueError(f"window must be an integer > 4 * max_width = {4 * max_width}; "
                         f"received: {window!r}")
    for name, value in (("nsigma", nsigma), ("grow_nsigma", grow_nsigma)):
        if not isinstance(value, numbers.Real) or not value > 0:
            raise ValueError(f"{name} must be a positive number; received: {value!r}")
    if grow_nsigma > nsigma:
        raise ValueError(f"grow_nsigma ({grow_nsigma}) must not exceed nsigma ({nsigma})")
    if not 50 < percentile < 100:
        raise ValueError(f"percentile must be in (50, 100); received: {percentile!r}")
    mask = np.zeros(flux.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != flux.shape:
        raise ValueError(f"mask shape {mask.shape} differs from flux shape {flux.shape}")

    if stddev is not None:
        stddev = np.asarray(stddev, dtype=float)
        if stddev.shape != flux.shape:
            raise ValueError(f"stddev shape {stddev.shape} differs from flux shape {flux.shape}")
    flux2 = np.ascontiguousarray(np.atleast_2d(flux))
    sigma = _spike_sigma(flux2, None if stddev is None else np.atleast_2d(stddev),
                         np.atleast_2d(mask), window)
    spikes = _spike_flags(flux2, sigma, max_width=max_width, nsigma=nsigma,
                          grow_nsigma=grow_nsigma, window=window,
                          percentile=percentile).reshape(flux.shape)

    if known_spikes is not None and np.size(known_spikes):
        if wavelength is None:
            raise ValueError("known_spikes needs the wavelength of the pixels")
        wave = u.Quantity(wavelength).to_value(u.AA, equivalencies=u.spectral())
        centres = np.atleast_1d(u.Quantity(known_spikes).to_value(u.AA,
                                                                  equivalencies=u.spectral()))
        half = 0.5 * u.Quantity(known_width).to_value(u.AA)
        tol = 1e-9 * float(np.max(np.abs(wave)))  # rounding of the pixel wavelengths
        near = np.any(np.abs(wave[:, None] - centres[None, :]) <= half + tol, axis=1)
        spikes = spikes | near
    return spikes


def fill_spikes(flux, spikes, mask):
    """Replace the flux of spike pixels by linear interpolation from the good pixels (in place).

    Parameters
    ----------
    flux : ndarray, shape (n, npix)
    spikes, mask : ndarray of bool, shape (n, npix)
        The spikes found (:func:`find_spikes`) and the pixels already bad;
        a row with fewer than two good pixels interpolates from its non-spike
        pixels.

    Returns
    -------
    flux : ndarray
        The same array.
    """
    x = np.arange(flux.shape[-1])
    rows = np.flatnonzero(spikes.any(axis=-1))
    if (flux.ndim == 2 and flux.dtype == np.float64 and flux.flags.c_contiguous
            and rows.size > 1):
        # the compiled pass; rows with nothing to interpolate from fall to np.interp below
        rows = np.flatnonzero(_spike_kernel().fill_rows(flux, spikes, mask))
    for r in rows:
        bad = spikes[r]
        good = ~bad & ~mask[r]
        ref = good if good.sum() >= 2 else ~bad
        flux[r, bad] = np.interp(x[bad], x[ref], flux[r, ref])
    return flux


class Survey:
    """Base class of a spectroscopic survey: its beams and how spectra are cut into them.

    Subclasses set the class attributes ``name``, ``description``,
    ``wavelength_medium`` and ``beams`` (or pass them to ``__init__``).

    Parameters
    ----------
    wavelength_medium : {"air", "vacuum"}, optional
        Medium of the survey's wavelength solution; defaults to the class
        attribute.
    known_spikes : `~astropy.units.Quantity`, optional
        Wavelengths of fixed artefacts always masked by :meth:`remove_spikes`
        (in the survey's medium); defaults to the class attribute (none).
    beams : dict of str to `Beam`, optional
        Overrides the class attribute.

    Raises
    ------
    ValueError
        Bad medium, no beams, or a beam stored under another name.
    TypeError
        A beam is not a `Beam`.
    """

    #: Unique survey name (the plugin name).
    name = None
    #: One-line description.
    description = ""
    #: Medium of the wavelength solution, "air" or "vacuum".
    wavelength_medium = "vacuum"
    #: Beam name -> `Beam`.
    beams = {}
    #: Wavelengths of fixed artefacts masked by remove_spikes (empty by default).
    known_spikes = u.Quantity([], u.AA)

    def __init__(self, *, wavelength_medium=None, known_spikes=None, beams=None):
        medium = type(self).wavelength_medium if wavelength_medium is None else wavelength_medium
        self.wavelength_medium = validate_medium(medium, "wavelength_medium")
        beams = dict(type(self).beams if beams is None else beams)
        if not beams:
            raise ValueError(f"survey {self.name!r} defines no beams")
        for key, beam in beams.items():
            if not isinstance(beam, Beam):
                raise TypeError(f"beam {key!r} must be a remap.surveys.Beam; received "
                                f"{type(beam).__name__}")
            if beam.name != key:
                raise ValueError(f"beam stored as {key!r} is named {beam.name!r}")
        self.beams = dict(sorted(beams.items(), key=lambda kv: kv[1].wave_min.value))
        spikes = type(self).known_spikes if known_spikes is None else known_spikes
        spikes = u.Quantity(spikes)
        try:
            self.known_spikes = np.atleast_1d(spikes.to(u.AA, equivalencies=u.spectral()))
        except u.UnitConversionError:
            raise u.UnitsError(f"known_spikes must be wavelengths; received unit "
                               f"{spikes.unit}") from None

    def __repr__(self):
        beams = ", ".join(f"{b.name}: {b.wave_min.value:g}-{b.wave_max.value:g} Å"
                          for b in self.beams.values())
        return f"<{type(self).__name__} {self.name!r} ({self.wavelength_medium}; {beams})>"

    def _beam(self, beam):
        if isinstance(beam, Beam):
            return beam
        if beam not in self.beams:
            raise KeyError(f"survey {self.name!r} has no beam {beam!r}; beams: "
                           f"{', '.join(self.beams)}")
        return self.beams[beam]

    def grid(self, beam):
        """The uniform output pixel grid (Å, in the survey's medium) of one beam.

        Parameters
        ----------
        beam : str or `Beam`
            Beam name.

        Returns
        -------
        grid : `~astropy.units.Quantity`

        Raises
        ------
        KeyError
            No such beam.
        """
        return self._beam(beam).grid()

    def _ranges(self):
        return "; ".join(f"beam {b.name}: {b.wave_min.value:g}-{b.wave_max.value:g} Å"
                         for b in self.beams.values())

    def _to_survey_medium(self, spectrum):
        medium = (spectrum.meta or {}).get("wavelength_medium")
        if medium is None:
            return spectrum, self.wavelength_medium
        medium = validate_medium(medium, "meta['wavelength_medium']")
        if medium != self.wavelength_medium:
            spectrum = convert_medium(spectrum, medium, self.wavelength_medium)
        return spectrum, medium

    def beam_cuts(self, wave, *, min_coverage=DEFAULT_MIN_COVERAGE):
        """Which pixels of a wavelength axis fall into which beam (array level).

        Parameters
        ----------
        wave : ndarray, shape (npix,)
            Strictly increasing wavelengths in Å, in the survey's medium.
        min_coverage : float
            Smallest covered fraction of a beam's range.

        Returns
        -------
        cuts : list of (str, slice, float)
            Per beam covered enough (in wavelength order): its name, the slice
            of ``wave`` inside its range (ends included) and the covered
            fraction of the range.
        skipped : list of str
            ``"B (4.0% covered, 20 pixels)"`` for each beam overlapped by at
            least two pixels but covered less than ``min_coverage`` or by
            fewer than :data:`~remap.spectra.validation.MIN_PIXELS` pixels.
        """
        cuts, skipped = [], []
        for beam in self.beams.values():
            i0 = int(np.searchsorted(wave, beam.wave_min.value, side="left"))
            i1 = int(np.searchsorted(wave, beam.wave_max.value, side="right"))
            count = i1 - i0
            if count < 2:
                continue
            cov = beam.coverage(wave[i0] * u.AA, wave[i1 - 1] * u.AA)
            if cov < min_coverage or count < MIN_PIXELS:
                skipped.append(f"{beam.name} ({cov:.1%} covered, {count} pixels)")
                continue
            cuts.append((beam.name, slice(i0, i1), cov))
        return cuts, skipped

    def split(self, spectrum, *, min_coverage=DEFAULT_MIN_COVERAGE, name="spectrum"):
        """Cut a spectrum (or a batch sharing one axis) into the survey's beams.

        The spectrum is validated with :func:`remap.spectra.prepare`.  If
        ``spectrum.meta["wavelength_medium"]`` is set and differs from the
        survey's medium the wavelengths are converted (:mod:`remap.spectra.medium`);
        when it is absent the spectrum is assumed to be in the survey's medium.

        Every beam the spectrum overlaps is returned with the pixels inside
        the beam range (ends included).  A beam covered by less than
        ``min_coverage`` of its range is left out and a warning is logged
        (logger ``remap.surveys.base``); a beam not overlapped at all is left
        out silently.

        Parameters
        ----------
        spectrum : `specutils.Spectrum`
            One spectrum or a batch (2-D flux).
        min_coverage : float
            Smallest covered fraction of a beam's range, in [0, 1].
        name : str
            How to call the input in messages.

        Returns
        -------
        beams : dict of str to `specutils.Spectrum`
            In order of wavelength.  Each spectrum's ``meta`` has ``beam``,
            ``survey``, ``wavelength_medium`` (the survey's) and ``coverage``,
            the covered fraction of the beam range (extent of the pixels, so
            masked pixels count as covered).

        Raises
        ------
        NoOverlapError
            No beam is covered by at least ``min_coverage`` (the message gives
            the spectrum's range and the beams' ranges).
        SpectrumError, TypeError
            Invalid input (see :func:`remap.spectra.prepare`).
        ValueError
            ``min_coverage`` out of range or bad ``wavelength_medium`` in meta.
        """
        if not isinstance(min_coverage, numbers.Real) or not 0 <= min_coverage <= 1:
            raise ValueError(f"min_coverage must be in [0, 1]; received: {min_coverage!r}")
        spec = prepare(spectrum, name=name)
        spec, original = self._to_survey_medium(spec)
        wave = u.Quantity(spec.spectral_axis).to_value(u.AA)
        Spectrum = spectrum_class()
        out = {}
        cuts, skipped = self.beam_cuts(wave, min_coverage=min_coverage)
        for beam, sl, cov in cuts:
            meta = dict(spec.meta or {})
            meta.update(beam=beam, survey=self.name, coverage=cov,
                        wavelength_medium=self.wavelength_medium)
            unc = spec.uncertainty
            out[beam] = Spectrum(
                flux=spec.flux[..., sl], spectral_axis=wave[sl] * u.AA,
                uncertainty=None if unc is None else type(unc)(unc.quantity[..., sl]),
                mask=np.asarray(spec.mask)[..., sl], meta=meta)
        if skipped:
            log.warning("%s: beams of survey %r left out for coverage below %.0f%% or fewer "
                        "than %d pixels: %s", name, self.name, 100 * min_coverage, MIN_PIXELS,
                        ", ".join(skipped))
        if not out:
            extra = (f" (partial overlap below min_coverage={min_coverage:g}: "
                     f"{', '.join(skipped)})" if skipped else "")
            raise NoOverlapError(
                f"{name} covers {wave[0]:.6g}-{wave[-1]:.6g} Å ({self.wavelength_medium}, "
                f"converted from {original}) which overlaps no beam of survey {self.name!r}"
                f"{extra}; the beams cover {self._ranges()}")
        return out

    def remove_spikes(self, spectrum, *, max_width=6, nsigma=5.0, grow_nsigma=2.0, window=101,
                      known_spikes=None, known_width=0.6 * u.AA, name="spectrum"):
        """Mask narrow bright artefacts and interpolate the flux over them.

        Cosmic rays and the MARVELS interferometric features (bright, up to
        six pixels wide, at fixed wavelengths; Gilda 2025 §3.3) are found with
        :func:`find_spikes`; absorption lines and the continuum are left
        untouched.  A spectrum whose ``meta["wavelength_medium"]`` differs
        from the survey's is converted first (as in :meth:`split`).

        Parameters
        ----------
        spectrum : `specutils.Spectrum`
            One spectrum or a batch (2-D flux), validated with
            :func:`remap.spectra.prepare`.
        max_width, nsigma, grow_nsigma, window, known_width
            See :func:`find_spikes`.
        known_spikes : `~astropy.units.Quantity`, optional
            Wavelengths (survey medium) to mask always; defaults to the
            survey's ``known_spikes``.
        name : str
            How to call the input in messages.

        Returns
        -------
        spectrum : `specutils.Spectrum`
            A new spectrum: spike pixels are added to the mask (OR-ed with the
            input mask), their flux is replaced by linear interpolation from
            the nearest good pixels; ``meta["spike_pixels"]`` holds the number
            of pixels flagged (a list for a batch).

        Raises
        ------
        SpectrumError, TypeError
            Invalid input.
        ValueError
            Invalid parameters.
        """
        spec = prepare(spectrum, name=name)
        spec, _ = self._to_survey_medium(spec)
        flux = np.array(u.Quantity(spec.flux).value, dtype=float)
        mask = np.asarray(spec.mask, dtype=bool)
        std = None if spec.uncertainty is None else np.asarray(spec.uncertainty.array, float)
        known = self.known_spikes if known_spikes is None else known_spikes
        spikes = find_spikes(flux, spec.spectral_axis, stddev=std, mask=mask,
                             max_width=max_width, nsigma=nsigma, grow_nsigma=grow_nsigma,
                             window=window, known_spikes=known, known_width=known_width)
        flux2 = np.atleast_2d(flux)
        bad2 = np.atleast_2d(spikes)
        fill_spikes(flux2, bad2, np.atleast_2d(mask))
        counts = bad2.sum(axis=-1)
        meta = dict(spec.meta or {})
        meta["spike_pixels"] = [int(c) for c in counts] if flux.ndim == 2 else int(counts[0])
        Spectrum = spectrum_class()
        return Spectrum(flux=flux2.reshape(flux.shape) * spec.flux.unit,
                        spectral_axis=spec.spectral_axis, uncertainty=spec.uncertainty,
                        mask=mask | spikes, meta=meta)
