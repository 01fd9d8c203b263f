"""The learning-rate range test (Smith 2017; Gilda 2025, §4.6).

Starting from a very small learning rate, the rate grows exponentially at
every step of training until the loss blows up.  The paper picks the maximum
learning rate "a little lower than that corresponding to the loss minimum —
where the loss is both low and still decreasing", and the minimum rate 100×
smaller (pre-training: 1e-3 → 1e-5).  `find_lr` turns that rule into numbers
in one of two ways (``rule``):

* ``"steepest"`` (default): ``lr_max`` is the learning rate where the
  smoothed loss falls fastest with log(learning rate), searched only below the
  loss minimum.  That point is "low and still decreasing" by construction, and
  it does not depend on how far the loss keeps creeping down on a plateau
  after the steep part: in a short test the loss also falls because the
  network is learning, which drags the minimum to very high rates (on the
  default CPU set the minimum sat at 0.6 and "minimum / 10" gave 0.08, where
  every warm restart undid the previous cycle, while the steepest descent was
  at 1.5e-3 to 3e-3);
* ``"minimum"``: ``lr_max`` = (learning rate at the minimum of the smoothed
  loss) / 10, one decade below the minimum.

In both, ``lr_min`` = ``lr_max`` / 100, and the loss is smoothed with a
bias-corrected exponential moving average.  The plot
(`LRFinderResult.plot`) shows the curve and the choice so it can be checked
by eye.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from .._util.fs import atomic_path
from .._util.validators import check_int, check_real

__all__ = ["find_lr", "LRFinderResult", "suggest_lr"]


def suggest_lr(lrs, smoothed, *, rule="steepest", factor=10.0, ratio=100.0, window=5):
    """The limits suggested by a range test (the rules of `find_lr`).

    Parameters
    ----------
    lrs, smoothed : array_like
        Learning rates (increasing) and the smoothed loss at each of them.
    rule : {"steepest", "minimum"}
        ``"steepest"``: ``lr_max`` at the most negative slope of the smoothed
        loss against log10(learning rate), the slope being a least-squares
        line through ``window`` consecutive points, searched at rates below
        the loss minimum (falling back to ``"minimum"`` when fewer than
        ``window`` points lie there).  ``"minimum"``: ``lr_max = lr(argmin
        smoothed) / factor``.
    factor : float
        Divisor of the ``"minimum"`` rule.
    ratio : float
        ``lr_min = lr_max / ratio``.
    window : int
        Points per slope estimate of the ``"steepest"`` rule (>= 2).

    Returns
    -------
    lr_max, lr_min : float
        ``lr_max`` is not allowed below the first learning rate tried.

    Raises
    ------
    ValueError
        No finite loss, or an unknown rule.
    """
    if rule not in ("steepest", "minimum"):
        raise ValueError(f"rule must be 'steepest' or 'minimum'; received rule={rule!r}")
    window = check_int("window", window, 2)
    lrs = np.asarray(lrs, dtype=float)
    smoothed = np.asarray(smoothed, dtype=float)
    ok = np.isfinite(smoothed)
    if not ok.any():
        raise ValueError("no finite loss was recorded; lower lr_start")
    i = int(np.argmin(np.where(ok, smoothed, np.inf)))
    lr_max = lrs[i] / factor
    if rule == "steepest" and i + 1 >= window:
        x = np.log10(lrs[:i + 1])
        y = smoothed[:i + 1]
        slopes = []
        for j in range(i + 2 - window):
            xs, ys = x[j:j + window], y[j:j + window]
            xc = xs - xs.mean()
            slopes.append(np.dot(xc, ys - ys.mean()) / np.dot(xc, xc))
        j = int(np.argmin(slopes))
        # the centre of the steepest window, geometrically
        lr_max = float(10 ** x[j:j + window].mean())
    lr_max = max(lr_max, lrs[0])
    return float(lr_max), float(lr_max / ratio)


@dataclass
class LRFinderResult:
    """Result of `find_lr`.

    Attributes
    ----------
    lrs, losses, smoothed : ndarray
        Learning rate, training loss of the batch and smoothed loss at each step run.
    lr_max, lr_min : float
        The suggested limits of the cosine schedule (see the module docstring).
    diverged : bool
        Whether the test stopped early because the loss blew up.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    lr_max: float
    lr_min: float
    diverged: bool = False
    settings: dict = field(default_factory=dict)

    def plot(self, path, *, title=None):
        """Write the loss-versus-learning-rate plot to ``path`` (PNG, PDF, … by suffix), atomically.

        Returns
        -------
        path : `pathlib.Path`
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        fig = Figure(figsize=(6, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(self.lrs, self.losses, ".", color="0.6", ms=3, label="batch loss")
        ax.plot(self.lrs, self.smoothed, "-", color="C0", label="smoothed")
        ax.axvline(self.lr_max, color="C3", ls="--", label=f"lr_max = {self.lr_max:.2g}")
        ax.axvline(self.lr_min, color="C2", ls=":", label=f"lr_min = {self.lr_min:.2g}")
        ax.set_xscale("log")
        finite = self.smoothed[np.isfinite(self.smoothed)]
        if finite.size:
            low, high = finite.min(), np.percentile(finite, 95)
            pad = 0.1 * (high - low) if high > low else 1.0
            ax.set_ylim(low - pad, high + pad)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(title or "learning-rate range test")
        ax.legend(fontsize="small")
        fig.tight_layout()
        with atomic_path(path, prefix=f".{path.stem}-", suffix=path.suffix or ".png") as tmp:
            fig.savefig(tmp, dpi=120)
        return path


class _ExponentialRate(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, lr_start, lr_end, steps):
        super().__init__()
        self.lr_start, self.lr_end, self.steps = lr_start, lr_end, steps

    def __call__(self, step):
        frac = keras.ops.cast(step, "float32") / float(max(self.steps - 1, 1))
        return self.lr_start * keras.ops.exp(frac * math.log(self.lr_end / self.lr_start))

    def get_config(self):
        return {"lr_start": self.lr_start, "lr_end": self.lr_end, "steps": self.steps}


def _complete_targets(model, y):
    """Add targets that a deep-REMAP model's embedding outputs expect (``{head}_embedding``)."""
    if not isinstance(y, dict):
        return y
    out = dict(y)
    for name in model.output_names:
        if name not in out and name.endswith("_embedding") and name[:-10] in y:
            out[name] = y[name[:-10]]
    return out


def find_lr(model, dataset, *, lr_start=1e-7, lr_end=10.0, steps=100, divergence=4.0,
            beta=0.9, optimizer_factory=None, seed=0, rule="steepest"):
    """Learning-rate range test: train with an exponentially growing learning rate.

    The learning rate of step ``i`` (0-based) is ``lr_start · (lr_end /
    lr_start) ** (i / (steps - 1))``.  The test stops early when the smoothed
    loss exceeds ``divergence`` × its lowest value so far, or the loss is not
    finite.  The model's variables (weights, batch-norm statistics, dropout
    RNG states) are restored afterwards, and its compiled optimizer is not
    touched: the test uses an optimizer of its own.

    Parameters
    ----------
    model : `keras.Model`
        A compiled model (its loss is used).
    dataset : `tf.data.Dataset`
        Training batches ``(inputs, targets)``; repeated if it runs out.
        Targets that are a dict of head PMFs are completed for the model's
        ``{head}_embedding`` outputs.
    lr_start, lr_end : float
        Range of learning rates, ``0 < lr_start < lr_end``.
    steps : int
        Number of steps (>= 5).
    divergence : float
        Stop when the smoothed loss exceeds this factor × its minimum (> 1).
    beta : float
        Smoothing factor of the exponential moving average of the loss, in [0, 1).
    optimizer_factory : callable, optional
        ``optimizer_factory(learning_rate) -> keras optimizer``; default Adam
        (the paper's optimizer).
    seed : int
        Seeds Python, NumPy and the Keras/TF global generators.
    rule : {"steepest", "minimum"}
        How the limits are read off the curve (`suggest_lr`).

    Returns
    -------
    result : `LRFinderResult`
    """
    import tensorflow as tf

    check_real("lr_start", lr_start, 0, strict_min=True)
    check_real("lr_end", lr_end, 0, strict_min=True)
    if not lr_start < lr_end:
        raise ValueError(f"lr_start must be < lr_end; received lr_start={lr_start!r}, "
                         f"lr_end={lr_end!r}")
    check_int("steps", steps, 5)
    check_real("divergence", divergence, 1, strict_min=True)
    check_real("beta", beta, 0, 1, strict_max=True)
    if rule not in ("steepest", "minimum"):
        raise ValueError(f"rule must be 'steepest' or 'minimum'; received rule={rule!r}")
    if not getattr(model, "compiled", False):
        raise ValueError(f"find_lr needs a compiled model (it uses the model's loss); "
                         f"model {model.name!r} is not compiled")
    keras.utils.set_random_seed(int(seed))

    schedule = _ExponentialRate(float(lr_start), float(lr_end), int(steps))
    optimizer = (optimizer_factory or (lambda lr: keras.optimizers.Adam(learning_rate=lr)))(
        schedule)
    saved = [np.array(v.numpy()) for v in model.variables]

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        pairs = [(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None]
        optimizer.apply_gradients(pairs)
        return loss

    lrs, losses, smoothed = [], [], []
    diverged = False
    best = np.inf
    avg = 0.0
    try:
        iterator = iter(dataset.repeat())
        for i in range(int(steps)):
            element = next(iterator)
            x, y = element[0], _complete_targets(model, element[1])
            lr = float(schedule(i))
            loss = float(train_step(x, y))
            lrs.append(lr)
            losses.append(loss)
            if not math.isfinite(loss):
                smoothed.append(np.nan)
                diverged = True
                break
            avg = beta * avg + (1 - beta) * loss
            s = avg / (1 - beta ** (i + 1))
            smoothed.append(s)
            best = min(best, s)
            if i > 0 and s > divergence * best:
                diverged = True
                break
    finally:
        for v, a in zip(model.variables, saved):
            v.assign(a)
    lrs, losses, smoothed = (np.asarray(a, dtype=float) for a in (lrs, losses, smoothed))
    lr_max, lr_min = suggest_lr(lrs, smoothed, rule=rule)
    return LRFinderResult(lrs=lrs, losses=losses, smoothed=smoothed, lr_max=lr_max,
                          lr_min=lr_min, diverged=diverged,
                          settings={"lr_start": float(lr_start), "lr_end": float(lr_end),
                                    "steps": int(steps), "divergence": float(divergence),
                                    "beta": float(beta), "seed": int(seed), "rule": rule})
