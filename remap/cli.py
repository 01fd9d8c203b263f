"""The ``remap`` command line (one console script with subcommands, built on click)."""

from __future__ import annotations

import sys

import click

from . import __version__
from .exceptions import RemapError
from .plugins import KINDS, plugin_infos

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="remap")
def cli():
    """remap: probabilistic stellar parameters (T_eff, log g, [Fe/H]) from spectra."""


@cli.command("plugins")
@click.option("--kind", type=click.Choice(sorted(KINDS)), default=None,
              help="Show only plugins of this kind.")
def plugins_cmd(kind):
    """List every registered plugin by kind, with the distribution it comes from."""
    titles = {"survey": "Surveys", "library": "Synthetic libraries",
              "continuum": "Continuum fitters", "head": "Network heads"}
    for k in KINDS:
        if kind is not None and k != kind:
            continue
        infos = plugin_infos(k)
        click.echo(f"{titles[k]} ({KINDS[k]}):")
        if not infos:
            click.echo("  (none)")
        width = max((len(i.name) for i in infos), default=0)
        for info in infos:
            doc = _describe(info.obj)
            click.echo(f"  {info.name:<{width}}  {info.source}  [plugin {info.plugin}]"
                       + (f"  {doc}" if doc else ""))
        click.echo("")


def _describe(obj):
    """One line describing a plugin object: ``description``, ``label`` or a class docstring."""
    import inspect
    for attr in ("description", "label"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value
    if inspect.isclass(obj) and obj.__doc__:
        return obj.__doc__.strip().split("\n")[0]
    return ""


def main(argv=None):
    """Entry point of the ``remap`` console script."""
    try:
        return cli.main(args=argv, prog_name="remap", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except RemapError as exc:
        click.echo(f"remap: error: {exc}", err=True)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
