"""Inference: :func:`fit` and :func:`fit_iter` as a pipeline of stages over array batches.

* :mod:`remap.inference.pipeline` -- :func:`fit`, :func:`fit_iter`, :func:`pipeline`;
* :mod:`remap.inference.stages` -- the `Stage` classes, in the order of
  :data:`DEFAULT_STAGES`, and :func:`build_pipeline`;
* :mod:`remap.inference.batch` -- the array `Batch` the stages pass on;
* :mod:`remap.inference.context` -- the per-star `Context` (notes, flags,
  values, timings);
* :mod:`remap.inference.flags` -- `Flag`, the flag rules and their thresholds;
* :mod:`remap.inference.result` -- `FitResult` and `ParameterResult`.
"""

from .batch import Batch
from .context import Context, Note
from .flags import Flag
from .pipeline import (DEFAULT_MODEL_PATH, cached_model, default_model, fit, fit_iter,
                       pipeline)
from .result import Column, FitResult, ParameterResult
from .stages import DEFAULT_STAGES, NETWORK_ROWS, Pipeline, Stage, build_pipeline

__all__ = ["fit", "fit_iter", "pipeline", "default_model", "cached_model",
           "DEFAULT_MODEL_PATH", "DEFAULT_STAGES", "NETWORK_ROWS", "Stage", "Pipeline",
           "build_pipeline", "Batch", "Context", "Note", "Flag", "FitResult",
           "ParameterResult", "Column"]
