"""``remap dataset``: build, simulate and inspect on-disk training sets."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import click

from .._util.json import jsonable
from ..exceptions import RemapError
from ..plugins import get_library, get_survey

__all__ = ["dataset", "parse_options"]


def parse_options(pairs, what="option"):
    """Turn ``("key=value", ...)`` into a dict; values are Python literals or strings.

    ``resolution=20000`` gives an int, ``wave_range=(4850, 5750)`` a tuple,
    ``directory=/data/phoenix`` a string.

    Raises
    ------
    click.BadParameter
        An item has no ``=`` or an empty key.
    """
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint=what)
        try:
            out[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key] = value.strip()
    return out


@click.group("dataset")
def dataset():
    """Build and inspect on-disk training sets (HDF5 shards + manifest.json)."""


@dataset.command("build")
@click.option("--library", "library_name", required=True,
              help="Synthetic library plugin, e.g. linelist or phoenix.")
@click.option("--survey", "survey_name", default="marvels", show_default=True,
              help="Survey whose beams and grids the spectra are brought to.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (created; an interrupted build there is resumed).")
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help="Draw N label points uniformly (seeded) within the library domain.")
@click.option("--grid", "use_grid", is_flag=True,
              help="Use the library's grid points instead of random draws.")
@click.option("--vary-alpha", is_flag=True,
              help="With --n, draw [alpha/Fe] within the domain too (default: 0).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Root seed of the label draws and the noise.")
@click.option("--shard-size", type=click.IntRange(min=1), default=20, show_default=True,
              help="Label points per shard (each gives 45 spectra by default).")
@click.option("--beam", "beams", multiple=True, help="Beam(s) to build (default: all).")
@click.option("--library-option", "library_options", multiple=True, metavar="KEY=VALUE",
              help="Option passed to the library, e.g. resolution=50000 (repeatable).")
@click.option("--fitter", default="algorithm1", show_default=True,
              help="Continuum fitter for the normalization; 'none' to skip it.")
@click.option("--fitter-option", "fitter_options", multiple=True, metavar="KEY=VALUE",
              help="Option passed to the continuum fitter (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes computing label points in parallel (same result for any value).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Compute the shards on the Dask cluster of this scheduler "
                   "(e.g. tcp://host:8786); same result as a local build.")
@click.option("--vmicro-sigma", type=click.FloatRange(0.0, 5.0), default=0.0, show_default=True,
              help="Microturbulence as a nuisance dimension: Gaussian draw (km/s) added to "
                   "the library's value at each label point (linelist library).")
@click.option("--overwrite", is_flag=True, help="Replace a different data set in --out.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar.")
def build_cmd(library_name, survey_name, out, n, use_grid, vary_alpha, seed, shard_size, beams,
              library_options, fitter, fitter_options, workers, scheduler, vmicro_sigma,
              overwrite, progress):
    """Build a synthetic training set: library -> augment (45 per label point) -> shards.

    Every label point is down-convolved to R = 10,000, 11,000 and 12,000,
    resampled onto each beam's grid, given 5 noise levels x 3 draws and
    continuum-normalized (Gilda 2025, §3.3).  Re-running the same command
    after an interruption resumes it: complete shards are verified and kept.
    """
    # imported on use: it loads h5py and the data-set code; `remap --help` stays fast
    from ..datasets import build_synthetic, draw_labels, grid_labels

    if (n is None) == (not use_grid):
        raise click.UsageError("give exactly one of --n N and --grid")
    if scheduler is not None and workers > 1:
        raise click.UsageError("give --scheduler (a Dask cluster) or --workers (local "
                               "processes), not both")
    lib_opts = parse_options(library_options, "--library-option")
    fit_opts = parse_options(fitter_options, "--fitter-option")
    fitter_name = None if fitter.lower() == "none" else fitter
    client = None
    try:
        library = get_library(library_name, **lib_opts)
        survey = get_survey(survey_name)
        labels = (grid_labels(library) if use_grid else
                  draw_labels(library.domain, n, seed, vary_alpha=vary_alpha))
        if scheduler is not None:
            client = _connect(scheduler)
        summary = build_synthetic(
            out, library, survey, labels, seed=seed, shard_size=shard_size,
            beams=list(beams) or None, fitter=fitter_name, fitter_options=fit_opts,
            overwrite=overwrite, progress=progress, workers=workers, client=client,
            vmicro_sigma=vmicro_sigma,
            config={"library_options": jsonable(lib_opts, default=str),
                    "labels": "grid" if use_grid else "uniform",
                    "vary_alpha": bool(vary_alpha)})
    except (RemapError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if client is not None:
            client.close()
    _echo_summary(out, summary)


def _connect(scheduler):
    """A `distributed.Client` for the scheduler at ``scheduler``, or a ClickException."""
    from distributed import Client
    try:
        return Client(scheduler, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise click.ClickException(f"cannot connect to the Dask scheduler at {scheduler!r}: "
                                   f"{exc}") from None


def _echo_summary(out, summary):
    click.echo(f"data set: {out}")
    click.echo(f"  label points: {summary['n_label_points']}, samples: {summary['n_samples']}, "
               f"shards: {summary['shards']} ({summary['shards_written']} written, "
               f"{summary['shards_skipped']} already complete)")
    click.echo(f"  this run: {summary['samples_written']} spectra in {summary['seconds']:.1f} s "
               f"({summary['samples_per_second']:.1f} spectra/s)")


@dataset.command("info")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--verify", is_flag=True, help="Check every shard's SHA-256.")
def info_cmd(directory, verify):
    """Describe a data set: survey, beams, labels, shards, configuration."""
    # imported on use: it loads h5py and the data-set code; `remap --help` stays fast
    from ..datasets import Dataset
    try:
        ds = Dataset(directory, verify=verify)
    except RemapError as exc:
        raise click.ClickException(str(exc)) from exc
    m = ds.manifest
    click.echo(f"data set: {directory} ({'complete' if ds.complete else 'INCOMPLETE'})")
    click.echo(f"  survey: {ds.survey} ({m.get('wavelength_medium') or 'medium unknown'})")
    for beam in ds.beams:
        b = m["beams"][beam]
        click.echo(f"  beam {beam}: {b['wave_min']:.2f}-{b['wave_max']:.2f} Å, {b['npix']} px")
    click.echo("  labels: " + ", ".join(f"{n} [{u_}]" for n, u_ in
                                        zip(ds.label_names, ds.label_units)))
    click.echo(f"  samples: {len(ds)} in {len(ds.shards)} shards")
    click.echo("  config: " + json.dumps(m.get("config", {}), sort_keys=True))
    if verify:
        click.echo("  all shard hashes verified")


@dataset.command("simulate")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (an interrupted run there is resumed).")
@click.option("--set", "which", type=click.Choice(["dwarfs", "calibration", "giants"]),
              default="dwarfs", show_default=True,
              help="Which set: 2,313 dwarfs (fine-tuning), 30 calibration stars, 732 giants.")
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help="Number of stars (default: the paper's size of the set).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Root seed (log gf errors, labels, observations).")
@click.option("--shard-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Stars per shard.")
@click.option("--fitter", default="algorithm1", show_default=True,
              help="Continuum fitter applied after spike removal.")
@click.option("--library-option", "library_options", multiple=True, metavar="KEY=VALUE",
              help="Option of the line-list library, e.g. sampling=2 (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace a different data set in --out.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def simulate_cmd(out, which, n, seed, shard_size, fitter, library_options, overwrite,
                 progress):
    """Simulate a labelled MARVELS-like survey set from the linelist library.

    The stars differ from the training library as real spectra do: per-line
    log gf errors, another microturbulence, R varying across the detector,
    wavelength and RV residuals, continuum distortions, spikes, SNR 50-200 and
    noisy labels (see remap.simulate).
    """
    # imported on use: it loads h5py and the data-set code; `remap --help` stays fast
    from ..simulate import build_simulated
    try:
        summary = build_simulated(out, which, n=n, seed=seed, shard_size=shard_size,
                                  fitter=fitter, overwrite=overwrite, progress=progress,
                                  library_options=parse_options(library_options,
                                                                "--library-option"))
    except (RemapError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"simulated {which}: {summary['n_samples']} stars in {out} "
               f"({summary['shards_written']} shards written, {summary['shards_skipped']} "
               "already complete)")
