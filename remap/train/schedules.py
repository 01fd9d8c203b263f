"""Learning-rate schedules: cosine annealing with warm restarts.

Gilda (2025, §4.6) trains with the cosine annealing policy of Loshchilov &
Hutter (2016): within each cycle the learning rate falls from ``lr_max`` to
``lr_min`` along half a cosine and then restarts at ``lr_max``.  The paper uses
4 cycles of 30 epochs with ``lr_max = 1e-3`` and ``lr_min = 1e-5`` for
pre-training.
"""

import math

import keras

from .._util.validators import check_int, check_real

__all__ = ["CosineRestarts"]


@keras.saving.register_keras_serializable(package="remap")
class CosineRestarts(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing with warm restarts, in cycles of equal length.

    At optimizer step ``t`` (0-based) inside cycle ``c = t // steps_per_cycle``
    the learning rate is

    .. math::

        \\eta(t) = \\eta_{min} + \\tfrac12 (\\eta_{max} - \\eta_{min})
                   \\left[1 + \\cos\\left(\\pi \\frac{t \\bmod S}{S}\\right)\\right],

    with ``S = steps_per_cycle`` (Loshchilov & Hutter 2016, Eq. 5, with the
    cycle length fixed and no decay of ``lr_max`` between cycles).  It is
    ``lr_max`` at the first step of every cycle and approaches ``lr_min`` at
    its last step (``t mod S = S - 1``); the next step restarts at ``lr_max``.
    After ``n_cycles`` cycles (``t >= n_cycles * S``) it stays at ``lr_min``.

    Parameters
    ----------
    lr_max : float
        Learning rate at the start of each cycle (> 0).
    lr_min : float
        Learning rate at the end of each cycle (0 <= lr_min <= lr_max).
    steps_per_cycle : int
        Optimizer steps per cycle (epochs per cycle × steps per epoch).
    n_cycles : int
        Number of cycles.
    name : str, optional
    """

    def __init__(self, lr_max, lr_min, steps_per_cycle, n_cycles, name="cosine_restarts"):
        super().__init__()
        check_real("lr_max", lr_max)
        check_real("lr_min", lr_min)
        if not lr_max > 0:
            raise ValueError(f"lr_max must be > 0; received lr_max={lr_max!r}")
        if not 0 <= lr_min <= lr_max:
            raise ValueError(f"lr_min must satisfy 0 <= lr_min <= lr_max; received "
                             f"lr_min={lr_min!r}, lr_max={lr_max!r}")
        self.lr_max = float(lr_max)
        self.lr_min = float(lr_min)
        self.steps_per_cycle = check_int("steps_per_cycle", steps_per_cycle, 1)
        self.n_cycles = check_int("n_cycles", n_cycles, 1)
        self.name = name

    @property
    def total_steps(self):
        """Steps in all cycles together."""
        return self.steps_per_cycle * self.n_cycles

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        period = float(self.steps_per_cycle)
        phase = (step - ops.floor(step / period) * period) / period
        cosine = 0.5 * (1.0 + ops.cos(math.pi * phase))
        lr = self.lr_min + (self.lr_max - self.lr_min) * cosine
        done = ops.greater_equal(step, float(self.total_steps))
        return ops.where(done, ops.cast(self.lr_min, "float32"), lr)

    def value(self, step):
        """Learning rate at ``step`` as a Python float (same formula, in float64)."""
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0; received step={step!r}")
        if step >= self.total_steps:
            return self.lr_min
        phase = (step % self.steps_per_cycle) / self.steps_per_cycle
        return self.lr_min + (self.lr_max - self.lr_min) * 0.5 * (1.0 + math.cos(math.pi * phase))

    def get_config(self):
        return {"lr_max": self.lr_max, "lr_min": self.lr_min,
                "steps_per_cycle": self.steps_per_cycle, "n_cycles": self.n_cycles,
                "name": self.name}
