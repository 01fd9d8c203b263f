"""``remap train``: train deep-REMAP networks from a TOML configuration into a model artifact."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..exceptions import RemapError
from ..train.config import load_config

__all__ = ["train"]


@click.command("train")
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Training configuration (TOML; see configs/README.rst).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory: data sets, stage checkpoints, logs and the artifact "
                   "OUT/model.")
@click.option("--stage", type=click.Choice(["find-lr", "pretrain", "finetune", "cv", "all"]),
              default="all", show_default=True,
              help="Stage to run (earlier stages it needs are run or reused).")
@click.option("--beam", "beams", multiple=True,
              help="Beam(s) to train (repeatable; default: the configuration's beams).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Reuse finished stages and continue interrupted ones, or redo the "
                   "requested stages (data sets are always reused).")
@click.option("--verbose", "-v", count=True,
              help="Show Keras' per-epoch progress lines.")
def train(config_path, out, stage, beams, resume, verbose):
    """Train one network per beam: find-lr, pre-train, fine-tune, save the artifact.

    The stages follow Gilda (2025): a learning-rate range test, pre-training
    on synthetic spectra with cosine annealing (30 epochs x 4 cycles) and
    stochastic weight averaging, then fine-tuning on labelled survey spectra
    with layer-wise learning rates (heads 1/10, modules 1/20, 1/30, ...).
    Re-running the same command resumes an interrupted run.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # imported on use: the runner loads the data-set and simulation code; `remap --help`
    # stays fast
    from ..train.runner import run_training

    try:
        config = load_config(config_path)
        summary = run_training(config, out, stage=stage, beams=list(beams) or None,
                               resume=resume, echo=click.echo, verbose=2 if verbose else 0)
    except (RemapError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"done in {summary['seconds']:.1f} s"
               + (f"; artifact: {summary['artifact']}" if summary["artifact"] else ""))
