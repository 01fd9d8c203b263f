"""remap.evaluation: metrics on hand-made PMFs, and reports of the default model."""

import io
import math

import numpy as np
import pytest
from astropy.table import QTable
from matplotlib.figure import Figure
from scipy import stats

from remap.datasets import Dataset, DatasetWriter
from remap.evaluation import (CONFLATED, METRIC_NAMES, EmbeddingMap, EvaluationError,
                              EvaluationReport, coverage, embed, evaluate,
                              parameter_metrics, pit)
from remap.heads import LOGG, TEFF
from remap.labels import LabelBins, conflate

TEFF_BINS = LabelBins(TEFF)


def one_hot(bins, k):
    """PMFs with all the mass in bin k[i] for star i."""
    p = np.zeros((len(k), bins.n_bins))
    p[np.arange(len(k)), k] = 1.0
    return p


# --------------------------------------------------------------------------- metrics by hand

def test_metrics_of_one_bin_pmfs_match_hand_computed_values():
    # all the mass in one 80 K bin: median = bin centre, p16/p84 = centre -/+ 0.34 * 80 K
    k = np.array([10, 20, 25, 30])
    centres = TEFF_BINS.centres[k]
    diff = np.array([40.0, -40.0, 120.0, 0.0])            # predicted - true
    truth = centres - diff
    m = parameter_metrics(TEFF_BINS, one_hot(TEFF_BINS, k), truth)
    assert m["n"] == 4
    assert m["bias"] == pytest.approx(30.0)                # (40 - 40 + 120 + 0) / 4
    assert m["scatter"] == pytest.approx(math.sqrt(3500.0))  # (100 + 4900 + 8100 + 900) / 4
    assert m["rms"] == pytest.approx(math.sqrt(4400.0))    # (1600 + 1600 + 14400) / 4
    # median(diff) = 20; |diff - 20| = 20, 60, 100, 20 -> median 40
    assert m["mad_scatter"] == pytest.approx(1.482602218505602 * 40.0)  # 1 / Phi^-1(3/4)
    # only the star with diff = 0 is inside centre +- 27.2 K (68 %) or +- 36 K (95 %)
    assert m["coverage_68"] == pytest.approx(0.25)
    assert m["coverage_95"] == pytest.approx(0.25)
    assert m["median_sigma"] == pytest.approx(0.68 * 80.0 / 2)
    assert set(m) == set(METRIC_NAMES)


def test_pit_of_one_bin_pmfs():
    k = np.array([10, 10, 10, 10, 10])
    lo, hi = TEFF_BINS.edges[10], TEFF_BINS.edges[11]
    truth = np.array([lo, hi, 0.5 * (lo + hi), lo + 20.0, 2000.0])
    values = pit(TEFF_BINS, one_hot(TEFF_BINS, k), truth)
    np.testing.assert_allclose(values, [0.0, 1.0, 0.5, 0.25, 0.0])
    # beyond the last edge: the whole CDF lies below the true value
    assert pit(TEFF_BINS, one_hot(TEFF_BINS, [3]), [9000.0])[0] == 1.0


def test_missing_truth_and_missing_predictions_are_left_out():
    k = np.array([10, 20, 30, 40])
    truth = TEFF_BINS.centres[k] - np.array([10.0, 20.0, 0.0, 0.0])
    pmf = one_hot(TEFF_BINS, k)
    truth[2] = np.nan
    pmf[3] = np.nan
    m = parameter_metrics(TEFF_BINS, pmf, truth)
    assert m["n"] == 2
    assert m["bias"] == pytest.approx(15.0)
    assert np.isnan(pit(TEFF_BINS, pmf, truth)[2:]).all()
    empty = parameter_metrics(TEFF_BINS, pmf[3:], truth[3:])
    assert empty["n"] == 0 and np.isnan(empty["bias"]) and np.isnan(empty["coverage_68"])


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match=r"shape \(n, 50\)"):
        parameter_metrics(TEFF_BINS, np.ones((3, 49)), np.ones(3))
    with pytest.raises(ValueError, match=r"must have shape \(3,\)"):
        pit(TEFF_BINS, np.ones((3, 50)), np.ones(4))
    with pytest.raises(ValueError, match="level must be a probability"):
        coverage(TEFF_BINS, np.ones((3, 50)), np.ones(3), 1.2)


# --------------------------------------------------------------------------- Gaussian families

def gaussian_family(n, shift=0.0, width=1.0, sigma=150.0, seed=1):
    """True T_eff, and PMFs N(truth + shift + sigma z, width * sigma) on the T_eff bins.

    With ``shift = 0`` and ``width = 1`` the family is calibrated: given the
    prediction, the truth is distributed as the PMF says (flat prior).
    """
    rng = np.random.default_rng(seed)
    truth = rng.uniform(4000.0, 6000.0, n)
    centre = truth + shift + sigma * rng.standard_normal(n)
    return truth, TEFF_BINS.encode(centre, np.full(n, width * sigma))


def test_calibrated_gaussian_family_covers_68_and_95_percent_with_flat_pit():
    truth, pmf = gaussian_family(4000)
    m = parameter_metrics(TEFF_BINS, pmf, truth)
    assert m["coverage_68"] == pytest.approx(0.68, abs=0.025)
    assert m["coverage_95"] == pytest.approx(0.95, abs=0.015)
    assert abs(m["bias"]) < 10.0                       # 3 x 150 / sqrt(4000) = 7 K
    assert m["scatter"] == pytest.approx(150.0, rel=0.05)
    assert m["mad_scatter"] == pytest.approx(150.0, rel=0.07)
    assert m["median_sigma"] == pytest.approx(150.0, rel=0.05)
    counts, _ = np.histogram(pit(TEFF_BINS, pmf, truth), bins=10, range=(0, 1))
    assert stats.chisquare(counts).pvalue > 1e-3
    for level in (0.2, 0.5, 0.9):
        assert coverage(TEFF_BINS, pmf, truth, level) == pytest.approx(level, abs=0.03)


def test_biased_family_reports_its_bias_and_undercovers():
    truth, pmf = gaussian_family(4000, shift=100.0)
    m = parameter_metrics(TEFF_BINS, pmf, truth)
    assert m["bias"] == pytest.approx(100.0, abs=10.0)
    assert m["rms"] == pytest.approx(math.hypot(100.0, 150.0), rel=0.05)
    # P(|z + 2/3| < 1) = 0.61 for a shift of 2/3 sigma
    assert m["coverage_68"] == pytest.approx(0.61, abs=0.03)
    # predicted too high: the truth sits low in the predicted CDF
    assert np.nanmean(pit(TEFF_BINS, pmf, truth)) < 0.4


def test_overconfident_family_undercovers():
    truth, pmf = gaussian_family(4000, width=0.5)
    m = parameter_metrics(TEFF_BINS, pmf, truth)
    assert m["coverage_68"] == pytest.approx(2 * stats.norm.cdf(0.5) - 1, abs=0.03)  # 0.38
    assert m["coverage_95"] < 0.75


# --------------------------------------------------------------------------- report objects

@pytest.fixture(scope="module")
def synthetic_report():
    truth_t, pmf_a = gaussian_family(300, seed=2)
    _, pmf_b = gaussian_family(300, shift=50.0, seed=3)
    rng = np.random.default_rng(4)
    truth_g = rng.uniform(3.8, 4.5, 300)
    logg_bins = LabelBins(LOGG)
    pmf_ga = logg_bins.encode(truth_g + 0.1 * rng.standard_normal(300), np.full(300, 0.1))
    pmf_gb = logg_bins.encode(truth_g + 0.1 * rng.standard_normal(300), np.full(300, 0.1))
    pmfs = {"A": {"teff": pmf_a, "logg": pmf_ga}, "B": {"teff": pmf_b, "logg": pmf_gb}}
    pmfs[CONFLATED] = {p: conflate(pmfs["A"][p], pmfs["B"][p]) for p in ("teff", "logg")}
    return EvaluationReport({"teff": TEFF_BINS, "logg": logg_bins},
                            {"teff": truth_t, "logg": truth_g}, pmfs,
                            meta={"data": "synthetic", "truth": "labels"})


def test_report_table_markdown_and_figures(synthetic_report):
    r = synthetic_report
    assert r.sources == ["A", "B", CONFLATED] and r.parameters == ["teff", "logg"]
    assert r.n_stars == 300 and r.default_source == CONFLATED
    table = r.to_table()
    assert isinstance(table, QTable) and len(table) == 6
    assert list(table.colnames) == ["source", "parameter", "label", "unit", *METRIC_NAMES]
    row = table[(table["source"] == "A") & (table["parameter"] == "teff")][0]
    assert row["bias"] == pytest.approx(r.metrics["A"]["teff"]["bias"])
    assert row["unit"] == "K" and table.meta["data"] == "synthetic"
    # conflating two independent PMFs of one star narrows it
    assert (r.metrics[CONFLATED]["teff"]["median_sigma"]
            < 0.8 * r.metrics["A"]["teff"]["median_sigma"])
    text = r.to_markdown()
    for piece in ("## Beam A", "## Beam B", "## Conflated (A + B)", "| T_eff (K) | 300 |",
                  "| log g (dex) | 300 |", "Table 1"):
        assert piece in text
    stars = r.predictions_table()
    assert len(stars) == 300 and stars["teff"].unit == "K"
    assert {"teff_true", "teff_p16", "teff_p84", "teff_pit", "teff_A", "logg_B"} <= set(
        stars.colnames)
    for fig in (r.one_to_one(), r.calibration(), r.one_to_one("B")):
        assert isinstance(fig, Figure)
        assert len(fig.axes) == 4
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=40)
        assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    legend = r.one_to_one().axes[0].get_legend().get_texts()[0].get_text()
    assert "bias" in legend and "scatter" in legend
    with pytest.raises(EvaluationError, match="no source 'C'"):
        r.one_to_one("C")


def test_report_rejects_inconsistent_inputs():
    truth, pmf = gaussian_family(10)
    with pytest.raises(ValueError, match="no true values"):
        EvaluationReport({"teff": TEFF_BINS}, {}, {"A": {"teff": pmf}})
    with pytest.raises(ValueError, match="no PMFs for parameter"):
        EvaluationReport({"teff": TEFF_BINS}, {"teff": truth}, {"A": {}})
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        EvaluationReport({"teff": TEFF_BINS}, {"teff": truth}, {"A": {"teff": pmf[:5]}})


# --------------------------------------------------------------------------- the default model

@pytest.fixture(scope="module")
def model():
    from remap.evaluation.report import resolve_model
    return resolve_model(None)


@pytest.fixture(scope="module")
def calibration_set(tmp_path_factory):
    from remap.simulate import build_simulated
    path = tmp_path_factory.mktemp("sim") / "calibration"
    build_simulated(path, "calibration", n=12, seed=0)
    return Dataset(path)


def test_report_of_default_model_on_simulated_calibration_stars(model, calibration_set):
    report = evaluate(model, calibration_set)
    assert report.sources == ["A", "B", CONFLATED]
    assert report.parameters == ["teff", "logg", "feh"]
    for s in report.sources:
        for p in report.parameters:
            m = report.metrics[s][p]
            assert m["n"] == 12
            assert 0.0 <= m["coverage_68"] <= m["coverage_95"] <= 1.0
            assert m["mad_scatter"] >= 0 and m["rms"] >= abs(m["bias"])
    # loose sanity bounds: the model must beat guessing across the domain
    conf = report.metrics[CONFLATED]
    assert abs(conf["teff"]["bias"]) < 300 and conf["teff"]["scatter"] < 350
    assert abs(conf["logg"]["bias"]) < 0.4 and conf["logg"]["scatter"] < 0.4
    assert abs(conf["feh"]["bias"]) < 0.4 and conf["feh"]["scatter"] < 0.4
    # the conflated PMF is the conflation of the beams' PMFs
    for p in report.parameters:
        np.testing.assert_allclose(report.pmfs[CONFLATED][p],
                                   conflate(report.pmfs["A"][p], report.pmfs["B"][p]))
    labels = calibration_set.labels
    np.testing.assert_allclose(report.truth["teff"], labels["teff"].value)
    true = evaluate(model, calibration_set, truth="true", beams=["A"])
    assert true.sources == ["A", CONFLATED]
    np.testing.assert_allclose(true.truth["feh"], labels["feh_true"])
    np.testing.assert_allclose(true.pmfs["A"]["teff"], report.pmfs["A"]["teff"], rtol=1e-5,
                               atol=1e-7)
    assert true.meta["truth"] == "true" and report.meta["beams"] == "A,B"
    subset = evaluate(model, calibration_set, indices=[3, 5], beams="B")
    assert subset.n_stars == 2
    np.testing.assert_allclose(subset.pmfs["B"]["logg"], report.pmfs["B"]["logg"][[3, 5]],
                               rtol=1e-5, atol=1e-7)


def write_dataset(path, grids, n, seed=0, labels=True):
    """A small data set on ``grids`` with flat spectra (or no samples for n = 0)."""
    writer = DatasetWriter(path, survey="marvels", grids=grids,
                           label_names=["teff", "logg", "feh"] if labels else ["mass"],
                           label_units=["K", "dex", "dex"] if labels else ["solMass"],
                           metadata_fields={})
    if n:
        rng = np.random.default_rng(seed)
        with writer.shard(0, n) as shard:
            shard.append(flux={b: 1.0 - 0.01 * rng.random((n, len(g))) for b, g in grids.items()},
                         labels=np.tile([5500.0, 4.3, 0.0] if labels else [1.0], (n, 1)))
        writer.finish()
    return Dataset(path)


def test_grid_beam_and_empty_set_errors(model, tmp_path):
    import astropy.units as u
    grid_a = model.wavelength("A")
    shifted = write_dataset(tmp_path / "shifted", {"A": grid_a + 0.05 * u.AA,
                                                   "B": model.wavelength("B")}, 2)
    with pytest.raises(EvaluationError,
                       match=r"the data set's beam A grid \(4301 px, 4850\.050-5280\.050 Å\) "
                             r"does not match the model's \(4301 px, 4850\.000-5280\.000 Å"):
        evaluate(model, shifted)
    coarse = write_dataset(tmp_path / "coarse", {"A": grid_a[::2]}, 2)
    with pytest.raises(EvaluationError, match="beam A grid .* does not match the model's"):
        evaluate(model, coarse)
    only_a = write_dataset(tmp_path / "only_a", {"A": grid_a}, 3)
    with pytest.raises(EvaluationError, match=r"the data set has no beam 'B'; its beams: \['A'\]"):
        evaluate(model, only_a, beams=["A", "B"])
    with pytest.raises(EvaluationError, match=r"the model has no beam 'C'"):
        evaluate(model, only_a, beams=["C"])
    one = evaluate(model, only_a)                 # the beams both have: A alone
    assert one.sources == ["A", CONFLATED] and one.metrics["A"]["teff"]["n"] == 3
    np.testing.assert_allclose(one.pmfs[CONFLATED]["teff"], one.pmfs["A"]["teff"], rtol=1e-6)
    other = write_dataset(tmp_path / "other", {"C": grid_a}, 1)
    with pytest.raises(EvaluationError, match="the data set has none of the model's beams"):
        evaluate(model, other)
    empty = write_dataset(tmp_path / "empty", {"A": grid_a}, 0)
    with pytest.raises(EvaluationError, match="is empty \\(0 samples"):
        evaluate(model, empty)
    with pytest.raises(EvaluationError, match="is empty"):
        evaluate(model, str(tmp_path / "empty"))
    with pytest.raises(EvaluationError, match="only simulated sets store the true values"):
        evaluate(model, only_a, truth="true")
    unlabelled = write_dataset(tmp_path / "mass", {"A": grid_a}, 1, labels=False)
    with pytest.raises(EvaluationError, match=r"none of the columns \['teff', 'logg', 'feh'\]"):
        evaluate(model, unlabelled)
    with pytest.raises(EvaluationError, match="truth must be 'labels'"):
        evaluate(model, only_a, truth="literature")


def test_a_beam_without_usable_pixels_falls_back_to_the_other(model, tmp_path):
    grids = {"A": model.wavelength("A"), "B": model.wavelength("B")}
    data = write_dataset(tmp_path / "gap", grids, 3)
    # rewrite star 1's beam B as all NaN and star 2's beam A with a few NaN pixels
    import h5py
    with h5py.File(data.directory / data.shards[0]["file"], "r+") as f:
        f["beams/B/flux"][1] = np.nan
        row = f["beams/A/flux"][2]
        row[100:110] = np.nan
        f["beams/A/flux"][2] = row
    data = Dataset(data.directory)
    report = evaluate(model, data)
    assert np.isnan(report.pmfs["B"]["teff"][1]).all()
    assert np.isfinite(report.pmfs["A"]["teff"][2]).all()
    np.testing.assert_allclose(report.pmfs[CONFLATED]["teff"][1], report.pmfs["A"]["teff"][1],
                               rtol=1e-6)
    assert report.metrics["B"]["teff"]["n"] == 2 and report.metrics[CONFLATED]["teff"]["n"] == 3


# --------------------------------------------------------------------------- embeddings

def test_embed_is_deterministic_for_a_seed(model, calibration_set):
    first = embed(model, calibration_set, perplexity=3, seed=5)
    again = embed(model, calibration_set, perplexity=3, seed=5)
    assert isinstance(first, EmbeddingMap)
    assert first.panels == [("teff", "teff"), ("logg", "logg"), ("feh", "feh")]
    for head in ("teff", "logg", "feh"):
        assert first.coords[head].shape == (12, 2)
        np.testing.assert_array_equal(first.coords[head], again.coords[head])
    np.testing.assert_allclose(first.labels["teff"], calibration_set.labels["teff"].value)
    one = embed(model, calibration_set, beam="B", head="logg", n=8, perplexity=2, seed=1)
    assert one.panels == [("logg", "teff"), ("logg", "logg"), ("logg", "feh")]
    assert one.coords["logg"].shape == (8, 2) and len(one.indices) == 8
    fig = one.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 6          # 3 panels + 3 colour bars


def test_embed_stored_and_errors(model, calibration_set):
    stored = embed(model, stored=True, head="teff", n=60, perplexity=10)
    assert stored.coords["teff"].shape == (60, 2)
    assert [label for _, label in stored.panels] == ["teff", "logg", "feh"]
    with pytest.raises(EvaluationError, match="perplexity 30 must be smaller than the number "
                                              "of spectra embedded \\(12\\)"):
        embed(model, calibration_set)
    with pytest.raises(EvaluationError, match="no head 'vsini'"):
        embed(model, calibration_set, head="vsini", perplexity=3)
    with pytest.raises(EvaluationError, match="no beam 'Z'"):
        embed(model, calibration_set, beam="Z", perplexity=3)
    with pytest.raises(EvaluationError, match="give a data set to embed"):
        embed(model)
