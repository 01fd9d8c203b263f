"""Training of deep-REMAP networks.

The submodules are imported on their own (``from remap.train.loop import
train_stage``) so that importing one does not pull in the others:

* `remap.train.schedules` — cosine annealing with warm restarts;
* `remap.train.callbacks` — stochastic weight averaging, batch-norm
  re-estimation and per-epoch checkpoints with resume;
* `remap.train.lr_finder` — the learning-rate range test;
* `remap.train.loop` — one training stage (Adam + schedule + SWA +
  checkpoints + logs) and pre-training with the paper's settings;
* `remap.train.finetune`, `remap.train.cv`, `remap.train.config`,
  `remap.train.runner` — fine-tuning, cross-validation, configuration files and
  the ``remap train`` command.
"""

__all__ = []
