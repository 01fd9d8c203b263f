"""On-disk training sets: the HDF5 format, the tf.data reader and the builders.

Everything is defined in :mod:`remap.datasets.core` and re-exported here.
"""

from .core import *  # noqa: F401,F403
from .core import __all__  # noqa: F401
