"""Algorithm 1 of Gilda (2025), the deep-REMAP continuum normalization.

The paper's text (Gilda 2025, MNRAS, Algorithm 1) is garbled in places; this
module documents how each ambiguous step is read (see `Algorithm1`) and offers
two modes that implement the same reading:

``faithful``
    A literal transcription: one spectrum at a time, the bin centres visited in
    a random order on every pass, one multiplication by ``step`` (0.999) and one
    re-fit per visit.  About a second per 4,300-pixel spectrum.
``fast`` (default)
    The same process with all still-floating bin centres of a spectrum lowered
    together (a synchronous pass instead of a randomly ordered one), solved
    event by event by a compiled kernel (`remap.continuum._kernel`, numba):
    while no bin changes state the continuum after ``t`` more passes is a
    known function of ``t``, so the pass at which each bin next starts or
    stops floating is solved from the pixels nearest to the continuum (one
    logarithm) and the centres jump straight to it.  The result is that of the
    pass-by-pass process, to rounding (tested to 1e-9 against a literal
    pass-by-pass loop; ``python -m benchmarks continuum`` times it).  The
    first fast fit of a process loads the kernel from numba's on-disk cache,
    or compiles it (tens of seconds) where there is none.  The synchronous
    pass is the only difference from ``faithful``, worth at most a
    few steps of 0.1 % at a centre before the final smoothing (tested
    tolerance: median 0.1 %, max 1 %, see `FAST_TOLERANCE`).

    Earlier remap versions computed the fast mode with a NumPy galloping
    search over the number of passes (kept as ``Algorithm1._fit_gallop`` for
    comparison); it
    could jump over a bin that stops and restarts within one jump, and differs
    from the pass-by-pass process (and so from the present fast mode) by up
    to ~0.25 % on about one spectrum in ten.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.polynomial import Polynomial
from numpy.polynomial import legendre
from scipy.ndimage import gaussian_filter1d

from .._util.validators import check_choice, check_int, check_real
from .base import ContinuumError, ContinuumFitter

__all__ = ["Algorithm1", "BIN_COUNTS", "POLYNOMIAL_BELOW", "FAST_TOLERANCE"]

#: The bin counts v of the outer loop: "range [2, 11]" read as 2, 3, ..., 11.
BIN_COUNTS = tuple(range(2, 12))

#: Below this many bins a stage fits a polynomial of degree v - 1, else interpolates.
POLYNOMIAL_BELOW = 5

#: Documented agreement of ``fast`` with ``faithful``: (median, max) of
#: |C_fast / C_faithful - 1| over the pixels of a spectrum.
FAST_TOLERANCE = (1e-3, 1e-2)

# galloping search: largest number of ``step`` multiplications tried at once
_MAX_JUMP = 4096

# pixels per bin the compiled kernel keeps as candidates for the next crossings
_SHORTLIST = 64

#: Counters of the compiled ``fast`` kernel, summed over every fit of the process
#: (diagnostics for benchmarks): events, bin pixels scanned in full passes, shortlist
#: pixels solved, full-bin solves.
KERNEL_STATS = np.zeros((len(BIN_COUNTS), 4), dtype=np.int64)


def _bins(npix, v):
    """Edges (v + 1) and centres (v) of ``v`` uniform bins of pixel indices 0..npix-1."""
    k = np.arange(v + 1)
    edges = (k * npix) // v
    centres = ((2 * k[:-1] + 1) * npix) // (2 * v)
    return edges, centres


def _flatten_edges(c, first, last):
    """Replace ``c[..., :first]`` and ``c[..., last+1:]`` by linear extrapolation (in place).

    The left slope is that between pixels ``first`` and ``first + 1``, the right
    slope that between ``last - 1`` and ``last`` (both measured inwards).
    """
    npix = c.shape[-1]
    if first > 0:
        slope = c[..., first + 1] - c[..., first]
        i = np.arange(first) - first
        c[..., :first] = c[..., first, None] + i * slope[..., None]
    if last < npix - 1:
        slope = c[..., last] - c[..., last - 1]
        i = np.arange(last + 1, npix) - last
        c[..., last + 1:] = c[..., last, None] + i * slope[..., None]
    return c


def _scaled_pixels(npix):
    x = np.arange(npix, dtype=float)
    return 2.0 * x / (npix - 1) - 1.0


@functools.lru_cache(maxsize=64)
def _stage_basis(npix, v):
    """Matrix B (v x npix): the stage-v continuum of centre values E is ``E @ B``.

    For v < 5 it is the polynomial of degree v - 1 through the v centres with
    flattened edges, for v >= 5 piecewise-linear interpolation (flat outside the
    outer centres, as `numpy.interp`).
    """
    edges, centres = _bins(npix, v)
    if v < POLYNOMIAL_BELOW:
        t = _scaled_pixels(npix)
        vander_nodes = legendre.legvander(t[centres], v - 1)
        vander_all = legendre.legvander(t, v - 1)
        basis = np.linalg.solve(vander_nodes.T, vander_all.T)  # (v, npix)
        basis = _flatten_edges(basis, centres[0], centres[-1])
    else:
        x = np.arange(npix, dtype=float)
        basis = np.stack([np.interp(x, centres, row) for row in np.eye(v)])
    basis.setflags(write=False)
    return basis


#: Pixel counts whose tables (`_stage_tables`, `_final_basis`) stay built.  Spectra at
#: different radial velocities cover their beams' model grids in windows of different
#: sizes (one pixel per ~5 km/s at a beam's end), each its own pixel count: building
#: its tables costs ~25 ms, keeping them ~2.5 MB.  128 counts hold every window of two
#: beams at up to ~+-300 km/s (measured: with 16, 1,000 stars at +-100 km/s spent 6.4 s
#: rebuilding them, 10x the continuum itself).
TABLE_CACHE = 128


@functools.lru_cache(maxsize=TABLE_CACHE)
def _final_basis(npix, v, degree, sigma):
    """Matrix (v x npix) of the final step: degree-``degree`` least squares, edges, smoothing."""
    _, centres = _bins(npix, v)
    t = _scaled_pixels(npix)
    vander_nodes = legendre.legvander(t[centres], degree)
    vander_all = legendre.legvander(t, degree)
    basis = (vander_all @ np.linalg.pinv(vander_nodes)).T  # (v, npix)
    basis = _flatten_edges(basis, centres[0], centres[-1])
    if sigma > 0:
        basis = gaussian_filter1d(basis, sigma, axis=-1, mode="nearest")
    basis.setflags(write=False)
    return basis


@functools.lru_cache(maxsize=TABLE_CACHE)
def _stage_tables(npix):
    """The stage bases of `_stage_basis` packed for the compiled kernel (read-only arrays).

    Returns
    -------
    tables : dict
        ``stage_v``, ``edges``, ``centres``, ``w`` and ``base`` (the continuum
        at pixel ``j`` of stage ``s`` is ``sum_q w[s, q, j] e[base[s, j] + q]``,
        at most 4 centres weigh on a pixel), ``seg_end`` (end of the run of
        pixels sharing pixel ``j``'s base), ``touch_lo``/``touch_hi`` (range
        of the bins a centre weighs on) and ``monotone`` (non-negative basis),
        as `_kernel.solve_stages` takes them.
    """
    width = 4
    n_stages, vmax = len(BIN_COUNTS), BIN_COUNTS[-1]
    stage_v = np.array(BIN_COUNTS, dtype=np.int64)
    edges = np.zeros((n_stages, vmax + 1), dtype=np.int64)
    centres = np.zeros((n_stages, vmax), dtype=np.int64)
    w = np.zeros((n_stages, width, npix))
    seg_end = np.zeros((n_stages, npix), dtype=np.int64)
    base = np.zeros((n_stages, npix), dtype=np.int64)
    touch_lo = np.zeros((n_stages, vmax), dtype=np.int64)
    touch_hi = np.zeros((n_stages, vmax), dtype=np.int64)
    monotone = np.zeros(n_stages, dtype=bool)
    pix = np.arange(npix)
    for s, v in enumerate(BIN_COUNTS):
        e, c = _bins(npix, v)
        edges[s, :v + 1], centres[s, :v] = e, c
        basis = _stage_basis(npix, v)
        nonzero = basis != 0
        lo = np.argmax(nonzero, axis=0)
        hi = v - np.argmax(nonzero[::-1], axis=0)
        if np.any(hi - lo > width):
            raise AssertionError("a stage basis weighs more than 4 centres on a pixel")
        base[s] = np.minimum(lo, max(v - width, 0))
        for q in range(width):
            i = base[s] + q
            inside = i < v
            w[s, q, inside] = basis[i[inside], pix[inside]]
        change = np.flatnonzero(np.diff(base[s])) + 1  # first pixels of each run
        ends = np.append(change, npix)
        seg_end[s] = ends[np.searchsorted(ends, pix, side="right")]
        for i in range(v):
            p = np.flatnonzero(nonzero[i])
            touch_lo[s, i] = np.searchsorted(e, p[0], side="right") - 1
            touch_hi[s, i] = np.searchsorted(e, p[-1], side="right")
        monotone[s] = bool(np.all(basis >= 0))
    tables = dict(stage_v=stage_v, edges=edges, centres=centres, w=w, base=base, seg_end=seg_end,
                  touch_lo=touch_lo, touch_hi=touch_hi, monotone=monotone)
    for arr in tables.values():
        arr.setflags(write=False)
    return tables


class Algorithm1(ContinuumFitter):
    """Algorithm 1 of Gilda (2025): iterative lowering of a binned continuum.

    The continuum starts flat above the flux and is lowered, bin centre by bin
    centre, by factors of ``step``, until in every bin more than ``a`` pixels
    lie above it; this is repeated for v = 2, ..., 11 bins (polynomial of degree
    v - 1 through the centres for v < 5, linear interpolation otherwise, each
    stage starting from the previous stage's continuum), then a polynomial of
    degree ``final_degree`` is fitted to the last centres, its edges are
    flattened and it is smoothed with a Gaussian of ``smoothing_sigma`` pixels.

    Parameters
    ----------
    mode : {"fast", "faithful"}
        ``fast`` (default): synchronous passes solved event by event in a
        compiled kernel (see module docstring); ``faithful``: the literal
        loop, one spectrum at a time.
    seed : int
        Seed of the random permutations of the bin centres (``faithful`` only;
        each spectrum of a batch uses a generator seeded with ``seed``, so a
        spectrum's continuum does not depend on its position in the batch).
        ``fast`` is deterministic and uses no random numbers.
    a : int
        The paper's ``a``: how many (unmasked) pixels of a bin may lie above the
        continuum before that bin stops being lowered.  Read as a count *per
        bin* (the paper: "the maximum quantity of flux values in each bin").
    assumed_snr : float
        Signal-to-noise ratio assumed for every spectrum (200 in the paper,
        §3.3).  It sets a noise allowance: a pixel counts as lying above the
        continuum ``C`` only if its flux exceeds ``C * (1 + noise_sigmas /
        assumed_snr)``.  Without it the continuum settles on the upper envelope
        of the noise, several sigma above the truth.
    noise_sigmas : float
        Width of that allowance in units of the assumed noise ``C /
        assumed_snr`` (remap's choice, tuned on `remap.testing` spectra).
    smoothing_sigma : float
        Sigma (pixels) of the final Gaussian smoothing (150 in the paper); 0
        turns smoothing off.
    final_degree : int
        Degree of the final polynomial (6 in the paper); at most 10 (it is
        fitted to the 11 centres of the last stage).
    step : float
        Factor applied at each lowering (0.999 in the paper), in (0, 1).
    max_passes : int
        Guard: the largest number of lowering passes (``faithful``) or of
        ``step`` multiplications of one centre (``fast``) per stage;
        exceeding it raises `~remap.continuum.ContinuumError`.

    Notes
    -----
    Readings of the garbled text (line numbers of the paper's Algorithm 1):

    * Flux scale (line 2).  The start value ``10 + max(Z)`` and the number of
      ``step`` passes depend on the flux unit.  Each spectrum is divided by the
      median of its unmasked flux first and the continuum multiplied back, so
      the start is ``10 + max(Z / median)`` (about 11) and ~2,400 passes reach
      the continuum whatever the unit.  A non-positive median is an error.
    * Bins and ``H`` (line 4).  Bin k of v holds pixels ``floor(k N / v)`` to
      ``floor((k + 1) N / v) - 1`` and its centre is ``H_k = floor((2k + 1) N /
      (2v))`` (0-based), i.e. ``N/v/2`` plus multiples of ``N/v``.
    * While condition (line 5) and the test ``C(h) > Z(h)`` (line 8).  Read
      per bin: bin h is *floating* while the continuum lies above the flux in
      it, i.e. while at most ``a`` of its unmasked pixels lie above the
      continuum (equivalently, more than ``n_bin - a`` lie below: the literal
      "number of true values in C > Z greater than" with the bin size taken
      into account).  A pass lowers every floating bin once; the loop ends when
      no bin floats.  Masked pixels never count as above or below.  A bin with
      ``a`` or fewer usable pixels uses ``a = n_usable - 1``; a bin with none is
      an error (use another fitter for spectra with gaps wider than N/11).
    * ``E`` (line 7) is ``C[H]``, re-read before each visit; line 9 multiplies
      the visited centre ``E(h)`` by ``step``; line 11/14 re-fit ``C`` from
      ``(H, E)`` immediately (``numpy.polynomial.Polynomial.fit`` of degree v - 1,
      which passes through the v centres, or `numpy.interp`, which is flat
      beyond the outer centres).
    * Edges (lines 12, 21).  Pixels left of ``H_0`` are replaced by the straight
      line through ``C(H_0)`` and ``C(H_0 + 1)``; pixels right of ``H_last`` by
      the line through ``C(H_last - 1)`` and ``C(H_last)``.
    * Lines 20–22 use ``(H, E)`` of the last stage (v = 11); the smoothing
      treats the ends with ``mode="nearest"`` (`scipy.ndimage.gaussian_filter1d`).

    Defaults.  Gilda (2025) gives ``a`` no value.  remap uses ``a=10`` with
    ``noise_sigmas=1``: on 40 `remap.testing.make_test_spectra` spectra per SNR
    this gave the smallest error at the paper's operating point, SNR 200 (median
    ``|C/C_true - 1|`` of 2.3 %, 0.8 % and 0.13 % at SNR 50, 100 and 200; with no
    allowance, ``noise_sigmas=0``, 2.9 %, 1.3 % and 0.5 %; with ``a=1``, 3.7 %,
    1.5 % and 0.4 %).  Below the assumed SNR the continuum is biased high, as
    the paper notes for noisy spectra (§3.3).
    """

    name = "algorithm1"
    description = "Gilda (2025) Algorithm 1: iterative binned lowering (fast or faithful)"

    def __init__(self, mode="fast", seed=0, a=10, assumed_snr=200.0, noise_sigmas=1.0,
                 smoothing_sigma=150.0, final_degree=6, step=0.999, max_passes=100_000):
        self.mode = check_choice("mode", mode, ("fast", "faithful"))
        self.seed = check_int("seed", seed, minimum=0)
        self.a = check_int("a", a, minimum=0)
        self.assumed_snr = check_real("assumed_snr", assumed_snr, 0, strict_min=True)
        self.noise_sigmas = check_real("noise_sigmas", noise_sigmas, 0)
        self.smoothing_sigma = check_real("smoothing_sigma", smoothing_sigma, 0)
        self.final_degree = check_int("final_degree", final_degree, 0, BIN_COUNTS[-1] - 1)
        self.step = check_real("step", step, 0, 1, strict_min=True, strict_max=True)
        self.max_passes = check_int("max_passes", max_passes, minimum=1)

    def get_config(self):
        """The options of this fitter (see the class docstring).

        Returns
        -------
        config : dict
        """
        return {"mode": self.mode, "seed": self.seed, "a": self.a,
                "assumed_snr": self.assumed_snr, "noise_sigmas": self.noise_sigmas,
                "smoothing_sigma": self.smoothing_sigma, "final_degree": self.final_degree,
                "step": self.step, "max_passes": self.max_passes}

    @property
    def _threshold(self):
        """Factor above the continuum beyond which a pixel counts as lying above it."""
        return 1.0 + self.noise_sigmas / self.assumed_snr

    def fit(self, flux, mask=None, wavelength=None):
        """Fit the continuum of one spectrum or of a batch (pixel space).

        Parameters
        ----------
        flux : array-like, shape (n_spectra, n_pix) or (n_pix,)
            Flux in any unit; at least 2 x 11 pixels.
        mask : array-like of bool, optional
            True = bad pixel (ignored).
        wavelength : array-like, optional
            Checked if given, otherwise unused (the algorithm works on pixels).

        Returns
        -------
        continuum : `~numpy.ndarray`
            Same shape and unit as ``flux``.

        Raises
        ------
        ValueError
            Bad input (see `ContinuumFitter.fit`), a non-positive median flux,
            or a bin of the 11-bin stage without usable pixels.
        remap.continuum.ContinuumError
            ``max_passes`` was exceeded.
        """
        if self.mode == "fast":
            prepared = self._prepare_fast(flux, mask, wavelength)
            if prepared is not None:
                zt, start, scale, a_pack, squeeze = prepared
                cont = self._solve_fast(zt, start, a_pack)
                cont *= scale[:, None]
                return cont[0] if squeeze else cont
        # the faithful mode, and a batch with a bad row (NumPy: its specific error)
        z, good, scale, a_eff, squeeze = self._prepare(flux, mask, wavelength)
        if self.mode == "faithful":
            cont = np.stack([self._fit_faithful(z[i], good[i],
                                                {v: a[i] for v, a in a_eff.items()})
                             for i in range(z.shape[0])])
        else:
            cont = self._fit_fast(z, good, a_eff)
        cont *= scale[:, None]
        return cont[0] if squeeze else cont

    def _prepare(self, flux, mask, wavelength):
        """Validate and scale a batch: ``(z, good, scale, a_eff, squeeze)``.

        ``z`` is the flux divided by each row's median unmasked flux ``scale``;
        ``a_eff[v]`` (shape (n, v)) is the per-bin ``a`` of the v-bin stage.
        """
        z, good, _, squeeze = self._as_batch(flux, mask, wavelength,
                                             min_good=2 * BIN_COUNTS[-1])
        npix = z.shape[1]
        scale = np.empty(z.shape[0])
        clean = good.all(axis=1)
        if clean.all():
            scale[:] = np.median(z, axis=1)
        elif clean.any():
            scale[clean] = np.median(z[clean], axis=1)
        for i in np.flatnonzero(~clean):
            scale[i] = np.median(z[i, good[i]])
        if np.any(~(scale > 0)):
            i = int(np.flatnonzero(~(scale > 0))[0])
            raise ValueError(f"spectrum {i}: the median unmasked flux is {scale[i]!r}; "
                             "Algorithm 1 needs a positive flux (a continuum above zero)")
        z /= scale[:, None]
        a_eff = {}
        for v in BIN_COUNTS:
            edges, _ = _bins(npix, v)
            if clean.all():  # every pixel usable: the bin widths
                n_use = np.broadcast_to(np.diff(edges), (z.shape[0], v))
            else:
                n_use = np.add.reduceat(good, edges[:-1], axis=1, dtype=np.int64)
            if np.any(n_use == 0):
                i, k = np.argwhere(n_use == 0)[0]
                raise ValueError(
                    f"spectrum {i}: pixels {edges[k]}-{edges[k + 1] - 1} (bin {k} of {v}) are "
                    "all masked; Algorithm 1 needs usable pixels in every bin. Use "
                    "fitter='clipped' for spectra with wide gaps")
            a_eff[v] = np.minimum(self.a, n_use - 1)
        return z, good, scale, a_eff, squeeze

    def _prepare_fast(self, flux, mask, wavelength):
        """`_prepare` and the kernel's inputs in one compiled pass per row (`_kernel.prepare_rows`).

        Returns ``(zt, start, scale, a_pack, squeeze)`` as `_solve_fast` takes
        them, or None when a row is bad (`_prepare` then raises its error).
        """
        from . import _kernel  # the numba boundary: compiled on first use

        arr = np.asarray(flux)
        if (arr.dtype.kind not in "fiu" or arr.ndim not in (1, 2) or arr.shape[-1] < 2
                * BIN_COUNTS[-1] or arr.size == 0):
            return None
        squeeze = arr.ndim == 1
        f = np.ascontiguousarray(np.atleast_2d(arr), dtype=np.float64)
        if mask is None:
            bad = np.zeros(f.shape, dtype=bool)
        else:
            m = np.asarray(mask)
            if m.shape != arr.shape or m.dtype != bool:
                return None
            bad = np.ascontiguousarray(np.atleast_2d(m))
        n, npix = f.shape
        self._check_wavelength(wavelength, npix)
        tables = _stage_tables(npix)
        zt = np.empty((n, npix))
        start = np.empty(n)
        scale = np.empty(n)
        a_pack = np.zeros((n, len(BIN_COUNTS), BIN_COUNTS[-1]), dtype=np.int64)
        error = np.zeros(n, dtype=np.int64)
        _kernel.prepare_rows(f, bad, tables["edges"], tables["stage_v"], self.a,
                             self._threshold, 2 * BIN_COUNTS[-1], zt, start, scale, a_pack,
                             error)
        if np.any(error):
            return None
        return zt, start, scale, a_pack, squeeze

    # -- faithful -------------------------------------------------------------------------
    def _fit_faithful(self, z, good, a_eff):
        """The literal loop for one scaled spectrum ``z`` (see the class notes)."""
        rng = np.random.default_rng(self.seed)
        npix = z.size
        x = np.arange(npix)
        thr = self._threshold
        cont = np.full(npix, 10.0 + z[good].max())
        centres = None
        for v in BIN_COUNTS:
            edges, centres = _bins(npix, v)
            slices = [slice(edges[k], edges[k + 1]) for k in range(v)]
            a_v = a_eff[v]

            def floating(c, k):
                s = slices[k]
                return np.count_nonzero(good[s] & (z[s] > c[s] * thr)) <= a_v[k]

            passes = 0
            while any(floating(cont, k) for k in range(v)):
                passes += 1
                if passes > self.max_passes:
                    raise ContinuumError(
                        f"Algorithm 1 (faithful) did not converge in {self.max_passes} passes "
                        f"at v={v} bins; is the flux positive? Raise max_passes to allow more")
                for h in rng.permutation(v):
                    e = cont[centres].copy()
                    if floating(cont, h):
                        e[h] *= self.step
                        if v < POLYNOMIAL_BELOW:
                            cont = Polynomial.fit(centres, e, v - 1)(x)
                            cont = _flatten_edges(cont, centres[0], centres[-1])
                        else:
                            cont = np.interp(x, centres, e)
        e = cont[centres]
        cont = Polynomial.fit(centres, e, self.final_degree)(x)
        cont = _flatten_edges(cont, centres[0], centres[-1])
        if self.smoothing_sigma > 0:
            cont = gaussian_filter1d(cont, self.smoothing_sigma, mode="nearest")
        return cont

    # -- fast -----------------------------------------------------------------------------
    def _fit_fast(self, z, good, a_eff):
        """Synchronous passes solved event by event in the compiled kernel (`_kernel`)."""
        n = z.shape[0]
        vmax = BIN_COUNTS[-1]
        masked = np.where(good, z, -np.inf)
        start = 10.0 + masked.max(axis=1)
        zt = masked / self._threshold
        a_pack = np.zeros((n, len(BIN_COUNTS), vmax), dtype=np.int64)
        for s, v in enumerate(BIN_COUNTS):
            a_pack[:, s, :v] = a_eff[v]
        return self._solve_fast(zt, start, a_pack)

    def _solve_fast(self, zt, start, a_pack):
        """The kernel's stages and the final fit of `_fit_fast`, from its packed inputs."""
        from . import _kernel  # the numba boundary: compiled on first use

        n, npix = zt.shape
        tables = _stage_tables(npix)
        vmax = BIN_COUNTS[-1]
        e = np.zeros((n, vmax))
        status = np.zeros(n, dtype=np.int64)
        stage = np.zeros(n, dtype=np.int64)
        _kernel.solve_stages(zt, start, a_pack, tables["stage_v"], tables["edges"],
                             tables["centres"], tables["w"], tables["base"], tables["seg_end"],
                             tables["touch_lo"], tables["touch_hi"], tables["monotone"],
                             self.step, self.max_passes, _SHORTLIST, e, status, stage,
                             KERNEL_STATS)
        if np.any(status):
            i = int(np.flatnonzero(status)[0])
            raise ContinuumError(
                f"Algorithm 1 (fast) did not converge for spectrum {i}: more than "
                f"{self.max_passes} lowering steps at v={BIN_COUNTS[stage[i]]} bins; is the "
                "flux positive? Raise max_passes to allow more")
        # the final fit, summed centre by centre: a fixed order, so that a row's result
        # does not depend on the batch (a BLAS product may block rows differently)
        cont = np.empty((n, npix))
        _kernel.combine(e, _final_basis(npix, vmax, self.final_degree, self.smoothing_sigma),
                        cont)
        return cont

    def _fit_gallop(self, z, good, a_eff, dtype=np.float32):
        """The former ``fast`` implementation, kept as a reference for tests and benchmarks.

        Synchronous passes with galloping jumps, vectorized over the batch in
        NumPy: a run of passes that leaves every bin's state unchanged at its
        end is taken in one jump (doubling up to 4,096), a jump that changes a
        state is halved.  It evaluates the continuum in ``dtype`` (float32 in
        the released versions up to 0.1) and can miss a state that changes and
        changes back inside one jump; otherwise it is the process the kernel
        solves exactly.
        """
        n, npix = z.shape
        thr = self._threshold
        log_step = np.log(self.step)
        e = np.repeat((10.0 + np.where(good, z, -np.inf).max(axis=1))[:, None], 2, axis=1)
        zt = (np.where(good, z, -np.inf) / thr).astype(dtype)  # above C <=> zt > C
        basis = None
        for v in BIN_COUNTS:
            if basis is not None:  # start from the previous stage's continuum
                _, centres = _bins(npix, v)
                e = (e @ basis)[:, centres]
            basis = _stage_basis(npix, v)
            starts = _bins(npix, v)[0][:-1]
            a_v = a_eff[v]

            basis32 = basis.astype(dtype)

            def state(e_rows, rows):
                cont32 = e_rows.astype(dtype) @ basis32
                above = (zt if rows.size == n else zt[rows]) > cont32
                return np.add.reduceat(above, starts, axis=1, dtype=np.int32) <= a_v[rows]

            all_rows = np.arange(n)
            floating = state(e, all_rows)
            jump = np.ones(n, dtype=np.int64)
            steps_taken = np.zeros((n, v), dtype=np.int64)
            active = np.flatnonzero(floating.any(axis=1))
            while active.size:
                fl = floating[active]
                factor = np.exp(jump[active] * log_step)[:, None]
                trial = np.where(fl, e[active] * factor, e[active])
                new_floating = state(trial, active)
                unchanged = (new_floating == fl).all(axis=1)
                accept = unchanged | (jump[active] == 1)
                rows = active[accept]
                e[rows] = trial[accept]
                floating[rows] = new_floating[accept]
                steps_taken[rows] += fl[accept] * jump[rows, None]
                jump[active] = np.where(unchanged, np.minimum(jump[active] * 2, _MAX_JUMP),
                                        np.where(accept, 1, np.maximum(jump[active] // 2, 1)))
                if steps_taken.max() > self.max_passes:
                    i = int(np.argmax(steps_taken.max(axis=1)))
                    raise ContinuumError(
                        f"Algorithm 1 (fast) did not converge for spectrum {i}: more than "
                        f"{self.max_passes} lowering steps at v={v} bins; is the flux "
                        "positive? Raise max_passes to allow more")
                active = np.flatnonzero(floating.any(axis=1))
        return e @ _final_basis(npix, BIN_COUNTS[-1], self.final_degree,
                                self.smoothing_sigma)
