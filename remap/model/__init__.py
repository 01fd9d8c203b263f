"""Trained models: the artifact format, its safety checks and the runtime model.

The artifact format is defined in :mod:`remap.model.artifact`, the template
spectra in :mod:`remap.model.templates`; both are re-exported here.
"""

from . import artifact as _artifact
from . import templates as _templates
from .artifact import *  # noqa: F401,F403
from .templates import *  # noqa: F401,F403

__all__ = list(_artifact.__all__) + list(_templates.__all__)
