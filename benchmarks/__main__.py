"""Run remap benchmarks: ``python -m benchmarks [name ...] [--quick] [--out DIR]``.

With no names every benchmark module of this package is run, in alphabetical
order, except the aggregate ``suite`` (which runs the others' pieces itself
and writes a report: ``python -m benchmarks suite [--quick] [--out DIR]``).
``--quick`` asks each benchmark for a smaller, faster run; ``--out`` gives
the output directory to the benchmarks that write one (``suite``).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
import time

__all__ = ["AGGREGATES", "available", "main"]

#: Benchmarks that run only when named (they repeat the work of the others, or need
#: a training run to score).
AGGREGATES = ("suite", "default_run")


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
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output directory of the benchmarks that write one (suite: "
                             "report.md, figures, ECSV; default benchmarks/results/suite*/)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}")
    chosen = args.names or [n for n in names if n not in AGGREGATES]
    modules = {}
    for name in chosen:     # check every chosen benchmark before running any
        module = importlib.import_module(f"benchmarks.{name}")
        if not callable(getattr(module, "main", None)):
            parser.error(f"benchmarks/{name}.py has no main(quick=False)")
        if args.out is not None and "out" not in inspect.signature(module.main).parameters:
            parser.error(f"benchmarks/{name}.py writes no output directory: it takes no --out")
        modules[name] = module
    for name, module in modules.items():
        kwargs = {"quick": args.quick}
        if args.out is not None:
            kwargs["out"] = args.out
        print(f"=== benchmark: {name}{' (quick)' if args.quick else ''} ===", flush=True)
        start = time.perf_counter()
        module.main(**kwargs)
        print(f"=== {name}: {time.perf_counter() - start:.1f} s ===\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
