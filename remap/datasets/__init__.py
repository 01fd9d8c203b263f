"""On-disk training sets.

* :mod:`remap.datasets.format` -- the HDF5-shards-and-manifest format:
  `DatasetWriter`, `ShardWriter` and `Dataset` (with its tf.data reader,
  :meth:`Dataset.to_tf`);
* :mod:`remap.datasets.build` -- building synthetic sets from a library
  (label draws, augmentation, local processes or Dask tasks).
"""

from .format import *  # noqa: F401,F403
from .format import __all__ as _format_all
from .build import *  # noqa: F401,F403
from .build import __all__ as _build_all

__all__ = [*_format_all, *_build_all]
