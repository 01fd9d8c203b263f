"""A baseline continuum: `specutils.fitting.fit_generic_continuum` with a Chebyshev series.

This wraps the continuum fit that specutils users know: the spectrum is median
filtered (``median_window`` pixels, to suppress spikes) and a
`~astropy.modeling.polynomial.Chebyshev1D` of ``degree`` is fitted to it by
least squares.  There is no rejection of absorption lines, so the continuum is
biased low in line-rich spectra; it is provided as a reference, not as the
recommended fitter.  Spectra are fitted one at a time (slow for big batches).
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.modeling import fitting
from astropy.modeling.polynomial import Chebyshev1D
from astropy.utils.exceptions import AstropyUserWarning

from .._util.threads import WARNINGS_LOCK
from .._util.validators import check_choice, check_int
from .base import ContinuumError, ContinuumFitter

__all__ = ["Chebyshev"]

_FITTERS = {"linear": fitting.LinearLSQFitter, "trf": fitting.TRFLSQFitter,
            "lm": fitting.LevMarLSQFitter}


class Chebyshev(ContinuumFitter):
    """specutils' generic continuum fit (median filter + Chebyshev polynomial).

    Parameters
    ----------
    degree : int
        Degree of the `~astropy.modeling.polynomial.Chebyshev1D` (0 to 30).
    median_window : int
        Odd width (pixels) of the median filter applied before fitting.
    fitter : {"linear", "trf", "lm"}
        The astropy fitter: `~astropy.modeling.fitting.LinearLSQFitter`
        (default; exact for this linear model and fastest),
        `~astropy.modeling.fitting.TRFLSQFitter` (specutils' default) or
        `~astropy.modeling.fitting.LevMarLSQFitter`.  A new model and fitter
        are made for every spectrum.

    Notes
    -----
    Masked pixels are left out of the spectrum handed to specutils.  The
    polynomial's domain is the wavelength range of the spectrum (or its pixel
    range when ``fit`` gets no wavelengths), which keeps the fit well
    conditioned.  Astropy's fitting warnings (e.g. an ill-conditioned fit) are
    turned into `~remap.continuum.ContinuumError`.
    """

    name = "chebyshev"
    description = "specutils fit_generic_continuum: median filter + Chebyshev1D (baseline)"

    def __init__(self, degree=3, median_window=3, fitter="linear"):
        self.degree = check_int("degree", degree, 0, 30)
        self.median_window = check_int("median_window", median_window, minimum=1)
        if self.median_window % 2 == 0:
            raise ValueError(f"median_window must be an odd number of pixels; received "
                             f"median_window={median_window!r}")
        self.fitter = check_choice("fitter", fitter, tuple(_FITTERS))

    def get_config(self):
        """The options of this fitter.

        Returns
        -------
        config : dict
        """
        return {"degree": self.degree, "median_window": self.median_window,
                "fitter": self.fitter}

    def fit(self, flux, mask=None, wavelength=None):
        """Fit the continuum of one spectrum or of a batch (one spectrum at a time).

        Parameters and result as `ContinuumFitter.fit`.  The Chebyshev
        polynomial's variable is ``wavelength`` (Å) when given, else the pixel
        index; each spectrum is scaled by its median absolute flux for the fit.

        Raises
        ------
        ValueError
            Bad input (see `ContinuumFitter.fit`).
        remap.continuum.ContinuumError
            Astropy reports a problem with a fit.
        """
        from specutils import Spectrum
        from specutils.fitting import fit_generic_continuum

        z, good, wave, squeeze = self._as_batch(flux, mask, wavelength,
                                                min_good=max(self.degree + 1,
                                                             self.median_window))
        npix = z.shape[1]
        x = np.arange(npix, dtype=float) if wave is None else wave
        cont = np.empty_like(z)
        for i, (row, g) in enumerate(zip(z, good)):
            scale = np.median(np.abs(row[g]))
            scale = scale if scale > 0 else 1.0
            spec = Spectrum(flux=row[g] / scale * u.dimensionless_unscaled,
                            spectral_axis=x[g] * u.AA)
            model = Chebyshev1D(self.degree, domain=(x[0], x[-1]))
            with WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", AstropyUserWarning)
                fitted = fit_generic_continuum(spec, median_window=self.median_window,
                                               model=model, fitter=_FITTERS[self.fitter]())
            problems = [w for w in caught if issubclass(w.category, AstropyUserWarning)]
            for w in caught:
                if w not in problems:  # not ours to judge: pass it on unchanged
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if problems:
                raise ContinuumError(f"spectrum {i}: the Chebyshev continuum fit failed: "
                                     f"{problems[0].message}")
            cont[i] = np.asarray(fitted(x * u.AA)) * scale
        return cont[0] if squeeze else cont
