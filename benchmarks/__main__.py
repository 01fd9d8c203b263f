"""Run remap benchmarks: ``python -m benchmarks [name ...] [--quick]``.

With no names every benchmark module of this package is run, in alphabetical
order.  ``--quick`` asks each benchmark for a smaller, faster run.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time

__all__ = ["available", "main"]


def available():
    """Sorted names of the benchmark modules (``benchmarks/<name>.py``, no leading ``_``)."""
    import benchmarks
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__)
                  if not m.name.startswith("_") and not m.ispkg)


def main(argv=None):
    """Parse ``argv`` and run the chosen benchmarks; return a process exit status."""
    names = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"benchmarks to run (default: all): {', '.join(names)}")
    parser.add_argument("--quick", action="store_true",
                        help="shrink the problem sizes for a fast smoke run")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}")
    for name in args.names or names:
        module = importlib.import_module(f"benchmarks.{name}")
        if not callable(getattr(module, "main", None)):
            parser.error(f"benchmarks/{name}.py has no main(quick=False)")
        print(f"=== benchmark: {name}{' (quick)' if args.quick else ''} ===", flush=True)
        start = time.perf_counter()
        module.main(quick=args.quick)
        print(f"=== {name}: {time.perf_counter() - start:.1f} s ===\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
