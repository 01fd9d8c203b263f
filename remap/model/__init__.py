"""Trained models: the artifact format, its safety checks and the runtime model.

Everything is defined in :mod:`remap.model.artifact` and re-exported here.
"""

from .artifact import *  # noqa: F401,F403
from .artifact import __all__  # noqa: F401
