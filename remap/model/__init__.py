"""Trained models: the artifact format, its safety checks and the runtime model.

* :mod:`remap.model.artifact` -- the on-disk format: writing (`save_model`),
  hash checks (`verify_files`), the manifest;
* :mod:`remap.model.safety` -- the scan of the Keras archives before loading;
* :mod:`remap.model.loading` -- `load_model`;
* :mod:`remap.model.runtime` -- `RemapModel` (predictions, grids, embeddings,
  nearest neighbours) and `compute_embeddings`;
* :mod:`remap.model.templates` -- template spectra (`add_templates`);
* :mod:`remap.model.cache` -- the per-process model cache and the default model.
"""

from .artifact import *  # noqa: F401,F403
from .artifact import __all__ as _artifact_all
from .runtime import *  # noqa: F401,F403
from .runtime import __all__ as _runtime_all
from .loading import *  # noqa: F401,F403
from .loading import __all__ as _loading_all
from .templates import *  # noqa: F401,F403
from .templates import __all__ as _templates_all

__all__ = [*_artifact_all, *_runtime_all, *_loading_all, *_templates_all]
