"""``remap evaluate`` and ``remap embed``: a model against labelled spectra, and its embeddings."""

from __future__ import annotations

import os
from pathlib import Path

import click
import numpy as np

from .._util.fs import atomic_path
from ..exceptions import RemapError
from ..model.cache import resolve_model

__all__ = ["evaluate_cmd", "embed_cmd", "parse_rows"]

#: Files written by ``remap evaluate`` into its output directory.
REPORT_FILES = ("report.ecsv", "report.md", "predictions.ecsv", "one_to_one.png",
                "calibration.png")


def parse_rows(text):
    """``"START:STOP"`` (either end may be empty) -> a `slice` of data-set rows.

    Raises
    ------
    click.BadParameter
        Not of that form, or negative numbers.
    """
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        a = int(start) if start.strip() else None
        b = int(stop) if stop.strip() else None
    except ValueError:
        raise click.BadParameter(f"expected START:STOP (e.g. 1000: or 0:500), got {text!r}",
                                 param_hint="--rows") from None
    if (a is not None and a < 0) or (b is not None and b < 0):
        raise click.BadParameter(f"row numbers must be >= 0, got {text!r}", param_hint="--rows")
    return slice(a, b)


def _model(path):
    return resolve_model(path)


#: An existing directory: a model artifact or a data set.
_EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)

#: ``--model`` of ``remap evaluate`` and ``remap embed``.
_MODEL_OPTION = click.option(
    "--model", "model_path", default=None, type=_EXISTING_DIR,
    help="Model artifact directory [default: the default model shipped with remap].")


def _save_figure(fig, path, dpi=120):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)


@click.command("evaluate")
@_MODEL_OPTION
@click.option("--data", "data_path", required=True, type=_EXISTING_DIR,
              help="Labelled data set (remap dataset simulate / build, or your own).")
@click.option("-o", "--out", "out", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for the report (created if needed).")
@click.option("--beam", "beams", multiple=True,
              help="Beam(s) to use and conflate (repeatable; default: all the model's beams).")
@click.option("--truth", type=click.Choice(["labels", "true"]), default="labels",
              show_default=True,
              help="Compare with the data set's labels, or with the noiseless true values "
                   "stored by simulated sets.")
@click.option("--rows", "rows", default=None, metavar="START:STOP",
              help="Evaluate only these rows of the data set, e.g. 1000: for the stars after "
                   "the first 1000.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Spectra per forward pass.")
def evaluate_cmd(model_path, data_path, out, beams, truth, rows, batch_size):
    """Bias, scatter, coverage and figures of a model on labelled spectra.

    Predicts every star of the data set with each beam's network, conflates
    the beams' PMFs, and compares the median and the 16th-84th percentiles with
    the labels (Gilda 2025, Table 1 and Fig. 4).  Writes into OUT:
    report.ecsv and report.md (metrics per beam and conflated),
    predictions.ecsv (one row per star), one_to_one.png and calibration.png
    (coverage of the central intervals and PIT histograms), and prints the
    tables.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # imported on use: it loads h5py and the data-set code; `remap --help` stays fast
    from ..evaluation.report import evaluate, resolve_dataset
    try:
        data = resolve_dataset(data_path)
        model = _model(model_path)
        indices = None
        if rows is not None:
            indices = np.arange(len(data))[parse_rows(rows)]
            if indices.size == 0:
                raise click.BadParameter(f"{rows!r} selects no row of a data set of "
                                         f"{len(data)}", param_hint="--rows")
        report = evaluate(model, data, beams=list(beams) or None, batch_size=batch_size,
                          truth=truth, indices=indices)
    except (RemapError, ValueError, TypeError) as exc:
        if isinstance(exc, click.ClickException):
            raise
        raise click.ClickException(str(exc)) from exc
    report.meta["title"] = f"remap evaluate: {data.directory.name}"
    if rows is not None:
        report.meta["rows"] = rows
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "report.ecsv") as tmp:
        report.to_table().write(tmp, format="ascii.ecsv")
    with atomic_path(out / "predictions.ecsv") as tmp:
        report.predictions_table().write(tmp, format="ascii.ecsv")
    markdown = report.to_markdown()
    with atomic_path(out / "report.md") as tmp:
        Path(tmp).write_text(markdown, encoding="utf-8")
    _save_figure(report.one_to_one(), out / "one_to_one.png")
    _save_figure(report.calibration(), out / "calibration.png")
    click.echo(markdown.rstrip())
    click.echo(f"\nwrote {', '.join(REPORT_FILES)} to {out}")


@click.command("embed")
@_MODEL_OPTION
@click.option("--data", "data_path", default=None, type=_EXISTING_DIR,
              help="Data set whose spectra are embedded (required unless --stored).")
@click.option("-o", "--out", "out", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Figure file (PNG, or another format by its suffix).")
@click.option("--beam", default=None, help="Beam whose network embeds [default: the first].")
@click.option("--head", default=None,
              help="Map this head's embedding space, one panel per label.  Default: each "
                   "head's space coloured by its own label (Gilda 2025, Figs. 2-3).")
@click.option("--n", "n", type=click.IntRange(min=2), default=2000, show_default=True,
              help="At most this many spectra (a seeded random subset).")
@click.option("--perplexity", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="t-SNE perplexity (smaller than the number of spectra).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the subset and of t-SNE: the same seed gives the same map.")
@click.option("--stored", is_flag=True,
              help="Embed the training-set embeddings stored in the model artifact instead "
                   "of a data set.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Spectra per forward pass.")
def embed_cmd(model_path, data_path, out, beam, head, n, perplexity, seed, stored, batch_size):
    """t-SNE map of a network's embeddings, coloured by the labels.

    Projects the embedding sub-heads' outputs of a data set's spectra (or,
    with --stored, the training spectra stored in the model) to two
    dimensions with scikit-learn's t-SNE, like Gilda (2025), Figs. 2-3: well
    separated, ordered colours mean the network has organized its embedding
    space by that parameter.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # imported on use: it loads h5py and the data-set code; `remap --help` stays fast
    from ..evaluation import embed, resolve_dataset
    if stored and data_path is not None:
        raise click.UsageError("give either --data or --stored, not both")
    if not stored and data_path is None:
        raise click.UsageError("give --data DATASET (or --stored for the model's stored "
                               "training embeddings)")
    try:
        data = None if data_path is None else resolve_dataset(data_path)
        result = embed(_model(model_path), data, beam=beam, head=head, n=n,
                       perplexity=perplexity, seed=seed, stored=stored, batch_size=batch_size)
    except (RemapError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    _save_figure(result.plot(), out)
    panels = ", ".join(space if space == label else f"{space}/{label}"
                       for space, label in result.panels)
    click.echo(f"embedded {len(result.indices)} spectra of beam {result.meta['beam']} "
               f"(perplexity {perplexity:g}, seed {seed}); panels: {panels}; wrote {out}")
