"""Network benchmark: throughput of the default deep-REMAP network, and its accuracy.

Part (a), speed, for the default `~remap.nn.model.NetworkConfig` on each
MARVELS beam (A: 4,301 pixels, B: 4,701 pixels at 0.1 Å, Gilda 2025 §5):

* inference throughput in spectra per second at batch sizes 256 and 1024,
  through ``keras.Model.predict``, a ``tf.function`` over ``model(x,
  training=False)`` (what `remap.model.RemapModel.predict` runs), the same
  with XLA (``jit_compile=True``), and `RemapModel.predict` on a saved and
  re-loaded artifact;
* training throughput in spectra per second of ``train_on_batch`` and of
  ``fit`` steps with the full loss (focal + triplet, Gilda 2025 Eq. 7);
* parameter counts.

Part (b), accuracy, on synthetic MARVELS beam-A spectra of the built-in
offline ``linelist`` library (45 augmented spectra per label point: three
resolutions × five noise levels × three draws, normalized with Algorithm 1,
Gilda 2025 §3.3): a training set and a disjoint held-out set of label points
drawn uniformly over the heads' ranges are built (and cached under
``benchmarks/results/network/``); the network is trained with
:func:`remap.train.loop.train_stage` (Adam, cosine restarts, SWA) and
compared with a baseline of PCA + ridge regression (randomized SVD and
closed-form ridge in numpy, the number of components and the ridge strength
chosen by 5-fold cross-validation grouped by label point on the training set
only).  Both are scored on the held-out set: bias (mean of predicted − true)
and scatter (standard deviation of predicted − true) per parameter, the
network's prediction being the median of its PMF (METHOD.md).

``--quick``: 100 training / 30 held-out label points and 6 epochs (two
cosine cycles of 3, SWA): about 9 minutes on a loaded 2-core CPU.  The full
run: 400 / 100 label points and 24 epochs (three cycles of 8), about an hour
there.  Timings on a shared CPU vary with its load, which is printed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

__all__ = ["RESULTS_DIR", "load_average", "inference_throughput", "training_throughput",
           "build_sets", "train_network", "pca_ridge", "score", "main"]

#: Where data sets and results are cached (ignored by git).
RESULTS_DIR = Path(__file__).resolve().parent / "results" / "network"

#: Results of Gilda 2025 (30 MARVELS calibration stars, beams conflated; METHOD.md),
#: parameter -> (bias, scatter).  Real spectra: for context only.
PAPER = {"teff": (-10.0, 75.0), "logg": (0.02, 0.12), "feh": (-0.01, 0.08)}


def load_average():
    """The 1-minute load average of this machine (NaN where unavailable)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _best_rate(fn, n, repeats):
    """Best spectra per second of ``repeats`` timed calls of ``fn`` (each processes ``n``)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def inference_throughput(model, flux, batch_sizes, *, artifact_model=None, beam=None,
                         repeats=2, xla=True):
    """Inference spectra per second of several ways of running ``model`` on ``flux``.

    Parameters
    ----------
    model : `keras.Model`
    flux : ndarray, shape (n, npix), float32
    batch_sizes : sequence of int
    artifact_model : `remap.model.RemapModel`, optional
        Also time its :meth:`~remap.model.RemapModel.predict` for ``beam``.
    beam : str, optional
    repeats : int
        Best of this many timed runs (after one warm-up run) is kept.
    xla : bool
        Also time the XLA-compiled ``tf.function``.

    Returns
    -------
    rows : list of dict
        ``method``, ``batch`` and ``rate`` (spectra per second).
    """
    import tensorflow as tf

    n, npix = flux.shape
    rows = []

    def plain(x):
        return model(x, training=False)

    graph = tf.function(plain, input_signature=[tf.TensorSpec((None, npix), tf.float32)],
                        reduce_retracing=True)
    compiled = tf.function(plain, jit_compile=True)

    def loop(fn, bs):
        def run():
            for start in range(0, n, bs):
                {k: v.numpy() for k, v in fn(flux[start:start + bs]).items()}
        return run

    for bs in batch_sizes:
        methods = [("keras Model.predict", lambda: model.predict(flux, batch_size=bs,
                                                                 verbose=0)),
                   ("tf.function", loop(graph, bs))]
        if xla:
            methods.append(("tf.function(jit_compile=True)", loop(compiled, bs)))
        if artifact_model is not None:
            methods.append(("RemapModel.predict (artifact)",
                            lambda: artifact_model.predict(beam, flux, batch_size=bs)))
        for name, fn in methods:
            fn()  # warm-up: tracing / compilation
            rows.append({"method": name, "batch": bs, "rate": _best_rate(fn, n, repeats)})
    return rows


def training_throughput(model, heads, flux, labels, label_names, batch_size, *, steps=4,
                        repeats=2):
    """Training spectra per second with the full deep-REMAP loss.

    The model is compiled with :func:`remap.nn.model.compile_model` (focal +
    0.001 × triplet per head, Adam).

    Returns
    -------
    rows : list of dict
        ``method`` (``train_on_batch`` or ``fit``), ``batch``, ``rate``.
    """
    import keras
    import tensorflow as tf

    from remap.labels import LabelEncoder
    from remap.nn.model import compile_model, expand_targets

    compile_model(model, heads, optimizer=keras.optimizers.Adam(1e-4))
    x = flux[:batch_size]
    targets = expand_targets(LabelEncoder(heads, label_names)(labels[:batch_size]))
    model.train_on_batch(x, targets)  # warm-up: tracing

    def on_batch():
        for _ in range(steps):
            model.train_on_batch(x, targets)

    rows = [{"method": "train_on_batch", "batch": batch_size,
             "rate": _best_rate(on_batch, steps * batch_size, repeats)}]
    ds = tf.data.Dataset.from_tensors((x, targets)).repeat()
    model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # warm-up

    def fit():
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)

    rows.append({"method": "fit", "batch": batch_size,
                 "rate": _best_rate(fit, steps * batch_size, repeats)})
    return rows


def build_sets(n_train, n_test, *, seed=0, workers=2, directory=RESULTS_DIR):
    """Build (or reuse) the training and held-out sets of beam A; return both `Dataset`.

    Label points are drawn uniformly over the ranges of the built-in heads
    (T_eff 3000-7000 K, log g 1.0-5.5, [Fe/H] -2.0..+1.0, solar [α/Fe]),
    the training set with ``seed``, the held-out set with ``seed + 1``.
    """
    import remap
    from remap.datasets import Dataset, build_synthetic, draw_labels

    library = remap.get_library("linelist")
    survey = remap.get_survey("marvels")
    sets = []
    for which, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        path = Path(directory) / f"{which}-n{n}-seed{s}"
        labels = draw_labels(library.domain, n, s)
        start = time.perf_counter()
        summary = build_synthetic(path, library, survey, labels, seed=s, beams=["A"],
                                  shard_size=10, workers=workers)
        built = summary["shards_written"]
        print(f"  {which}: {n} label points, {summary['n_samples']} spectra "
              f"({'built' if built else 'cached'} in {time.perf_counter() - start:.1f} s) "
              f"-> {path}", flush=True)
        sets.append(Dataset(path))
    return sets


def train_network(train, config, *, epochs_per_cycle, n_cycles, batch_size=64, seed=0,
                  lr_max=1e-3, lr_min=1e-5):
    """Build and train the deep-REMAP network on beam A of ``train``; return it and seconds."""
    import keras

    import remap
    from remap.labels import LabelEncoder
    from remap.nn.model import build_model, compile_model
    from remap.train.loop import StageSchedule, train_stage

    heads = [remap.get_head(n) for n in remap.list_heads()]
    keras.utils.set_random_seed(seed)
    model = build_model(config, heads, train.manifest["beams"]["A"]["npix"])
    compile_model(model, heads, optimizer=keras.optimizers.Adam(lr_max))
    encoder = LabelEncoder(heads, train.label_names)
    ds = train.to_tf("A", batch_size, shuffle=True, seed=seed, label_encoder=encoder,
                     drop_remainder=True)
    steps = len(train) // batch_size
    start = time.perf_counter()
    schedule = StageSchedule(lr_max=lr_max, lr_min=lr_min, epochs_per_cycle=epochs_per_cycle,
                             n_cycles=n_cycles, steps_per_epoch=steps, swa=n_cycles > 1)
    history = train_stage(model, ds, None, schedule, seed=seed, verbose=0)
    seconds = time.perf_counter() - start
    return model, seconds, history


def _randomized_svd(x, k, *, seed=0, oversample=20, power=3):
    """Top-``k`` right singular vectors and values of ``x`` (Halko et al. 2011, Alg. 4.4)."""
    rng = np.random.default_rng(seed)
    q = x @ rng.standard_normal((x.shape[1], k + oversample))
    q, _ = np.linalg.qr(q)
    for _ in range(power):
        q, _ = np.linalg.qr(x.T @ q)
        q, _ = np.linalg.qr(x @ q)
    _, s, vt = np.linalg.svd(q.T @ x, full_matrices=False)
    return s[:k], vt[:k]


def _ridge_fit(z, y, alpha):
    """Closed-form ridge weights (with intercept) of ``y`` on ``z``."""
    zm, ym = z.mean(0), y.mean(0)
    zc = z - zm
    w = np.linalg.solve(zc.T @ zc + alpha * np.eye(z.shape[1]), zc.T @ (y - ym))
    return w, ym - zm @ w


def pca_ridge(x_train, y_train, groups, x_test, *, components=(10, 20, 50, 100, 200),
              alphas=np.logspace(-4, 2, 13), folds=5, seed=0):
    """PCA + ridge regression baseline; hyper-parameters by grouped K-fold CV.

    Parameters
    ----------
    x_train : ndarray (n, npix)
    y_train : ndarray (n, n_labels)
    groups : ndarray (n,)
        Label-point index of each training spectrum: the folds never split a
        label point's 45 augmented spectra, so the validation error is that
        of new stars.
    x_test : ndarray (m, npix)
    components : sequence of int
        Numbers of principal components tried.
    alphas : sequence of float
        Ridge strengths tried (on scores scaled by the training spectra's
        total standard deviation).

    Returns
    -------
    y_pred : ndarray (m, n_labels)
    chosen : dict
        ``components``, ``alpha`` and the CV error (standardized RMS).
    """
    kmax = min(max(components), min(x_train.shape) - 1)
    components = sorted({min(k, kmax) for k in components})
    mean = x_train.mean(0)
    scale = y_train.std(0)
    ys = (y_train - y_train.mean(0)) / scale
    xc = x_train - mean
    _, vt = _randomized_svd(xc, kmax, seed=seed)
    z_all = xc @ vt.T
    z_scale = z_all[:, 0].std()  # one scale for all scores keeps the PCA metric
    z_all /= z_scale
    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    fold_of = dict(zip(unique, rng.permutation(len(unique)) % folds))
    fold = np.array([fold_of[g] for g in groups])
    best = None
    for k in components:
        for alpha in alphas:
            sq = 0.0
            for f in range(folds):
                tr, va = fold != f, fold == f
                w, b = _ridge_fit(z_all[tr, :k], ys[tr], alpha)
                sq += np.sum((z_all[va, :k] @ w + b - ys[va]) ** 2)
            err = np.sqrt(sq / ys.size)
            if best is None or err < best[0]:
                best = (err, k, alpha)
    err, k, alpha = best
    # the scores were computed with PCA on all training spectra (unsupervised: no labels)
    w, b = _ridge_fit(z_all[:, :k], ys, alpha)
    z_test = (x_test - mean) @ vt[:k].T / z_scale
    return (z_test @ w + b) * scale + y_train.mean(0), {"components": k, "alpha": float(alpha),
                                                        "cv_rms": float(err)}


def score(pred, true):
    """Bias and scatter (and RMS) of ``pred - true``."""
    diff = np.asarray(pred, float) - np.asarray(true, float)
    return {"bias": float(diff.mean()), "scatter": float(diff.std()),
            "rms": float(np.sqrt(np.mean(diff ** 2)))}


def _print_rows(rows, title):
    print(f"\n{title}")
    print(f"  {'beam':<5} {'npix':>5} {'method':<32} {'batch':>6} {'spectra/s':>10}")
    for r in rows:
        print(f"  {r['beam']:<5} {r['npix']:>5} {r['method']:<32} {r['batch']:>6} "
              f"{r['rate']:10.0f}")


def main(quick=False):
    """Run the benchmark, print its tables and write ``results/network/summary-*.json``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tempfile

    import keras
    import tensorflow as tf

    import remap
    from remap.model import load_model, save_model
    from remap.labels import LabelBins
    from remap.nn.model import NetworkConfig, build_model

    tf.config.experimental.enable_op_determinism()
    heads = [remap.get_head(n) for n in remap.list_heads()]
    survey = remap.get_survey("marvels")
    config = NetworkConfig()
    n_flux = 1024 if quick else 4096
    rng = np.random.default_rng(0)
    results = {"quick": bool(quick), "cpus": os.cpu_count(), "config": config.to_dict(),
               "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}
    print(f"network benchmark: default NetworkConfig {config.to_dict()}")
    print(f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"load average {load_average():.1f} at start")

    # ---------------------------------------------------------------- (a) speed
    infer, train_rows, params = [], [], {}
    with tempfile.TemporaryDirectory(prefix="remap-bench-") as tmp:
        for beam in survey.beams:
            npix = survey.beams[beam].npix
            keras.utils.set_random_seed(0)
            model = build_model(config, heads, npix, name=f"beam_{beam}")
            params[beam] = int(model.count_params())
            flux = (1 + 0.01 * rng.standard_normal((n_flux, npix))).astype(np.float32)
            path = save_model(Path(tmp) / f"art_{beam}", {beam: model}, {"survey": "marvels"})
            loaded = load_model(path)
            rows = inference_throughput(model, flux, (256, 1024), artifact_model=loaded,
                                        beam=beam, repeats=1 if quick else 3)
            for r in rows:
                r.update(beam=beam, npix=npix)
            infer += rows
            labels = np.column_stack([rng.uniform(h.low, h.high, 256) for h in heads])
            for bs in ((64,) if quick else (64, 256)):
                keras.utils.set_random_seed(0)
                tmodel = build_model(config, heads, npix)
                rows = training_throughput(tmodel, heads, flux, labels,
                                           [h.name for h in heads], bs,
                                           steps=3 if quick else 6, repeats=1 if quick else 2)
                for r in rows:
                    r.update(beam=beam, npix=npix)
                train_rows += rows
    print("\nparameters: " + ", ".join(f"beam {b}: {p:,}" for b, p in params.items()))
    _print_rows(infer, f"inference throughput ({n_flux} spectra; best of "
                       f"{1 if quick else 3} runs after a warm-up)")
    _print_rows(train_rows, "training throughput (focal + triplet loss, Adam)")
    print(f"  load average now {load_average():.1f}")
    results.update(parameters=params, inference=infer, training=train_rows)

    # ---------------------------------------------------------------- (b) accuracy
    n_train, n_test = (100, 30) if quick else (400, 100)
    epochs_per_cycle, n_cycles = (3, 2) if quick else (8, 3)
    print(f"\naccuracy: linelist library, MARVELS beam A, {n_train} training / {n_test} "
          f"held-out label points x 45 augmentations")
    train, test = build_sets(n_train, n_test)
    names = [h.name for h in heads]
    cols = [train.label_names.index(n) for n in names]
    x_tr, _, y_tr, _ = train.read_arrays(np.arange(len(train)), "A")
    x_te, _, y_te, _ = test.read_arrays(np.arange(len(test)), "A")
    y_tr, y_te = y_tr[:, cols], y_te[:, cols]
    groups = np.asarray(train.labels["label_point"])

    start = time.perf_counter()
    y_pca, chosen = pca_ridge(x_tr.astype(np.float64), y_tr, groups, x_te.astype(np.float64))
    t_pca = time.perf_counter() - start
    print(f"  PCA + ridge: {chosen['components']} components, alpha {chosen['alpha']:.3g} "
          f"(grouped 5-fold CV, standardized RMS {chosen['cv_rms']:.3f}); {t_pca:.1f} s")

    model, t_net, history = train_network(train, config, n_cycles=n_cycles,
                                          epochs_per_cycle=epochs_per_cycle)
    losses = history.get("loss", [])
    print(f"  network: {epochs_per_cycle * n_cycles} epochs ({n_cycles} cosine cycles"
          f"{', SWA' if n_cycles > 1 else ''}), {len(train) // 64} steps of 64 per epoch, "
          f"{t_net:.0f} s ({len(train) // 64 * 64 * epochs_per_cycle * n_cycles / t_net:.0f} "
          f"spectra/s); loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else
          f"  network trained in {t_net:.0f} s")
    out = model.predict(x_te, batch_size=256, verbose=0)
    y_net = np.column_stack([LabelBins(h).decode(out[h.name])["median"] for h in heads])

    print(f"\nheld-out accuracy ({len(x_te)} spectra of {n_test} label points; bias = mean, "
          f"scatter = std of predicted - true)")
    print(f"  {'parameter':<10} {'unit':<5} {'method':<22} {'bias':>9} {'scatter':>9} "
          f"{'rms':>9}")
    table = []
    for j, h in enumerate(heads):
        for method, pred in (("deep-REMAP (median)", y_net[:, j]), ("PCA + ridge", y_pca[:, j]),
                             ("predict the mean", np.full(len(y_te), y_tr[:, j].mean()))):
            s = score(pred, y_te[:, j])
            table.append({"parameter": h.name, "method": method, **s})
            print(f"  {h.name:<10} {h.unit.to_string():<5} {method:<22} {s['bias']:9.3f} "
                  f"{s['scatter']:9.3f} {s['rms']:9.3f}")
        if h.name in PAPER:
            print(f"  {'':<10} {'':<5} {'(paper, real stars)':<22} {PAPER[h.name][0]:9.3f} "
                  f"{PAPER[h.name][1]:9.3f}")
    results.update(accuracy=table, pca=chosen, network_seconds=t_net, pca_seconds=t_pca,
                   n_train=n_train, n_test=n_test, epochs=epochs_per_cycle * n_cycles)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    summary = RESULTS_DIR / f"summary-{'quick' if quick else 'full'}.json"
    summary.write_text(json.dumps(results, indent=1))
    print(f"\nload average at the end {load_average():.1f}; results written to {summary}")
