"""Catalogue-fitting benchmark: ``remap.fit_catalog`` on 1 and 2 Dask workers, and a scaling model.

Fits the same catalogue of two-beam ``remap-beam`` FITS files (noisy copies of
the bundled example star) and measures:

* the per-stage costs in this process: reading a file
  (:func:`remap.read_spectrum_file`), :func:`remap.fit` on a partition's
  batch (with its own stage split: split, spikes, resample, continuum,
  networks, conflation, neighbours), building the partition table, and
  writing / reading a part file;
* the stars per second of :func:`remap.fit_catalog` on a
  `~distributed.LocalCluster` with 1 and with 2 worker processes, on warm
  workers (the model already loaded; the start-up is reported apart);
* the fixed costs of the distributed run, from runs over partitions whose
  inputs fail at once (missing files): the serial cost ``T_s`` per call
  (connecting, registering the model plugin, partitioning, hashing,
  stacking the table) and the cost ``t_p`` per partition (scheduling,
  transfers, table assembly);

and fits the scaling model

    T(N) = T_s + ceil(P / N) · (t_p + S · t_f),   throughput = n / T(N)

for ``n`` files in ``P`` partitions of ``S`` on ``N`` workers, ``t_f`` being
the per-file cost in a worker (from the 1-worker run).  The 2-worker
prediction is printed next to the measurement; the table extrapolates to
more workers (each on its own core, files on a shared file system that is
not the bottleneck).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["make_files", "stage_costs", "timed_catalog", "scaling_model", "main"]


def make_files(directory, n, seed=0):
    """Write ``n`` two-beam remap-beam FITS files (noisy copies of the example star)."""
    from specutils import Spectrum

    from remap.examples import load_example
    from remap.spectra.io import write_beams

    rng = np.random.default_rng(seed)
    beams = load_example()
    paths = []
    for i in range(n):
        noisy = {b: Spectrum(flux=s.flux * (1 + 0.01 * rng.standard_normal(s.flux.shape)),
                             spectral_axis=s.spectral_axis, uncertainty=s.uncertainty,
                             mask=s.mask) for b, s in beams.items()}
        paths.append(write_beams(Path(directory) / f"star_{i:05d}.fits", noisy,
                                 survey="marvels", medium="air"))
    return paths


def stage_costs(paths, partition_size, repeats=2):
    """Seconds per file (read, fit and its stages) and per partition (table, part I/O)."""
    import remap
    from remap.catalog import _assemble, _read_part, _write_part, cached_model, \
        _model_path
    from remap.datasets import limit_blas_threads

    model = cached_model(_model_path(None))
    part = list(paths[:partition_size])
    out = {"read": 0.0, "fit": 0.0, "table": 0.0, "part write": 0.0, "part read": 0.0}
    stages = {}
    with limit_blas_threads(1), tempfile.TemporaryDirectory() as tmp:
        remap.fit([remap.read_spectrum_file(p) for p in part[:2]], model=model)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            spectra = [remap.read_spectrum_file(p) for p in part]
            t1 = time.perf_counter()
            result = remap.fit(spectra, model=model, batch_size=256)
            t2 = time.perf_counter()
            table = result.to_table()
            _assemble([(table, j) for j in range(len(part))], table)
            t3 = time.perf_counter()
            target = Path(tmp) / "part-00000.ecsv"
            _write_part(table, target, "key", "ecsv")
            t4 = time.perf_counter()
            _read_part(target, "key", len(part), "ecsv")
            t5 = time.perf_counter()
            out["read"] += (t1 - t0) / len(part)
            out["fit"] += (t2 - t1) / len(part)
            out["table"] += t3 - t2
            out["part write"] += t4 - t3
            out["part read"] += t5 - t4
            for k, v in getattr(result, "timings", {}).items():
                stages[k] = stages.get(k, 0.0) + v / len(part)
    return ({k: v / repeats for k, v in out.items()},
            {k: v / repeats for k, v in stages.items()})


def timed_catalog(client, paths, partition_size, repeats=1):
    """Best wall time of ``fit_catalog`` over ``repeats`` runs (warm workers)."""
    from remap.catalog import fit_catalog

    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        table = fit_catalog(paths, client=client, partition_size=partition_size)
        best = min(best, time.perf_counter() - t0)
    return best, table


def scaling_model(n, partition_size, t_serial, t_part, t_file, workers):
    """Predicted seconds and stars/s of ``n`` files on ``workers`` workers."""
    parts = math.ceil(n / partition_size)
    seconds = t_serial + math.ceil(parts / workers) * (t_part + partition_size * t_file)
    return seconds, n / seconds


def main(quick=False):
    """Run the benchmark, print its tables and return the numbers as a dict.

    Returns
    -------
    numbers : dict
        ``per_file`` and ``fit_stages`` (in-process seconds), ``startup_s``,
        ``seconds`` and ``stars_per_s`` per number of workers, and the fitted
        ``t_serial``, ``t_part`` and ``t_file`` of the scaling model.
    """
    import dask
    from distributed import Client

    from remap.catalog import local_cluster

    n_files, size = (32, 8) if quick else (256, 32)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"catalogue benchmark: {n_files} two-beam remap-beam FITS files, partitions of "
          f"{size}, default model; {cores} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f} at the start (other work on the cores adds noise)")
    with tempfile.TemporaryDirectory(prefix="remap-bench-catalog-") as tmp:
        paths = make_files(tmp, n_files)
        missing = [os.path.join(tmp, f"missing_{i}.fits") for i in range(64)]

        per_file, stages = stage_costs(paths, size, repeats=1 if quick else 3)
        print("\nin-process stage costs (one BLAS/TF thread pool, batch = one partition)")
        print("  stage                         seconds")
        for name in ("read", "fit"):
            print(f"  {name + ' (per file)':<28} {per_file[name]:9.5f}")
        for name, sec in stages.items():
            print(f"    fit: {name:<20} {sec:9.5f}")
        for name in ("table", "part write", "part read"):
            print(f"  {name + ' (per partition)':<28} {per_file[name]:9.5f}")

        results = {}
        with dask.config.set({"distributed.scheduler.allowed-failures": 3}):
            t0 = time.perf_counter()
            cluster = local_cluster(1, host="127.0.0.1")
            client = Client(cluster)
            try:
                timed_catalog(client, paths[:2], size)   # start-up: model load in the worker
                startup = time.perf_counter() - t0
                for workers in (1, 2):
                    if workers > 1:
                        cluster.scale(workers)
                        client.wait_for_workers(workers)
                        timed_catalog(client, paths[:2 * workers], 2)   # warm the new worker
                    seconds, table = timed_catalog(client, paths, size, repeats=2)
                    assert np.all(table["status"] != "error"), "benchmark files failed"
                    results[workers] = seconds
                    if workers == 1:
                        # fixed costs: partitions of inputs that fail at once
                        few, many = 2, (8 if quick else 32)
                        t_few = timed_catalog(client, missing[:few], 1, repeats=2)[0]
                        t_many = timed_catalog(client, missing[:many], 1, repeats=2)[0]
                        t_part = max((t_many - t_few) / (many - few), 0.0)
                        t_serial = max(t_few - few * t_part, 0.0)
            finally:
                client.close()
                cluster.close()

        parts = math.ceil(n_files / size)
        t_file = max((results[1] - t_serial - parts * t_part) / n_files, 1e-9)
        print(f"\ncluster start-up with the model load in one worker: {startup:.1f} s")
        print(f"fixed costs: T_s = {t_serial:.3f} s per call, t_p = {t_part:.4f} s per "
              f"partition; per-file cost in a worker t_f = {t_file:.4f} s")
        print("\nworkers  seconds  stars/s  model stars/s  speed-up")
        for workers, seconds in results.items():
            pred = scaling_model(n_files, size, t_serial, t_part, t_file, workers)[1]
            print(f"  {workers:>5}  {seconds:7.2f}  {n_files / seconds:7.1f}  {pred:13.1f}  "
                  f"{results[1] / seconds:8.2f}")
        print("\nscaling model (same per-file cost, one core per worker)")
        print("  catalogue   workers  partitions  predicted s  stars/s  efficiency")
        for n in (n_files, 5_500, 1_000_000):
            one = scaling_model(n, size, t_serial, t_part, t_file, 1)[0]
            for workers in (1, 2, 8, 64, 512):
                seconds, rate = scaling_model(n, size, t_serial, t_part, t_file, workers)
                print(f"  {n:>9}  {workers:>8}  {math.ceil(n / size):>10}  {seconds:11.1f}  "
                      f"{rate:7.1f}  {one / seconds / workers:10.1%}")
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
        limit = size / (t_part + size * t_file)
        print(f"per worker: {limit:.1f} stars/s in partitions of {size}; the serial cost alone "
              f"would cap a call of {n_files} files at "
              f"{n_files / t_serial if t_serial else float('inf'):.0f} stars/s")
    return {"n_files": n_files, "partition_size": size, "per_file": per_file,
            "fit_stages": stages, "startup_s": startup, "seconds": results,
            "stars_per_s": {w: n_files / t for w, t in results.items()},
            "t_serial": t_serial, "t_part": t_part, "t_file": t_file}
