"""``remap model``: commands that work on trained model artifacts."""

from __future__ import annotations

import json

import click

from ..exceptions import RemapError

__all__ = ["model", "add_templates_cmd"]


@click.group("model")
def model():
    """Work on trained model artifacts (template spectra)."""


@model.command("add-templates")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--library", default=None,
              help="Library plugin to build the templates from [default: the one the "
                   "artifact's manifest records].")
@click.option("--library-options", default=None, metavar="JSON",
              help='Options of the library as JSON, e.g. \'{"resolution": 50000, '
                   '"linelist": "laboratory"}\' [default: the manifest\'s].')
def add_templates_cmd(directory, library, library_options):
    """Add template spectra to the model artifact DIRECTORY (re-hashing it).

    The templates (the mean training spectrum and 30 spectra on a coarse
    T_eff x log g x [Fe/H] grid, prepared like the training spectra) are what
    remap fit measures radial velocities and resolutions with and fills
    uncovered pixels from.  Artifacts written by 'remap train' have them.
    """
    from ..model.loading import load_model
    from ..model.templates import add_templates

    options = None
    if library_options is not None:
        try:
            options = json.loads(library_options)
        except ValueError as exc:
            raise click.UsageError(f"--library-options is not JSON: {exc}") from None
        if not isinstance(options, dict):
            raise click.UsageError("--library-options must be a JSON object")
    try:
        path = add_templates(directory, library=library, library_options=options)
        loaded = load_model(path)
    except (RemapError, TypeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    counts = ", ".join(f"{b}: {loaded.templates(b).flux.shape[0]}" for b in loaded.beams)
    click.echo(f"{path}: templates added ({counts}); the artifact verifies")
