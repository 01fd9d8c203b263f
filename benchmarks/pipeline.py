"""Synthetic-set pipeline benchmark: library → augment → normalize → HDF5 shards.

Measures, for the built-in offline ``linelist`` library and the MARVELS survey
(both beams, 45 augmented spectra per label point, Gilda 2025 §3.3):

* the time of each stage for one label point, with one BLAS thread (as
  the builder runs) and with the BLAS library's default: the library spectrum, the
  augmentation without normalization (down-convolution to three resolutions,
  spline resampling, noise; both beams), and the Algorithm 1 normalization
  of the 90 spectra;
* the end-to-end throughput of :func:`remap.datasets.build_synthetic` in
  samples per second (a sample = one label point × augmentation, both beams)
  with 1 and 2 worker processes, and the time extrapolated to the paper's
  ~110,000 spectra (Gilda 2025, §5);
* the resident memory of the building process after each shard (current RSS
  from ``/proc/self/statm`` and the peak ``ru_maxrss``), to show that memory
  stays flat as shards are written.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time

import numpy as np

import remap
from remap.augment import augment
from remap.datasets import build_synthetic, draw_labels, limit_blas_threads

__all__ = ["PAPER_SPECTRA", "current_rss_mb", "peak_rss_mb", "stage_times", "build_run",
           "main"]

#: Size of the paper's augmented synthetic training set (Gilda 2025, §5: 110,000 spectra).
PAPER_SPECTRA = 110_000


def current_rss_mb():
    """Resident set size of this process now, in MiB (Linux ``/proc``; else the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb():
    """Peak resident set size of this process so far, in MiB (``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_times(library, survey, fitter, repeats=2, seed=0):
    """Mean seconds per label point of each stage, over ``repeats`` label points."""
    labels = draw_labels(library.domain, repeats, seed)
    t_lib = t_aug = t_norm = 0.0
    for i in range(repeats):
        t0 = time.perf_counter()
        spec = library.spectrum(**{k: float(labels[k][i]) for k in labels.colnames})
        t1 = time.perf_counter()
        batches = [augment(spec, survey, beam, seed=i, fitter=None)[0]
                   for beam in survey.beams]
        t2 = time.perf_counter()
        for batch in batches:
            remap.normalize(batch, fitter=fitter)
        t3 = time.perf_counter()
        t_lib += t1 - t0
        t_aug += t2 - t1
        t_norm += t3 - t2
    return {"library": t_lib / repeats, "augment": t_aug / repeats,
            "normalize": t_norm / repeats}


def build_run(library, survey, n_points, shard_size, workers, seed=0):
    """Build a set into a temporary directory; return throughput and memory per shard."""
    labels = draw_labels(library.domain, n_points, seed)
    rss = []
    with tempfile.TemporaryDirectory(prefix="remap-bench-") as tmp:
        summary = build_synthetic(tmp, library, survey, labels, seed=seed,
                                  shard_size=shard_size, workers=workers,
                                  on_shard=lambda k, w: rss.append(current_rss_mb()))
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    summary["rss_after_shard_mb"] = rss
    summary["peak_rss_mb"] = peak_rss_mb()
    summary["bytes_per_sample"] = size / summary["n_samples"]
    return summary


def main(quick=False):
    """Run the benchmark and print its table."""
    library = remap.get_library("linelist")
    survey = remap.get_survey("marvels")
    fitter = remap.get_continuum_fitter("algorithm1")
    n_points, shard_size = (2, 1) if quick else (24, 4)

    print(f"pipeline benchmark: linelist -> augment (45/label point, beams "
          f"{', '.join(survey.beams)}) -> algorithm1 -> HDF5 shards; {os.cpu_count()} CPUs")
    print("\nstage (one label point = 45 samples x 2 beams)   seconds   share")
    for threads in (1, None):
        with limit_blas_threads(threads):
            stages = stage_times(library, survey, fitter, repeats=1 if quick else 2)
        total = sum(stages.values())
        print(f" BLAS threads: {threads or 'library default'}")
        for name, sec in stages.items():
            print(f"  {name:<46} {sec:8.3f}  {sec / total:6.1%}")

    print("\nworkers  label points  samples  seconds  samples/s  time for 110k  "
          "MiB/sample  RSS after each shard (MiB)")
    for workers in (1, 2):
        s = build_run(library, survey, n_points, shard_size, workers)
        rate = s["samples_per_second"]
        eta = PAPER_SPECTRA / rate / 60 if rate else float("nan")
        rss = ", ".join(f"{r:.0f}" for r in s["rss_after_shard_mb"])
        print(f"  {workers:>5}  {s['n_label_points']:>12}  {s['n_samples']:>7}  "
              f"{s['seconds']:7.1f}  {rate:9.2f}  {eta:9.1f} min  "
              f"{s['bytes_per_sample'] / 2 ** 20:10.3f}  {rss}")
    print(f"\npeak RSS of this process (ru_maxrss): {peak_rss_mb():.0f} MiB")
    growth = np.ptp(s["rss_after_shard_mb"]) if s["rss_after_shard_mb"] else 0.0
    print(f"RSS spread across shards in the last run: {growth:.1f} MiB")
