"""``remap demo``: the default model on simulated calibration stars, end to end.

The demo simulates the 30 calibration stars of the simulated MARVELS-like
survey (:func:`remap.simulate.simulated_stars`: raw spectra with spikes, noise,
continuum distortions and the "synthetic gap"), fits them with
:func:`remap.fit` (the whole pipeline: split, spikes, resampling, continuum,
both networks, conflation) and compares the results with the true labels in a
table shaped like Table 1 of Gilda (2025), next to the paper's numbers.  It
compares twice: with the true labels, and with the simulated catalogue labels
(true labels plus errors of 80 K, 0.1 dex and 0.1 dex), which is how the
paper's numbers were measured (against reference labels with errors of their
own).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import numpy as np
from astropy.table import QTable

from .._util.fs import atomic_path
from ..exceptions import RemapError
from ..model.cache import resolve_model as _resolve_model

__all__ = ["PAPER_TABLE1", "PAPER_CITATION", "demo", "run_demo", "summarize",
           "format_table", "one_to_one_figure"]

#: Gilda (2025), Table 1: bias and scatter on the 30 MARVELS calibration stars
#: (both beams conflated), per parameter, in K or dex.
PAPER_TABLE1 = {"teff": (-10.0, 75.0), "logg": (0.02, 0.12), "feh": (-0.01, 0.08)}

#: Where the paper's numbers come from.
PAPER_CITATION = ("Gilda, S. 2025, MNRAS, deep-REMAP, Table 1 (30 MARVELS calibration stars, "
                  "both beams conflated)")


def summarize(result, truth):
    """Bias, scatter and 16-84 % coverage per parameter.

    Parameters
    ----------
    result : `remap.FitResult`
        A batch.
    truth : dict of str to array_like
        True label per parameter, one value per star.

    Returns
    -------
    rows : list of dict
        Per parameter: ``name``, ``label``, ``unit``, ``n`` (stars with a
        result), ``bias`` (mean of predicted median - truth), ``scatter``
        (standard deviation of the differences), ``coverage`` (fraction of
        stars whose true value lies between the 16th and 84th percentiles;
        nominally 0.68).
    """
    rows = []
    for name in result.parameters:
        p = result[name]
        med = np.atleast_1d(p.median.value)
        p16 = np.atleast_1d(p.p16.value)
        p84 = np.atleast_1d(p.p84.value)
        true = np.asarray(truth[name], dtype=float)
        ok = np.isfinite(med) & np.isfinite(true)
        diff = med[ok] - true[ok]
        inside = (true[ok] >= p16[ok]) & (true[ok] <= p84[ok])
        rows.append({"name": name, "label": p.label, "unit": p.unit.to_string(),
                     "n": int(ok.sum()),
                     "bias": float(diff.mean()) if ok.any() else float("nan"),
                     "scatter": float(diff.std()) if ok.any() else float("nan"),
                     "coverage": float(inside.mean()) if ok.any() else float("nan")})
    return rows


def _fmt(value, unit, signed=False):
    digits = 0 if unit == "K" else 3
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return f"{text} {unit}"


def format_table(rows):
    """The Table-1-style comparison as text (one line per parameter)."""
    header = ("parameter", "n", "bias", "scatter", "16-84% coverage", "paper bias",
              "paper scatter")
    body = []
    for r in rows:
        paper = PAPER_TABLE1.get(r["name"])
        body.append((r["label"], str(r["n"]), _fmt(r["bias"], r["unit"], True),
                     _fmt(r["scatter"], r["unit"]), f"{r['coverage']:.0%}",
                     _fmt(paper[0], r["unit"], True) if paper else "-",
                     _fmt(paper[1], r["unit"]) if paper else "-"))
    widths = [max(len(x[i]) for x in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(line, widths))).rstrip()
             for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def one_to_one_figure(result, truth):
    """Predicted vs true labels with 16/84 % error bars, and residuals (paper Fig. 4 style).

    Returns
    -------
    figure : `matplotlib.figure.Figure`
    """
    from matplotlib.figure import Figure

    names = result.parameters
    fig = Figure(figsize=(4.0 * len(names), 6.0), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False, sharex="col",
                        gridspec_kw={"height_ratios": [3, 1]})
    for col, name in enumerate(names):
        p = result[name]
        med = np.atleast_1d(p.median.value)
        lo = med - np.atleast_1d(p.p16.value)
        hi = np.atleast_1d(p.p84.value) - med
        true = np.asarray(truth[name], dtype=float)
        unit = p.unit.to_string()
        top, bottom = axes[0, col], axes[1, col]
        top.errorbar(true, med, yerr=[lo, hi], fmt="o", ms=3, lw=0.8, color="C0")
        ok = np.isfinite(med)
        if ok.any():
            span = [min(true[ok].min(), med[ok].min()), max(true[ok].max(), med[ok].max())]
            top.plot(span, span, color="k", lw=0.8)
        top.set_ylabel(f"predicted {p.label} [{unit}]")
        bottom.errorbar(true, med - true, yerr=[lo, hi], fmt="o", ms=3, lw=0.8, color="C0")
        bottom.axhline(0.0, color="k", lw=0.8)
        bottom.set_xlabel(f"true {p.label} [{unit}]")
        bottom.set_ylabel(f"Δ [{unit}]")
    return fig


def run_demo(out="remap-demo", n=30, seed=0, model=None, echo=print):
    """Simulate, fit, compare and write the figures; what ``remap demo`` does.

    Parameters
    ----------
    out : str or path
        Output directory (created).
    n : int
        Number of calibration stars (the paper has 30).
    seed : int
        Root seed of the simulated survey.
    model : None, str or path
        Model artifact (default: the shipped one).
    echo : callable
        Where progress lines and the table go.

    Returns
    -------
    summary : dict
        ``rows`` (see :func:`summarize`; against the true labels),
        ``rows_catalogue`` (against the catalogue labels, i.e. the true ones
        plus the simulated label errors), ``result`` (`remap.FitResult`),
        ``truth``, ``catalogue``, ``files`` and ``seconds``.
    """
    # imported on use: the inference pipeline and the simulator take ~1 s to load;
    # `remap --help` stays fast
    from ..inference import fit
    from ..simulate import simulated_stars

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = _resolve_model(model)
    echo(f"model: {model.path} (survey {model.survey!r}, beams {', '.join(model.beams)})")
    echo(f"simulating {n} calibration stars (seed {seed}) ...")
    spectra, truth = [], {"teff": [], "logg": [], "feh": []}
    catalogue = {key: [] for key in truth}
    for raw, labels in simulated_stars("calibration", n=n, seed=seed, survey=model.survey):
        spectra.append(raw)
        for key in truth:
            truth[key].append(labels[key])
            catalogue[key].append(labels[f"{key}_obs"])
    echo("fitting them with remap.fit (split, spikes, resample, continuum, networks, "
         "conflation) ...")
    result = fit(spectra, model=model)
    rows = summarize(result, truth)
    rows_catalogue = summarize(result, catalogue)
    echo("")
    echo(f"{n} simulated calibration stars vs their true labels:")
    echo(format_table(rows))
    echo("")
    echo("the same vs catalogue labels with errors of 80 K, 0.1 dex, 0.1 dex (like the "
         "paper's reference labels):")
    echo(format_table(rows_catalogue))
    echo(f"paper: {PAPER_CITATION}")
    flagged = int(np.count_nonzero(result.flags))
    echo(f"flagged stars: {flagged} of {n}")

    files = {}
    table = result.to_table()
    for key, values in truth.items():
        table[f"{key}_true"] = np.asarray(values) * table[key].unit
        table[f"{key}_catalogue"] = np.asarray(catalogue[key]) * table[key].unit
    table = QTable(table)
    files["results"] = out / "demo_results.ecsv"
    with atomic_path(files["results"], suffix=".ecsv") as tmp:
        table.write(tmp, format="ascii.ecsv")
    files["one_to_one"] = out / "one_to_one.png"
    with atomic_path(files["one_to_one"], suffix=".png") as tmp:
        one_to_one_figure(result, truth).savefig(tmp, format="png", dpi=100)
    files["pmf"] = out / "pmf_star0.png"
    with atomic_path(files["pmf"], suffix=".png") as tmp:
        result.plot(0).savefig(tmp, format="png", dpi=100)
    seconds = time.perf_counter() - start
    echo(f"wrote {', '.join(os.fspath(p) for p in files.values())}")
    echo(f"done in {seconds:.1f} s")
    return {"rows": rows, "rows_catalogue": rows_catalogue, "result": result,
            "truth": truth, "catalogue": catalogue, "files": files, "seconds": seconds}


@click.command("demo")
@click.option("--out", "out", default="remap-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the figures and the results table.")
@click.option("--n", "n", default=30, show_default=True, type=click.IntRange(min=1),
              help="Number of simulated calibration stars (the paper has 30).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the simulated survey.")
@click.option("--model", "model", default=None,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Model artifact directory (default: the model shipped with remap).")
def demo(out, n, seed, model):
    """Run the default model on simulated calibration stars and compare with the paper.

    Simulates the calibration stars of a MARVELS-like survey (raw spectra),
    fits them with the whole remap pipeline, prints bias, scatter and the
    coverage of the 16-84 % intervals per parameter next to Gilda (2025),
    Table 1, and writes one_to_one.png, pmf_star0.png and demo_results.ecsv.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        run_demo(out=out, n=n, seed=seed, model=model, echo=click.echo)
    except (RemapError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
