"""Labels as probability mass functions over bins: encoding, decoding, conflation.

deep-REMAP treats regression as classification (Gilda 2025, §4.3 and §5):
each label (T_eff, log g, [Fe/H]) is binned, and a label ``v`` with
uncertainty ``σ`` becomes the probability mass function (PMF) of a Gaussian
``N(v, σ²)`` over those bins,

    p_i = Φ((e_{i+1} - v) / σ) - Φ((e_i - v) / σ),

where ``e_i`` are the bin edges and Φ the standard normal CDF.  The paper's
Eq. 4 writes this with ``erf`` and omits the factor ½ of the CDF
(Φ(z) = ½[1 + erf(z/√2)]); remap normalizes the vector to sum to 1, which
absorbs any constant factor.  The cost vector of the paper is ``1 - PMF``.
Synthetic (noiseless) labels use the head's ``synthetic_sigma`` (grid step /
5: 20 K for T_eff).

Predictions are PMFs; `LabelBins.decode` reports their median and
16th/84th percentiles (the paper's Fig. 4), interpolating the cumulative
distribution linearly within bins.  `conflate` combines the PMFs of the two
MARVELS beams, ``p_i = a_i b_i / Σ_j a_j b_j`` (Hill & Miller 2011).
"""

from __future__ import annotations


import numpy as np
from scipy.special import log_ndtr

from .heads import HeadSpec, resolve_heads

__all__ = ["LabelBins", "LabelEncoder", "conflate"]


def _log_gauss_mass(lo, hi):
    """``log(Φ(hi) - Φ(lo))`` for ``lo <= hi`` (broadcast), accurate far in the tails.

    Intervals lying wholly above 0 are mirrored (Φ(hi) - Φ(lo) = Φ(-lo) - Φ(-hi))
    so that the difference is always taken between the two smaller CDF values
    and never cancels to 0 at a few tens of σ.
    """
    lo, hi = np.broadcast_arrays(np.asarray(lo, float), np.asarray(hi, float))
    flip = lo > 0
    a = np.where(flip, -hi, lo)
    b = np.where(flip, -lo, hi)
    la, lb = log_ndtr(a), log_ndtr(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        # log(Φ(b) - Φ(a)) = log Φ(b) + log(1 - exp(log Φ(a) - log Φ(b)))
        out = lb + np.log1p(-np.exp(la - lb))
    return np.where(b > a, out, -np.inf)


def _as_pmf_2d(pmf, n_bins, what="pmf"):
    arr = np.asarray(pmf, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_bins:
        raise ValueError(f"{what} must have shape (n, {n_bins}) or ({n_bins},); "
                         f"received shape {np.shape(pmf)}")
    return arr


class LabelBins:
    """The bins of one head, and the label <-> PMF conversions.

    Parameters
    ----------
    head : `remap.heads.HeadSpec`

    Attributes
    ----------
    head : `remap.heads.HeadSpec`
    edges : ndarray, shape (n_bins + 1,), float64
        Bin edges in ``head.unit`` values: ``low + bin_width * arange(n_bins + 1)``
        (the last edge may exceed ``high`` when the range is not a whole number
        of bins).
    centres : ndarray, shape (n_bins,)
    n_bins : int
    """

    def __init__(self, head):
        if not isinstance(head, HeadSpec):
            raise TypeError(f"LabelBins needs a remap.heads.HeadSpec; received {head!r}")
        self.head = head
        self.n_bins = int(head.n_bins)
        steps = np.arange(self.n_bins + 1, dtype=np.float64)
        self.edges = float(head.low) + float(head.bin_width) * steps
        self.centres = 0.5 * (self.edges[:-1] + self.edges[1:])

    @classmethod
    def from_head(cls, head):
        """The bins of ``head`` (a `~remap.heads.HeadSpec`)."""
        return cls(head)

    def __repr__(self):
        return (f"LabelBins({self.head.name!r}, {self.n_bins} bins of {self.head.bin_width} "
                f"{self.head.unit} from {self.edges[0]} to {self.edges[-1]})")

    # ------------------------------------------------------------------ encode
    def encode(self, values, sigmas=None):
        """Gaussian PMFs of labels ``values`` with standard deviations ``sigmas``.

        Parameters
        ----------
        values : float or array_like, shape (n,)
            Label values in ``head.unit``.  NaN marks a missing label: its row
            is all NaN (the losses of `remap.nn.losses` skip such rows).
        sigmas : float or array_like, shape (n,), optional
            Standard deviations.  None, NaN or values <= 0 are replaced by
            ``head.synthetic_sigma`` (noiseless synthetic labels).

        Returns
        -------
        pmf : ndarray, shape (n, n_bins), float32
            ``Φ(right) - Φ(left)`` per bin, normalized to sum to 1.  The mass
            outside the bin range is dropped before normalizing (a Gaussian
            truncated to the range), so a value beyond the range piles into the
            nearest edge bin: far outside, that bin holds (nearly) all the mass.
            The probabilities are computed in logs, so no row underflows to
            0/0 however far outside its value lies.
        """
        v = np.atleast_1d(np.asarray(values, dtype=np.float64))
        if v.ndim != 1:
            raise ValueError(f"values must be a scalar or 1-d; received shape {np.shape(values)}")
        if sigmas is None:
            s = np.full(v.shape, np.nan)
        else:
            s = np.asarray(sigmas, dtype=np.float64)
            if s.ndim == 0:
                s = np.full(v.shape, float(s))
            if s.shape != v.shape:
                raise ValueError(f"sigmas must be a scalar or match values' shape {v.shape}; "
                                 f"received shape {s.shape}")
        if np.any(np.isinf(v)):
            raise ValueError(f"label values of head {self.head.name!r} must be finite or NaN "
                             f"(missing); received {v[np.isinf(v)][:5].tolist()}")
        s = np.where(np.isfinite(s) & (s > 0), s, float(self.head.synthetic_sigma))
        missing = np.isnan(v)
        vv = np.where(missing, 0.5 * (self.edges[0] + self.edges[-1]), v)
        z = (self.edges[None, :] - vv[:, None]) / s[:, None]
        logp = _log_gauss_mass(z[:, :-1], z[:, 1:])
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        p /= p.sum(axis=1, keepdims=True)
        p[missing] = np.nan
        return p.astype(np.float32)

    @staticmethod
    def cost(pmf):
        """The paper's cost vector, ``1 - pmf`` (Gilda 2025, §5 step v)."""
        return 1.0 - np.asarray(pmf)

    # ------------------------------------------------------------------ decode
    def quantile(self, pmf, q):
        """Quantile ``q`` (0..1) of each PMF row, interpolating the CDF linearly within bins.

        The PMF is treated as uniform within each bin, so the CDF is piecewise
        linear between the edges and the quantile is not snapped to a bin
        centre.  Rows are normalized first; rows with NaN or a non-positive sum
        give NaN.
        """
        if not (0.0 <= float(q) <= 1.0):
            raise ValueError(f"quantile q must lie in [0, 1]; received q={q}")
        p = _as_pmf_2d(pmf, self.n_bins)
        p, bad = self._normalized(p)
        cdf = np.concatenate([np.zeros((len(p), 1)), np.cumsum(p, axis=1)], axis=1)
        cdf[:, -1] = 1.0
        # bin i holds the quantile when cdf[i] < q <= cdf[i+1]; q = 0 -> first non-empty bin
        i = np.sum(cdf[:, 1:] < q, axis=1)
        if q == 0.0:
            i = np.argmax(p > 0, axis=1)
        i = np.clip(i, 0, self.n_bins - 1)
        rows = np.arange(len(p))
        pi = p[rows, i]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(pi > 0, (q - cdf[rows, i]) / pi, 0.5)
        frac = np.clip(frac, 0.0, 1.0)
        out = self.edges[i] + frac * (self.edges[i + 1] - self.edges[i])
        out[bad] = np.nan
        return out

    def _normalized(self, p):
        with np.errstate(invalid="ignore"):
            total = p.sum(axis=1, keepdims=True)
            bad = ~np.isfinite(total[:, 0]) | (total[:, 0] <= 0) | np.any(p < 0, axis=1)
        p = np.where(bad[:, None], 0.0, p)
        total = np.where(bad[:, None], 1.0, total)
        return p / total, bad

    def decode(self, pmf):
        """Summary statistics of PMFs.

        Parameters
        ----------
        pmf : array_like, shape (n, n_bins) or (n_bins,)

        Returns
        -------
        summary : dict of ndarray, shape (n,)
            ``median``, ``p16``, ``p84`` (quantiles 0.5, 0.16, 0.84 with the
            CDF interpolated linearly within bins, see `quantile`), ``mean``
            and ``std`` (moments of the PMF over the bin centres), in
            ``head.unit`` values.  Rows with NaN give NaN.
        """
        p = _as_pmf_2d(pmf, self.n_bins)
        pn, bad = self._normalized(p)
        mean = pn @ self.centres
        var = np.einsum("ij,ij->i", pn, (self.centres[None, :] - mean[:, None]) ** 2)
        std = np.sqrt(np.maximum(var, 0.0))
        mean[bad] = np.nan
        std[bad] = np.nan
        return {"median": self.quantile(p, 0.5), "p16": self.quantile(p, 0.16),
                "p84": self.quantile(p, 0.84), "mean": mean, "std": std}


class LabelEncoder:
    """Turns label arrays into one PMF per head (the targets of the network).

    Parameters
    ----------
    heads : sequence of `remap.heads.HeadSpec` or str
        The heads (a name is looked up with `remap.get_head`).
    label_names : sequence of str
        The label columns of the arrays passed to `__call__`, e.g.
        ``Dataset.label_names``.  A head whose name is not among them gets
        all-NaN (missing) rows.

    Notes
    -----
    An instance is the ``label_encoder`` of
    `remap.datasets.Dataset.to_tf`: ``dataset.to_tf(beam, 256,
    label_encoder=LabelEncoder(heads, dataset.label_names))`` streams
    ``(flux, {head: pmf})`` batches.
    """

    def __init__(self, heads, label_names):
        resolved = resolve_heads(heads, what="LabelEncoder")
        self.heads = tuple(resolved)
        self.label_names = tuple(str(n) for n in label_names)
        if len(set(self.label_names)) != len(self.label_names):
            raise ValueError(f"duplicate label names: {list(self.label_names)}")
        self.bins = {h.name: LabelBins(h) for h in self.heads}
        self.columns = {h.name: (self.label_names.index(h.name)
                                 if h.name in self.label_names else None) for h in self.heads}

    def __repr__(self):
        return (f"LabelEncoder(heads={[h.name for h in self.heads]}, "
                f"label_names={list(self.label_names)})")

    def __call__(self, labels, uncertainties=None):
        """PMF targets of ``k`` samples.

        Parameters
        ----------
        labels : array_like, shape (k, n_labels)
            Columns in the order of ``label_names``; NaN = unknown.
        uncertainties : array_like, shape (k, n_labels), optional
            Standard deviations; None, NaN or <= 0 use the head's
            ``synthetic_sigma``.

        Returns
        -------
        targets : dict
            ``head name -> (k, n_bins)`` float32 PMFs.
        """
        lab = np.asarray(labels, dtype=np.float64)
        if lab.ndim == 1 and len(self.label_names) == 1:
            lab = lab[:, None]
        if lab.ndim != 2 or lab.shape[1] != len(self.label_names):
            raise ValueError(f"labels must have shape (k, {len(self.label_names)}) for label "
                             f"columns {list(self.label_names)}; received shape {lab.shape}")
        if uncertainties is None:
            unc = np.full(lab.shape, np.nan)
        else:
            unc = np.asarray(uncertainties, dtype=np.float64)
            if unc.ndim == 1 and len(self.label_names) == 1:
                unc = unc[:, None]
            if unc.shape != lab.shape:
                raise ValueError(f"uncertainties must have the labels' shape {lab.shape}; "
                                 f"received shape {unc.shape}")
        out = {}
        for h in self.heads:
            j = self.columns[h.name]
            bins = self.bins[h.name]
            if j is None:
                out[h.name] = np.full((lab.shape[0], bins.n_bins), np.nan, dtype=np.float32)
            else:
                out[h.name] = bins.encode(lab[:, j], unc[:, j])
        return out

    def decode(self, pmfs):
        """Summaries of predicted PMFs as a table.

        Parameters
        ----------
        pmfs : dict
            ``head name -> (n, n_bins)`` PMFs (extra keys, e.g. embeddings, are
            ignored; every head of the encoder must be present).

        Returns
        -------
        table : `astropy.table.QTable`
            Columns ``{name}_median``, ``{name}_p16``, ``{name}_p84``,
            ``{name}_mean``, ``{name}_std`` per head, as Quantities in the
            head's unit.
        """
        from astropy.table import QTable

        missing = [h.name for h in self.heads if h.name not in pmfs]
        if missing:
            raise KeyError(f"no PMFs for heads {missing}; received keys {sorted(pmfs)}")
        table = QTable()
        n = None
        for h in self.heads:
            summary = self.bins[h.name].decode(np.asarray(pmfs[h.name]))
            if n is None:
                n = len(summary["median"])
            elif len(summary["median"]) != n:
                raise ValueError(f"PMFs of head {h.name!r} have {len(summary['median'])} rows; "
                                 f"expected {n} like the other heads")
            for key in ("median", "p16", "p84", "mean", "std"):
                table[f"{h.name}_{key}"] = summary[key] * h.unit
        return table


def conflate(*pmfs, return_flags=False):
    """Conflation of PMFs over the same bins (Hill & Miller 2011).

    ``p_i = Π_k pmf_k,i / Σ_j Π_k pmf_k,j``, e.g. the PMFs predicted from the
    two MARVELS beams of one star.  The product is formed in logs, so it does
    not underflow however peaked the PMFs are.

    Parameters
    ----------
    *pmfs : array_like, each of shape (n, n_bins) or (n_bins,)
        At least one.  A row containing NaN in one input (that input has no
        prediction for the star) is left out of that row's product.
    return_flags : bool
        Also return the flags below.

    Returns
    -------
    pmf : ndarray, shape (n, n_bins) (or (n_bins,) if all inputs were 1-d)
        The conflated PMFs, float64.  Rows where the inputs share no bin with
        non-zero probability (no overlap), or where every input is NaN, are NaN.
    no_overlap : ndarray of bool, shape (n,) (or scalar)
        Only with ``return_flags``: True where the inputs had no overlap.
    """
    if not pmfs:
        raise ValueError("conflate needs at least one PMF; received none")
    arrays = [np.asarray(p, dtype=np.float64) for p in pmfs]
    squeeze = all(a.ndim == 1 for a in arrays)
    arrays = [a[None, :] if a.ndim == 1 else a for a in arrays]
    shape = arrays[0].shape
    for k, a in enumerate(arrays):
        if a.ndim != 2 or a.shape != shape:
            raise ValueError(f"all PMFs must have the same shape (n, n_bins); PMF 0 has shape "
                             f"{shape}, PMF {k} has shape {a.shape}")
        if np.any(a < 0):
            raise ValueError(f"PMF {k} has negative probabilities")
    logsum = np.zeros(shape)
    present = np.zeros(shape[0], dtype=int)
    for a in arrays:
        valid = np.all(np.isfinite(a), axis=1)
        with np.errstate(divide="ignore"):
            la = np.log(np.where(valid[:, None], a, 1.0))
        logsum += la
        present += valid
    peak = logsum.max(axis=1, keepdims=True)
    no_overlap = (present > 0) & ~np.isfinite(peak[:, 0])
    ok = (present > 0) & ~no_overlap
    with np.errstate(invalid="ignore"):
        w = np.exp(logsum - np.where(ok[:, None], peak, 0.0))
    w = np.where(ok[:, None], w, np.nan)
    out = w / w.sum(axis=1, keepdims=True)
    if squeeze:
        out, no_overlap = out[0], bool(no_overlap[0])
    return (out, no_overlap) if return_flags else out
