"""Tests of remap.inference.result: FitResult / ParameterResult / Flag, from known arrays."""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable
from matplotlib.figure import Figure

from remap.model import Neighbours
from remap.inference.flags import EDGE_MASS, Flag
from remap.inference.result import FitResult, ParameterResult

HEADS = [{"name": "teff", "label": "T_eff", "unit": "K",
          "edges": 3000.0 + 80.0 * np.arange(51)},
         {"name": "feh", "label": "[Fe/H]", "unit": "dex",
          "edges": -2.0 + 0.1 * np.arange(31)}]


def _gauss(edges, mu, sigma):
    c = 0.5 * (edges[:-1] + edges[1:])
    p = np.exp(-0.5 * ((c - mu) / sigma) ** 2)
    return p / p.sum()


def make_result(n=3, is_batch=True, k=2):
    pmfs, summaries, beam_pmfs = {}, {}, {}
    for h, (mus, sigma) in zip(HEADS, [([5000.0, 5500.0, 6000.0], 100.0),
                                       ([-0.5, 0.0, 0.2], 0.2)]):
        e = np.asarray(h["edges"])
        p = np.stack([_gauss(e, m, sigma) for m in mus[:n]])
        pmfs[h["name"]] = p
        summaries[h["name"]] = {"median": np.array(mus[:n]), "p16": np.array(mus[:n]) - sigma,
                                "p84": np.array(mus[:n]) + sigma, "mean": np.array(mus[:n]),
                                "std": np.full(n, sigma)}
        b = p.copy()
        b[-1] = np.nan
        beam_pmfs[h["name"]] = {"A": p.copy(), "B": b}
    idx = np.arange(n * k).reshape(n, k)
    idx[-1] = -1
    dist = np.where(idx >= 0, 0.5, np.nan)
    labels = np.where(idx[..., None] >= 0, np.ones((n, k, 2)) * [5100.0, 0.1], np.nan)
    nb = {"A": {"teff": Neighbours(idx, dist, labels, ["teff", "feh"])},
          "B": {"teff": Neighbours(idx, dist, labels, ["teff", "feh"])}}
    flags = np.zeros(n, dtype=np.int64)
    flags[-1] = Flag.MISSING_BEAM | Flag.LOW_SNR
    beams_used = [("A", "B")] * (n - 1) + [("A",)]
    snr = {"A": np.full(n, 100.0), "B": np.r_[np.full(n - 1, 90.0), np.nan]}
    masked = {"A": np.zeros(n), "B": np.r_[np.zeros(n - 1), np.nan]}
    return FitResult(heads=HEADS, pmfs=pmfs, summaries=summaries, beam_pmfs=beam_pmfs,
                     beams=["A", "B"], beams_used=beams_used, snr=snr, masked_fraction=masked,
                     neighbours=nb, flags=flags,
                     messages=[""] * (n - 1) + ["beam B not covered"], is_batch=is_batch,
                     meta={"model": "/m/default", "model_name": "default"},
                     timings={"split": 0.1})


def test_batch_accessors_have_units_and_shapes():
    r = make_result()
    assert len(r) == 3 and r.is_batch
    assert r.parameters == ["teff", "feh"]
    teff = r["teff"]
    assert isinstance(teff, ParameterResult)
    assert r.teff.median.unit == u.K and r.teff.median.shape == (3,)
    assert r.feh.p84.unit == u.dex
    np.testing.assert_allclose(r.teff.median.value, [5000, 5500, 6000])
    assert r.teff.pmf.shape == (3, 50)
    assert r.teff.bin_edges.shape == (51,) and r.teff.bin_edges.unit == u.K
    np.testing.assert_allclose(r.teff.bin_centers.value[:2], [3040, 3120])
    assert set(r.teff.beam_pmfs) == {"A", "B"}
    assert np.isnan(r.teff.beam_pmfs["B"][2]).all()
    assert r.flags.tolist() == [0, 0, int(Flag.MISSING_BEAM | Flag.LOW_SNR)]
    assert r.flag_names(2) == ["MISSING_BEAM", "LOW_SNR"]
    assert r.flag_names(-1) == r.flag_names(2)
    assert r.snr["A"].shape == (3,)


def test_single_star_accessors_are_scalars():
    r = make_result()[1]
    assert not r.is_batch and len(r) == 1
    assert r.teff.median.isscalar and r.teff.median == 5500 * u.K
    assert r.teff.pmf.shape == (50,)
    assert r.teff.beam_pmfs["A"].shape == (50,)
    assert isinstance(r.flags, int) and r.flags == 0
    assert isinstance(r.snr["B"], float) and r.snr["B"] == 90.0
    assert r.neighbours["A"]["teff"].indices.shape == (2,)
    assert "5500" in repr(r.teff)


def test_indexing_slicing_and_iteration():
    r = make_result()
    stars = list(r)
    assert len(stars) == 3 and all(not s.is_batch for s in stars)
    assert [s.teff.median.value for s in stars] == [5000, 5500, 6000]
    part = r[1:]
    assert part.is_batch and len(part) == 2
    assert part.beams_used == [("A", "B"), ("A",)]
    assert part.messages[-1] == "beam B not covered"
    with pytest.raises(IndexError, match="out of range"):
        r[3]
    with pytest.raises(KeyError, match="no parameter 'logg'"):
        r["logg"]
    with pytest.raises(AttributeError):
        r.logg
    assert "teff" in dir(r)


def test_single_result_requires_one_row():
    with pytest.raises(ValueError, match="exactly one row"):
        make_result(is_batch=False)


def test_to_table_columns_units_and_meta():
    r = make_result()
    t = r.to_table()
    assert isinstance(t, QTable) and len(t) == 3
    expected = ["teff", "teff_p16", "teff_p84", "teff_mean", "teff_std",
                "feh", "feh_p16", "feh_p84", "feh_mean", "feh_std",
                "flags", "flag_names", "beams", "snr_A", "snr_B", "message"]
    assert t.colnames == expected
    assert t["teff"].unit == u.K and t["feh_std"].unit == u.dex
    assert t["flag_names"][2] == "MISSING_BEAM,LOW_SNR"
    assert t["beams"].tolist() == ["A,B", "A,B", "A"]
    assert np.isnan(t["snr_B"][2])
    assert t.meta["model_name"] == "default"
    assert len(t.meta["bin_edges"]["teff"]) == 51
    assert t.meta["flag_bits"]["NO_COVERAGE"] == int(Flag.NO_COVERAGE)
    tp = r.to_table(pmfs=True)
    assert tp["teff_pmf"].shape == (3, 50) and tp["feh_pmf"].shape == (3, 30)
    np.testing.assert_allclose(tp["teff_pmf"].sum(axis=1), 1.0)


def test_table_round_trips_through_ecsv(tmp_path):
    t = make_result().to_table()
    t.write(tmp_path / "r.ecsv")
    back = QTable.read(tmp_path / "r.ecsv")
    assert back["teff"].unit == u.K
    np.testing.assert_allclose(back["teff"].value, t["teff"].value)


def test_neighbour_table_lists_used_beams_only():
    r = make_result()
    t = r.neighbour_table(0)
    assert len(t) == 2 * 1 * 2  # beams x heads x k
    assert t["rank"].tolist() == [1, 2, 1, 2]
    assert t["teff"].unit == u.K and t["feh"].unit == u.dex
    t2 = r.neighbour_table(2)
    assert set(t2["beam"]) == {"A"}
    with pytest.raises(KeyError):
        r.neighbour_table(0, head="logg")


def test_plot_returns_figure_with_one_panel_per_parameter():
    r = make_result()
    fig = r.plot(1)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert fig.axes[0].get_xlabel() == "T_eff [K]"
    assert fig.axes[1].get_xlabel() == "[Fe/H] [dex]"
    fig2 = Figure()
    axes = fig2.subplots(1, 2)
    assert r.plot(0, ax=axes) is fig2
    with pytest.raises(ValueError, match="2 axes"):
        r.plot(0, ax=axes[:1])


def test_flag_enum():
    assert Flag.NO_COVERAGE & (Flag.NO_COVERAGE | Flag.MASKED)
    assert len({int(f) for f in Flag}) == len(Flag) == 11
    assert [int(f) for f in Flag] == [2 ** i for i in range(11)]
    assert 0 < EDGE_MASS < 1
