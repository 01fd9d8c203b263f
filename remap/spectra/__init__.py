"""Spectra at the edge of remap: validation, wavelength media and file formats.

* :mod:`remap.spectra.validation` -- checking and preparing `specutils.Spectrum`
  inputs (`prepare`);
* :mod:`remap.spectra.medium` -- air and vacuum wavelengths;
* :mod:`remap.spectra.io` -- the ``remap-beam`` file format (registered with
  specutils on import).
"""

from .validation import *  # noqa: F401,F403
from .validation import __all__ as _validation_all
from . import medium, io  # noqa: F401

__all__ = list(_validation_all)
