"""The Cannon (Ness et al. 2015) as a peer of remap, on the suite's data.

Uses ``annieslasso`` (Casey et al. 2016; imports as ``thecannon``), the
maintained implementation of The Cannon, with a quadratic polynomial
vectorizer in T_eff, log g and [Fe/H] (10 coefficients per pixel) and no
regularization: the classic three-label Cannon.  Install it with the
``bench`` extra (``pip install -e .[bench]``).

Compatibility wrapper
---------------------
``annieslasso`` 0.2.96 fits each pixel's scatter with
``scipy.optimize.fmin(..., 0.0)``, which returns a one-element *array*; it
then stores ``scatter**2`` into a float array element, which numpy 2 refuses
("setting an array element with a sequence").  :func:`numpy2_compatible`
replaces, for the duration of a ``with`` block, the ``op`` module that
``thecannon.fitting`` uses by a proxy whose ``fmin`` returns that element as a
scalar (everything else is ``scipy.optimize``); scipy itself is not touched.
The same block silences the deprecation warnings the package triggers
(``logger.warn``, ``disp=`` of L-BFGS-B) and its terminal progress bar (which
also runs ``stty size`` in a shell).

Noise model: the training spectra carry their augmentation noise σ (relative
to the continuum, so σ on the normalized flux): inverse variance 1/σ² at every
unmasked pixel, 0 at masked ones; test spectra the same with σ = 1/SNR.
Labels are fitted from the training set's mean labels; the formal
uncertainties are the square roots of the diagonal of the least-squares
covariance (scaled back to label units), which is what the 68 %/95 %
coverage of the suite uses.

``python -m benchmarks cannon [--quick]`` trains and tests on the suite's data
sets (built and cached by `benchmarks.suite`) and prints bias and scatter.
"""

from __future__ import annotations

import contextlib
import time
import types
import warnings

import numpy as np

__all__ = ["LABELS", "numpy2_compatible", "inverse_variance", "train_cannon", "test_cannon",
           "main"]

#: Labels of the model, in this order.
LABELS = ("teff", "logg", "feh")


class _OptimizeProxy(types.ModuleType):
    """``scipy.optimize`` with an ``fmin`` that returns a scalar for a 1-parameter fit."""

    def __init__(self, module):
        super().__init__(module.__name__)
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def fmin(self, func, x0, *args, **kwargs):
        out = self._module.fmin(func, x0, *args, **kwargs)
        if isinstance(out, tuple):   # full_output=True
            return (_scalar_if_single(out[0]),) + out[1:]
        return _scalar_if_single(out)


def _quiet_progressbar(self, N, message=None):
    """``thecannon.utils.wrapper._init_progressbar`` without the bar (N = 0 disables it)."""
    self.N, self.W, self.t_init, self.message = 0, 100, time.time(), message


def _scalar_if_single(x):
    arr = np.asarray(x)
    return float(arr.reshape(-1)[0]) if arr.size == 1 else arr


@contextlib.contextmanager
def numpy2_compatible():
    """Run ``annieslasso`` training and testing under numpy 2 (see the module doc)."""
    import logging

    import thecannon.fitting as fitting
    import thecannon.utils as utils

    original = fitting.op
    fitting.op = _OptimizeProxy(original)
    bar = utils.wrapper._init_progressbar
    utils.wrapper._init_progressbar = _quiet_progressbar
    logger = logging.getLogger("thecannon")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        fitting.op = original
        utils.wrapper._init_progressbar = bar
        logger.setLevel(level)


def inverse_variance(flux, mask, sigma):
    """Inverse variance of normalized spectra with per-spectrum noise ``sigma``.

    Parameters
    ----------
    flux : ndarray (n, npix)
    mask : ndarray (n, npix) of bool
        True = bad pixel (inverse variance 0).
    sigma : array-like (n,)
        Noise σ on the normalized flux.

    Returns
    -------
    ivar : ndarray (n, npix)
    """
    sigma = np.asarray(sigma, dtype=float).reshape(-1, 1)
    ivar = np.broadcast_to(1.0 / sigma ** 2, np.shape(flux)).copy()
    ivar[np.asarray(mask, bool) | ~np.isfinite(flux)] = 0.0
    return ivar


def train_cannon(flux, ivar, labels, *, order=2):
    """Train a polynomial Cannon model; return it and the training seconds.

    Parameters
    ----------
    flux, ivar : ndarray (n, npix)
    labels : ndarray (n, 3)
        T_eff, log g, [Fe/H] of each training spectrum.
    order : int
        Polynomial order of the vectorizer (2: quadratic).

    Returns
    -------
    model : ``thecannon.CannonModel``
    seconds : float
    """
    from astropy.table import Table

    import thecannon as tc

    table = Table(np.asarray(labels, dtype=float), names=LABELS)
    vectorizer = tc.vectorizer.PolynomialVectorizer(LABELS, order)
    flux = np.nan_to_num(np.asarray(flux, dtype=float), nan=1.0)
    with numpy2_compatible():
        model = tc.CannonModel(table, flux, np.asarray(ivar, dtype=float), vectorizer)
        start = time.perf_counter()
        model.train(threads=1)
    return model, time.perf_counter() - start


def test_cannon(model, flux, ivar):
    """Labels and formal 1σ uncertainties of test spectra; and the seconds taken.

    Returns
    -------
    labels : ndarray (n, 3)
    sigma : ndarray (n, 3)
        From the least-squares covariance; NaN where the fit gave none.
    seconds : float
    """
    flux = np.nan_to_num(np.asarray(flux, dtype=float), nan=1.0)
    start = time.perf_counter()
    with numpy2_compatible():
        labels, cov, _ = model.test(flux, np.asarray(ivar, dtype=float), threads=1)
    seconds = time.perf_counter() - start
    scales = np.asarray(model._scales, dtype=float)   # labels were fitted scaled by these
    sigma = np.full(labels.shape, np.nan)
    for i, c in enumerate(cov):
        c = np.asarray(c, dtype=float)
        if c.shape == (len(LABELS), len(LABELS)) and np.all(np.isfinite(np.diag(c))):
            sigma[i] = np.sqrt(np.clip(np.diag(c), 0.0, None)) * scales
    return np.asarray(labels, dtype=float), sigma, seconds


def main(quick=False, out=None):
    """Train and test The Cannon on the suite's data sets and print bias and scatter."""
    from benchmarks.network import score
    from benchmarks.suite import SuiteConfig, load_arrays

    config = SuiteConfig.quick() if quick else SuiteConfig.full()
    if out is not None:
        config.out = out
    train, test = load_arrays(config)
    model, t_train = train_cannon(train["flux"], inverse_variance(train["flux"], train["mask"],
                                                                  train["sigma"]),
                                  train["labels"])
    pred, sigma, t_test = test_cannon(model, test["flux"],
                                      inverse_variance(test["flux"], test["mask"],
                                                       1.0 / test["snr"]))
    print(f"The Cannon (annieslasso, quadratic, 3 labels): trained on {len(train['flux'])} "
          f"spectra in {t_train:.1f} s, tested {len(test['flux'])} in {t_test:.1f} s")
    for snr in np.unique(test["snr"]):
        sel = test["snr"] == snr
        parts = []
        for k, name in enumerate(LABELS):
            s = score(pred[sel, k], test["labels"][sel, k])
            parts.append(f"{name} bias {s['bias']:.3g} scatter {s['scatter']:.3g}")
        print(f"  SNR {snr:.0f}: " + "; ".join(parts))
    return pred, sigma
