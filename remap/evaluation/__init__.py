"""Evaluation of a model on labelled spectra: metrics, reports, figures, embeddings.

Everything is defined in :mod:`remap.evaluation.report` and re-exported here.
"""

from .report import *  # noqa: F401,F403
from .report import __all__  # noqa: F401
