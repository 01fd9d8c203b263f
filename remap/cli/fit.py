"""``remap fit``: fit a catalogue of spectrum files into one table."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .._util.fs import check_output, output_lock
from ..exceptions import OutputError, RemapError

__all__ = ["fit_cmd", "OUTPUT_FORMATS"]

#: Output file suffix -> astropy writer format.
OUTPUT_FORMATS = {".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".fts": "fits"}


@click.command("fit")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Result table: .ecsv or .fits (written atomically; never one of the "
                   "inputs; an existing one only with --overwrite).")
@click.option("--overwrite", is_flag=True,
              help="Replace the output table if it exists.")
@click.option("--model", "model", default=None, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Model directory (default: the model shipped with remap).")
@click.option("--survey", default=None, help="Survey plugin (default: the model's survey).")
@click.option("--format", "fmt", default=None,
              help="Reader format (remap-beam, tabular-fits, wcs1d-fits, ECSV, remap-fits1d, "
                   "remap-table, remap-multispec, remap-echelle, ...); identified from each "
                   "file by default.")
@click.option("--medium", type=click.Choice(["air", "vacuum"]), default=None,
              help="Wavelength medium of the inputs, overriding what the files declare "
                   "[default: the file's; else the survey's, with a warning].")
@click.option("--rv", "rv", default=None, metavar="KM/S", type=float,
              help="Known radial velocity of every input in km/s (0: the spectra are at "
                   "rest) [default: measured per star by cross-correlation].")
@click.option("--resolution", "resolution", default=None, metavar="R",
              help="Resolving power of the inputs, a number or 'survey' (the survey's own) "
                   "[default: the file's meta, else estimated from the line widths].")
@click.option("--plot", "plot_dir", default=None, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Write the PMF figure of every fitted file to DIR/<name>.png.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Spectra fitted together in one vectorized call.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on the Dask cluster of this scheduler (e.g. tcp://host:8786).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Run on a local Dask cluster of N worker processes.")
@click.option("--parts", "parts_dir", default=None, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Dask runs: keep finished partitions in DIR; a re-run resumes from them.")
@click.option("--partition-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Dask runs: files per task and per part file.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar.")
def fit_cmd(files, output, overwrite, model, survey, fmt, medium, rv, resolution, plot_dir,
            batch_size, scheduler, workers, parts_dir, partition_size, progress):
    """Fit T_eff, log g and [Fe/H] of every spectrum file; write one table.

    FILES are spectrum files (one star each) in any format specutils reads
    or remap's beam format; a directory stands for the files in it (sorted).
    The table has one row per file, in order: the file name, a status
    ("ok", "flagged" or "error"), the error message, the medians,
    16th/84th percentiles, means and standard deviations, the flags and
    the per-beam SNR.  A file that cannot be read or fitted is recorded
    with its error; the others are fitted all the same.  The exit status
    is 1 when any file has status "error".

    Files are read by remap.read_spectrum: any format specutils identifies,
    then remap's readers for 1-D FITS images with a non-standard BUNIT,
    tables with wavelength/flux columns of common names, IRAF multispec and
    2-D echelle files.  The wavelength medium comes from --medium, else the
    file (AIRORVAC, VACUUM, WAVE_MED, CTYPE1 AWAV/WAVE), else the survey's
    (with a warning).

    The output is never one of the inputs and an existing one is only
    replaced with --overwrite; while it runs, the output is locked
    (.NAME.lock next to it), so a second run on the same output fails at
    once.

    By default everything runs in this process.  With --workers N (a local
    cluster of N processes), --scheduler ADDRESS (an existing Dask cluster)
    or --parts DIR (resumable; a local cluster sized to the machine unless
    one of the others is given) the files are fitted on Dask.
    """
    from ..catalog import expand_paths

    writer = OUTPUT_FORMATS.get(output.suffix.lower())
    if writer is None:
        raise click.BadParameter(f"cannot tell the table format from {output.name!r}; use a "
                                 f"name ending in {', '.join(sorted(OUTPUT_FORMATS))}",
                                 param_hint="-o/--output")
    if scheduler is not None and workers is not None:
        raise click.UsageError("give --scheduler (an existing cluster) or --workers (a local "
                               "one), not both")
    fit_options = {}
    if rv is not None:
        fit_options["rv"] = rv
    if resolution is not None:
        fit_options["resolution"] = _resolution_option(resolution)
    paths = expand_paths(files)
    if not paths:
        raise click.UsageError("no input files: the directories given are empty")
    try:
        check_output(output, paths, overwrite=overwrite, what="-o/--output")
        with output_lock(output):
            # checked again under the lock: another run may have finished it meanwhile
            check_output(output, paths, overwrite=overwrite, what="-o/--output")
            table = _fit(paths, model, survey, fmt, medium, plot_dir, batch_size, scheduler,
                         workers, parts_dir, partition_size, progress, fit_options)
            try:
                write_table(table, output, writer)
            except OSError as exc:
                if isinstance(exc, OutputError):
                    raise
                raise click.ClickException(f"cannot write {output}: {exc}") from exc
    except OutputError as exc:
        raise click.ClickException(str(exc)) from None
    _report(table, output)
    if table.meta.get("n_error", 0):
        raise click.exceptions.Exit(1)
    return 0


def _resolution_option(text):
    """``--resolution``: a positive number or ``survey``."""
    if text.strip().lower() == "survey":
        return "survey"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise click.BadParameter(f"expected a positive resolving power or 'survey'; received "
                                 f"{text!r}", param_hint="--resolution")
    return value


def _fit(paths, model, survey, fmt, medium, plot_dir, batch_size, scheduler, workers,
         parts_dir, partition_size, progress, fit_options=None):
    """Fit the files in this process or on Dask; the catalogue table."""
    import warnings

    from ..catalog import fit_catalog, fit_files
    from ..exceptions import MediumAssumedWarning

    model_arg = None if model is None else str(model)
    use_dask = scheduler is not None or workers is not None or parts_dir is not None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MediumAssumedWarning)
            if use_dask:
                table = fit_catalog(paths, model=model_arg, survey=survey, scheduler=scheduler,
                                    n_workers=workers, partition_size=partition_size,
                                    output=parts_dir, format=fmt, medium=medium,
                                    progress=progress, batch_size=batch_size,
                                    plot_dir=plot_dir, fit_options=fit_options)
            else:
                table = fit_files(paths, model=model_arg, survey=survey, format=fmt,
                                  medium=medium, batch_size=batch_size, progress=progress,
                                  plot_dir=plot_dir, fit_options=fit_options)
    except (OSError, ValueError) as exc:
        if isinstance(exc, RemapError):
            raise
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    for w in caught:
        if issubclass(w.category, MediumAssumedWarning):
            click.echo(f"remap fit: warning: {w.message}", err=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return table


#: Table meta keys -> FITS header keywords (at most 8 characters, so no HIERARCH cards).
FITS_KEYWORDS = {"model": "MODEL", "model_name": "MODELNAM", "survey": "SURVEY",
                 "remap_version": "REMAPVER", "bin_edges": "EDGES", "flag_bits": "FLAGBITS",
                 "n_ok": "NOK", "n_flagged": "NFLAGGED", "n_error": "NERROR",
                 "n_parts_reused": "NREUSED", "n_medium_assumed": "NMEDASSU"}


def fits_meta(meta):
    """``meta`` as FITS header cards: short keywords; lists and mappings as JSON strings.

    ``bin_edges`` becomes ``EDGES`` = ``'{"teff": [3000.0, ...], ...}'`` (a long
    string card), ``flag_bits`` becomes ``FLAGBITS``; see :data:`FITS_KEYWORDS`.
    """
    import json
    import re

    out = {}
    for key, value in meta.items():
        word = FITS_KEYWORDS.get(key) or re.sub(r"[^A-Z0-9]", "", str(key).upper())[:8]
        if not word or word in out:
            continue
        if not isinstance(value, (str, int, float, bool)):
            value = json.dumps(value, default=str)
        out[word] = value
    return out


def write_table(table, path, writer):
    """Write ``table`` to ``path`` atomically (ECSV, or FITS with :func:`fits_meta`)."""
    import warnings

    from astropy.utils.exceptions import AstropyUserWarning

    from .._util.fs import atomic_path

    with atomic_path(path) as tmp:
        if writer == "fits":
            table = table.copy(copy_data=False)
            table.meta = fits_meta(table.meta)
        with warnings.catch_warnings():
            # dex (log g, [Fe/H]) is no FITS unit: astropy keeps it in its own
            # metadata, so QTable.read restores it; other readers see no unit
            warnings.filterwarnings("ignore", message=".*could not be saved in native FITS",
                                    category=AstropyUserWarning)
            table.write(tmp, format=writer)


def _report(table, output):
    meta = table.meta
    click.echo(f"{len(table)} file(s): {meta.get('n_ok', 0)} ok, {meta.get('n_flagged', 0)} "
               f"flagged, {meta.get('n_error', 0)} error(s); table written to {output}")
    if meta.get("n_parts_reused"):
        click.echo(f"  {meta['n_parts_reused']} finished part(s) reused")
    for name, status, error in zip(table["file"], table["status"], table["error"]):
        if status == "error":
            click.echo(f"remap fit: error: {name}: {error}", err=True)
    sys.stderr.flush()
