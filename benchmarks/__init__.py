"""remap's benchmarks: ``python -m benchmarks [name ...] [--quick]``.

Each module ``benchmarks/<name>.py`` (names not starting with ``_``) is one
benchmark and exposes ``main(quick=False)``, which prints its results.  The
dispatcher in ``benchmarks/__main__.py`` finds them automatically.
"""

__all__ = []
