"""Evaluation of a model on labelled spectra.

* :mod:`remap.evaluation.metrics` -- bias, scatter, coverage and PIT of PMFs;
* :mod:`remap.evaluation.report` -- :func:`evaluate` and `EvaluationReport`
  (tables, the one-to-one and calibration figures);
* :mod:`remap.evaluation.embedding` -- t-SNE maps of the embeddings.
"""

from .metrics import *  # noqa: F401,F403
from .metrics import __all__ as _metrics_all
from .report import *  # noqa: F401,F403
from .report import __all__ as _report_all
from .embedding import *  # noqa: F401,F403
from .embedding import __all__ as _embedding_all

__all__ = [*_metrics_all, *_report_all, *_embedding_all]
