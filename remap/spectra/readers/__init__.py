"""Reading spectrum files: one reader for ``remap fit``, ``remap normalize`` and catalogues.

:func:`read_spectrum` reads the spectrum of one star from a file.  It asks,
in this order:

1. the specutils I/O registry (every format specutils identifies, including
   ``remap-beam`` and the remap readers below, which are registered as
   specutils ``data_loader`` s on ``import remap``);
2. when the identified reader fails, or none identifies the file, remap's own
   readers whose (looser) test accepts the file;

and raises a :class:`~remap.exceptions.SpectrumFileError` naming the file and
every reader tried when none succeeds.

remap's readers (specutils format names):

``remap-fits1d``
    1-D FITS images with a linear (``CRVAL1`` + ``CDELT1``/``CD1_1``,
    ``CRPIX1``), log10-linear (``DC-FLAG = 1``, ``CTYPE1 = 'LOGLAM'``/``'LOG*'``,
    SDSS ``COEFF0``/``COEFF1``) or FITS ``-LOG`` dispersion, whatever their
    ``BUNIT``.  A ``BUNIT`` astropy cannot parse (``'DU/PIXEL'`` of MIKE,
    ``'COUNTS/PIXEL'``, ...) or a missing one gives flux in arbitrary units
    (dimensionless), with a note.  IRAF ``onedspec`` files with bands
    (``NAXIS3``, ``BANDIDn``) give the first band as flux and a ``sigma``
    band as uncertainty.  Registered to claim only the files that specutils'
    ``wcs1d-fits`` refuses (an unparseable ``BUNIT``) or misreads (a log10
    dispersion read as wavelengths of 3.7 Å).
``remap-table``
    FITS, ECSV, CSV and plain-text tables with wavelength and flux columns
    found by name (case-insensitive, see :data:`WAVELENGTH_NAMES`,
    :data:`FLUX_NAMES`, :data:`UNCERTAINTY_NAMES`, :data:`MASK_NAMES`),
    whatever the flux unit (dimensionless included, e.g. what
    ``Spectrum.write(..., format="tabular-fits")`` writes for a normalized
    spectrum), and header-less text files of 2-4 numeric columns (wavelength
    in Å, flux, uncertainty, mask).  ``loglam`` is log10 of the wavelength in
    Å.  A table whose wavelength column holds one row per echelle order
    (2-D) is merged like ``remap-echelle``.
``remap-multispec``
    IRAF multispec files (``CTYPE1 = 'MULTISPE'``, ``WAT2_nnn`` cards with
    ``specN = "..."``): linear, log-linear and Chebyshev/Legendre
    (``ftype`` 1/2) dispersions per order; then merged as below.
``remap-echelle``
    FITS files with a 2-D flux image ``(n_orders, n_pix)`` and a wavelength
    image of the same shape (``EXTNAME`` ``WAVE``, ``WAVELENGTH``, ``LAMBDA``,
    ...), optionally uncertainty (``ERR``, ``SIGMA``, ``VAR``, ``IVAR``) and
    mask images.

Multi-order spectra (the last two, and 2-D table columns) are merged by
:func:`merge_orders`: each order is continuum-normalized (with the
``clipped`` fitter by default, :data:`ORDER_FITTER`), then the orders are
resampled onto one log-uniform grid (the median native ``d ln λ``) and
averaged with inverse-variance weights where they overlap.  The result is
dimensionless, with a note in ``meta``.

Every spectrum returned has ``meta["file"]``, ``meta["reader"]`` (the
format that read it), ``meta["reader_notes"]`` (a list of what was assumed or
done) and, when anything declares it, ``meta["wavelength_medium"]``:
the ``medium=`` argument, or the header (:func:`remap.spectra.medium.medium_from_header`:
``AIRORVAC``, ``WAVE_MED``, ``VACUUM``, ``CTYPE1 = 'AWAV'/'WAVE'``), a column
named ``wavelength_air``/``wave_vac``..., or the survey convention of a
specutils format (SDSS, APOGEE and DESI files are in vacuum).

The package has one module per format (``fits1d``, ``table``, ``multispec``,
``echelle``), ``merge`` (:func:`merge_orders`), ``registry`` (:func:`register`)
and ``read`` (:func:`read_spectrum`); every public name is importable from
``remap.spectra.readers``.
"""

from __future__ import annotations

from .merge import ORDER_FITTER, merge_orders
from .read import VACUUM_FORMAT_PREFIXES, read_spectrum
from .registry import REMAP_FORMATS, register
from .table import FLUX_NAMES, MASK_NAMES, UNCERTAINTY_NAMES, WAVELENGTH_NAMES

__all__ = ["read_spectrum", "merge_orders", "ORDER_FITTER", "REMAP_FORMATS", "WAVELENGTH_NAMES",
           "FLUX_NAMES", "UNCERTAINTY_NAMES", "MASK_NAMES", "VACUUM_FORMAT_PREFIXES", "register"]

register()
