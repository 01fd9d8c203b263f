"""Labels <-> PMFs: encoding, decoding, the encoder of the data pipeline, conflation."""

import astropy.units as u
import numpy as np
import pytest
from scipy.stats import norm

from remap.heads import FEH, LOGG, TEFF, HeadSpec
from remap.labels import LabelBins, LabelEncoder, conflate


@pytest.fixture
def teff():
    return LabelBins.from_head(TEFF)


def test_bins_follow_the_head(teff):
    assert teff.n_bins == 50 and teff.head is TEFF
    assert teff.edges.dtype == np.float64 and teff.edges.shape == (51,)
    assert teff.edges[0] == 3000.0 and teff.edges[-1] == 7000.0
    np.testing.assert_allclose(np.diff(teff.edges), 80.0)
    np.testing.assert_allclose(teff.centres[:2], [3040.0, 3120.0])
    assert LabelBins(LOGG).n_bins == 45 and LabelBins(FEH).n_bins == 30
    # a range that is not a whole number of bins: the last edge passes `high`
    odd = LabelBins(HeadSpec("x", "x", u.dex, 0.0, 1.05, 0.1, 0.02))
    assert odd.n_bins == 11 and odd.edges[-1] == pytest.approx(1.1)
    with pytest.raises(TypeError, match="HeadSpec"):
        LabelBins("teff")


def test_encode_is_the_normalized_gaussian_cdf_difference(teff):
    pmf = teff.encode([5030.0, 4210.0], [150.0, 60.0])
    assert pmf.dtype == np.float32 and pmf.shape == (2, 50)
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-6)
    for row, (v, s) in zip(pmf, [(5030.0, 150.0), (4210.0, 60.0)]):
        # Eq. 4 of the paper with the factor 1/2 of the CDF: Phi(right) - Phi(left)
        expected = np.diff(norm.cdf(teff.edges, loc=v, scale=s))
        np.testing.assert_allclose(row, expected / expected.sum(), atol=1e-6)
    assert np.argmax(pmf[0]) == np.searchsorted(teff.edges, 5030.0) - 1


def test_missing_and_default_sigmas(teff):
    pmf = teff.encode([5000.0, np.nan, 5000.0, 5000.0, 5000.0],
                      [np.nan, 100.0, 0.0, -3.0, 20.0])
    assert np.all(np.isnan(pmf[1]))
    # NaN, 0 and negative sigmas mean "noiseless": the head's synthetic sigma (20 K)
    for k in (0, 2, 3):
        np.testing.assert_array_equal(pmf[k], pmf[4])
    np.testing.assert_array_equal(teff.encode([5000.0])[0], pmf[4])
    np.testing.assert_array_equal(teff.encode(5000.0, 20.0)[0], pmf[4])
    with pytest.raises(ValueError, match="finite or NaN"):
        teff.encode([np.inf])
    with pytest.raises(ValueError, match=r"sigmas must be .* shape \(2,\); received shape \(3,\)"):
        teff.encode([5000.0, 5100.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="1-d"):
        teff.encode(np.ones((2, 2)))


@pytest.mark.parametrize("sigma", [80.0, 160.0, 240.0])
def test_round_trip_for_broad_gaussians(teff, sigma):
    # values at least 4 sigma inside the range, so that truncation is negligible
    v = np.linspace(3000 + 4 * sigma, 7000 - 4 * sigma, 41) + 7.3
    d = teff.decode(teff.encode(v, np.full(v.size, sigma)))
    assert set(d) == {"median", "p16", "p84", "mean", "std"}
    np.testing.assert_allclose(d["median"], v, atol=2.0)
    np.testing.assert_allclose(d["mean"], v, atol=1.0)
    # the 16th/84th percentiles of a Gaussian sit at -0.994/+0.994 sigma
    np.testing.assert_allclose(d["p16"], v - 0.9945 * sigma, atol=0.13 * 80)
    np.testing.assert_allclose(d["p84"], v + 0.9945 * sigma, atol=0.13 * 80)
    np.testing.assert_allclose(d["std"], sigma, rtol=0.05)


def test_round_trip_of_synthetic_labels_and_interpolation_within_bins(teff):
    v = np.linspace(3100.0, 6900.0, 97)
    d = teff.decode(teff.encode(v))
    # sigma = 20 K is a quarter of a bin: the median stays within a quarter bin of v
    assert np.max(np.abs(d["median"] - v)) < 20.0
    assert np.all(d["p16"] < d["median"]) and np.all(d["median"] < d["p84"])
    # the quantiles are interpolated, not snapped to bin centres
    med = teff.decode(teff.encode([5033.3], [200.0]))["median"][0]
    assert abs(med - 5033.3) < 2.0
    assert np.min(np.abs(teff.centres - med)) > 5.0
    # a one-hot PMF: the median is the bin centre, the 16/84 % points inside the bin
    one = np.zeros(50)
    one[20] = 1.0
    d = teff.decode(one)
    assert d["median"][0] == pytest.approx(teff.centres[20])
    assert d["p16"][0] == pytest.approx(teff.edges[20] + 0.16 * 80)
    assert d["p84"][0] == pytest.approx(teff.edges[20] + 0.84 * 80)
    assert d["std"][0] == 0.0


def test_edge_piling(teff):
    pmf = teff.encode([7030.0, 2900.0, 1e6, -1e6], [20.0, 20.0, 20.0, 20.0])
    assert np.all(np.isfinite(pmf))
    np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-6)
    assert np.argmax(pmf[0]) == 49 and pmf[0, 49] > 0.99
    assert np.argmax(pmf[1]) == 0 and pmf[1, 0] > 0.99
    # far outside, the whole mass lands in the edge bin (computed in logs: no 0/0)
    assert pmf[2, 49] == pytest.approx(1.0) and pmf[3, 0] == pytest.approx(1.0)
    d = teff.decode(pmf)
    assert 6920.0 < d["median"][2] < 7000.0 and 3000.0 < d["median"][3] < 3080.0


def test_decode_normalizes_and_propagates_nan(teff):
    pmf = teff.encode([4500.0, 5500.0], [120.0, 120.0]).astype(np.float64)
    scaled = pmf * np.array([[3.0], [0.5]])
    for key in ("median", "p16", "p84", "mean", "std"):
        np.testing.assert_allclose(teff.decode(scaled)[key], teff.decode(pmf)[key])
    bad = np.vstack([pmf[0], np.full(50, np.nan), np.zeros(50)])
    d = teff.decode(bad)
    for key in d:
        assert np.isfinite(d[key][0]) and np.isnan(d[key][1]) and np.isnan(d[key][2])
    with pytest.raises(ValueError, match=r"shape \(n, 50\) or \(50,\); received shape \(2, 49\)"):
        teff.decode(np.ones((2, 49)))
    with pytest.raises(ValueError, match="q=1.5"):
        teff.quantile(pmf, 1.5)


def test_cost_vector(teff):
    pmf = teff.encode([5000.0], [100.0])
    np.testing.assert_allclose(teff.cost(pmf), 1.0 - pmf)


def test_label_encoder_picks_columns_by_name():
    enc = LabelEncoder([TEFF, "logg", FEH], ["feh", "teff", "alpha"])
    labels = np.array([[-0.5, 5000.0, 0.1], [np.nan, 4500.0, 0.0]])
    unc = np.array([[0.1, 80.0, 0.0], [np.nan, np.nan, 0.0]])
    out = enc(labels, unc)
    assert list(out) == ["teff", "logg", "feh"]
    np.testing.assert_array_equal(out["teff"], LabelBins(TEFF).encode([5000.0, 4500.0],
                                                                      [80.0, np.nan]))
    np.testing.assert_array_equal(out["feh"][0], LabelBins(FEH).encode([-0.5], [0.1])[0])
    assert np.all(np.isnan(out["feh"][1]))
    # logg is not a label column: all rows missing
    assert out["logg"].shape == (2, 45) and np.all(np.isnan(out["logg"]))
    assert all(v.dtype == np.float32 for v in out.values())
    # without uncertainties every head uses its synthetic sigma
    np.testing.assert_array_equal(enc(labels)["teff"], LabelBins(TEFF).encode([5000.0, 4500.0]))
    with pytest.raises(ValueError, match=r"shape \(k, 3\).*received shape \(2, 2\)"):
        enc(labels[:, :2])
    with pytest.raises(ValueError, match="uncertainties"):
        enc(labels, unc[:, :2])
    with pytest.raises(ValueError, match="duplicate head"):
        LabelEncoder([TEFF, TEFF], ["teff"])
    with pytest.raises(TypeError, match="HeadSpec"):
        LabelEncoder([3], ["teff"])


def test_label_encoder_decode_table():
    enc = LabelEncoder([TEFF, LOGG], ["teff", "logg"])
    targets = enc(np.array([[5000.0, 4.4], [6000.0, 3.9]]), np.array([[150.0, 0.3]] * 2))
    table = enc.decode({**targets, "teff_embedding": np.zeros((2, 8))})
    assert table.colnames == [f"{h}_{k}" for h in ("teff", "logg")
                              for k in ("median", "p16", "p84", "mean", "std")]
    assert table["teff_median"].unit == u.K and table["logg_p84"].unit == u.dex
    np.testing.assert_allclose(table["teff_median"].value, [5000.0, 6000.0], atol=2.0)
    np.testing.assert_allclose(table["logg_median"].value, [4.4, 3.9], atol=0.01)
    with pytest.raises(KeyError, match="logg"):
        enc.decode({"teff": targets["teff"]})


def test_conflation_of_identical_gaussians_narrows_by_sqrt2(teff):
    p = teff.encode([5000.0, 4400.0], [200.0, 300.0])
    c = conflate(p, p)
    np.testing.assert_allclose(c.sum(axis=1), 1.0)
    d, d1 = teff.decode(c), teff.decode(p)
    np.testing.assert_allclose(d["median"], [5000.0, 4400.0], atol=1.0)
    np.testing.assert_allclose(d["std"] / d1["std"], 1 / np.sqrt(2), rtol=0.01)
    # two different Gaussians: the precision-weighted mean (Hill & Miller 2011)
    a, b = teff.encode([4800.0], [200.0]), teff.encode([5200.0], [200.0])
    assert teff.decode(conflate(a, b))["mean"][0] == pytest.approx(5000.0, abs=1.0)
    # 1-d in, 1-d out
    assert conflate(a[0], b[0]).shape == (50,)


def test_conflation_is_safe_from_underflow_and_flags_disjoint_beams(teff):
    p = teff.encode([5000.0], [300.0]).astype(np.float64)
    many = conflate(*([p] * 400))  # a product of 400 PMFs underflows in linear space
    assert np.all(np.isfinite(many)) and many.sum() == pytest.approx(1.0)
    assert teff.decode(many)["median"][0] == pytest.approx(5000.0, abs=1.0)
    a = teff.encode([3100.0, 5000.0], [10.0, 100.0])
    b = teff.encode([6900.0, 5050.0], [10.0, 100.0])
    c, flags = conflate(a, b, return_flags=True)
    assert flags.tolist() == [True, False]
    assert np.all(np.isnan(c[0])) and np.all(np.isfinite(c[1]))
    # a beam without a prediction (NaN row) is left out of the product
    b[1] = np.nan
    c, flags = conflate(a, b, return_flags=True)
    np.testing.assert_allclose(c[1], a[1] / a[1].sum(), rtol=1e-6, atol=1e-12)
    assert not flags[1]
    with pytest.raises(ValueError, match="same shape"):
        conflate(a, b[:, :10])
    with pytest.raises(ValueError, match="at least one"):
        conflate()
    with pytest.raises(ValueError, match="negative"):
        conflate(a, -a)
