"""Sphinx configuration of the remap documentation.

Build offline with ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
Links into the astropy, specutils, numpy and Python documentation (intersphinx)
need the network; they are switched on only when the environment variable
``REMAP_DOCS_INTERSPHINX`` is set to ``1``, so an offline build stays
warning-free.
"""

import datetime
import os
import sys
from importlib.metadata import PackageNotFoundError, version as dist_version

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

project = "remap"
author = "remap developers"
copyright = f"2024-{datetime.date.today().year}, {author}"
try:
    release = dist_version("remap")
except PackageNotFoundError:  # pragma: no cover - docs built without installing
    release = "unknown"
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "sphinx_automodapi.automodapi",
    "sphinx_automodapi.smart_resolver",
    "numpydoc",
    "sphinx_click",
    "remap_pipeline",       # docs/_ext: the stage table of docs/pipeline.rst
]

exclude_patterns = ["_build", "examples/remap_toy_survey/build", "**.egg-info"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
default_role = "obj"
nitpicky = False

# automodapi writes one page per public name under api/
automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_typehints = "none"
# methods overriding Keras ones (callbacks, optimizers) keep their own docs only
autodoc_inherit_docstrings = False

intersphinx_mapping = {}
if os.environ.get("REMAP_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "astropy": ("https://docs.astropy.org/en/stable/", None),
        "specutils": ("https://specutils.readthedocs.io/en/stable/", None),
        "pluggy": ("https://pluggy.readthedocs.io/en/stable/", None),
    }

try:
    import pydata_sphinx_theme  # noqa: F401
    html_theme = "pydata_sphinx_theme"
    html_theme_options = {"navigation_with_keys": False}
except ImportError:  # pragma: no cover - minimal environments
    html_theme = "alabaster"
html_title = f"remap {release}"
html_static_path = []
