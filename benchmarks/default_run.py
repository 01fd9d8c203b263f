"""Accuracy of a ``remap train`` run's pre-trained network against PCA + ridge.

``python -m benchmarks default_run [--quick] [--out RUN]`` takes the output
directory ``RUN`` of ``remap train --config configs/default.toml --out RUN``
(default ``runs/default``; ``--out`` names it) and scores, for each beam,

* the pre-trained network of that run (``RUN/beam_<B>/pretrain/model.keras``,
  loaded with Keras ``safe_mode``), its prediction being the median of each
  head's PMF, and
* a PCA + ridge regression (:func:`benchmarks.network.pca_ridge`: components
  and ridge strength chosen by 5-fold cross-validation grouped by label
  point) trained on the very same training set (``RUN/data/train``),

on a held-out set of the same ``linelist`` library: label points drawn
uniformly over the heads' ranges with another seed (never trained on), 45
augmentations each (R 10,000-12,000, noise 0.5-2 %, i.e. SNR 50-200,
Algorithm 1 normalization), built with `remap.datasets.build_synthetic` and
cached under ``benchmarks/results/default_run/``.  Reported: bias (mean of
predicted - true), scatter (standard deviation) and, for the network, the
fraction of true values inside the 16-84 % interval.

``--quick``: 30 held-out label points (1,350 spectra) and beam A only; the
full run: 100 label points and both beams.  The training run itself is not
timed here (``remap train`` prints its own time).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

__all__ = ["RESULTS_DIR", "held_out_set", "score_run", "main"]

#: Where the held-out sets are cached (ignored by git).
RESULTS_DIR = Path(__file__).resolve().parent / "results" / "default_run"

#: The default ``remap train`` output directory of this benchmark.
DEFAULT_RUN = Path("runs") / "default"


def held_out_set(n, beams, *, seed=1001, directory=RESULTS_DIR):
    """Build (or reuse) ``n`` held-out line-list label points for ``beams``; return a Dataset."""
    import remap
    from remap.datasets import Dataset, build_synthetic, draw_labels

    library = remap.get_library("linelist")
    survey = remap.get_survey("marvels")
    path = Path(directory) / f"heldout-n{n}-seed{seed}-{''.join(beams)}"
    build_synthetic(path, library, survey, draw_labels(library.domain, n, seed), seed=seed,
                    beams=list(beams), shard_size=10, workers=2)
    return Dataset(path)


def score_run(run, test, beam):
    """Score the pre-trained network of ``run`` and PCA + ridge on ``test``; return rows."""
    import keras

    import remap
    import remap.nn  # noqa: F401  registers remap's Keras objects
    from remap.datasets import Dataset
    from remap.labels import LabelBins

    from .network import pca_ridge, score

    heads = [remap.get_head(n) for n in remap.list_heads()]
    names = [h.name for h in heads]
    train = Dataset(Path(run) / "data" / "train")
    cols_tr = [train.label_names.index(n) for n in names]
    cols_te = [test.label_names.index(n) for n in names]
    x_tr, _, y_tr, _ = train.read_arrays(np.arange(len(train)), beam)
    x_te, _, y_te, _ = test.read_arrays(np.arange(len(test)), beam)
    y_tr, y_te = y_tr[:, cols_tr], y_te[:, cols_te]
    groups = np.asarray(train.labels["label_point"])
    start = time.perf_counter()
    y_pca, chosen = pca_ridge(x_tr.astype(np.float64), y_tr, groups, x_te.astype(np.float64))
    t_pca = time.perf_counter() - start
    path = Path(run) / f"beam_{beam}" / "pretrain" / "model.keras"
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    out = model.predict(x_te.astype(np.float32), batch_size=256, verbose=0)
    rows = []
    for j, h in enumerate(heads):
        decoded = LabelBins(h).decode(out[h.name])
        inside = float(np.mean((y_te[:, j] >= decoded["p16"]) & (y_te[:, j] <= decoded["p84"])))
        rows.append({"beam": beam, "parameter": h.name, "unit": h.unit.to_string(),
                     "method": "deep-REMAP (pre-trained)", "coverage_68": inside,
                     **score(decoded["median"], y_te[:, j])})
        rows.append({"beam": beam, "parameter": h.name, "unit": h.unit.to_string(),
                     "method": "PCA + ridge", "coverage_68": float("nan"),
                     **score(y_pca[:, j], y_te[:, j])})
    print(f"  beam {beam}: {len(train)} training spectra, {len(test)} held-out spectra; "
          f"PCA + ridge: {chosen['components']} components, alpha {chosen['alpha']:.3g} "
          f"({t_pca:.1f} s)")
    return rows


def main(quick=False, out=None):
    """Run the benchmark and print its table; return the rows."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run = Path(out) if out is not None else DEFAULT_RUN
    if not (run / "data" / "train" / "manifest.json").is_file():
        raise SystemExit(f"no training run in {run}: run 'remap train --config "
                         f"configs/default.toml --out {run}' first, or name the run with --out")
    beams = ["A"] if quick else ["A", "B"]
    n = 30 if quick else 100
    print(f"default run: {run}; held-out linelist set of {n} label points x 45 augmentations")
    test = held_out_set(n, beams)
    rows = []
    for beam in beams:
        rows += score_run(run, test, beam)
    print(f"\n  {'beam':<5} {'parameter':<10} {'unit':<5} {'method':<26} {'bias':>9} "
          f"{'scatter':>9} {'cov68':>6}")
    for r in rows:
        cov = "" if np.isnan(r["coverage_68"]) else f"{r['coverage_68']:6.2f}"
        print(f"  {r['beam']:<5} {r['parameter']:<10} {r['unit']:<5} {r['method']:<26} "
              f"{r['bias']:9.3f} {r['scatter']:9.3f} {cov:>6}")
    return rows
