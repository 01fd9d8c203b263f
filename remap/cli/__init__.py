"""The ``remap`` command line: one module per subcommand, assembled in :mod:`remap.cli.app`."""

from .app import cli, main

__all__ = ["cli", "main"]
