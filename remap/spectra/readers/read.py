"""`read_spectrum`: the specutils registry first, then remap's readers, with every failure named."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

from astropy.io import registry as io_registry
from astropy.io.registry import compat as io_registry_compat
from astropy.utils.exceptions import AstropyUserWarning
from specutils import Spectrum, SpectrumList

from ...exceptions import SpectrumFileError
from ..io import FORMAT, read_beams
from ..medium import MEDIUM_KEY, medium_from_header, validate_medium
from ._common import _NOTES, _first_line, _fits_problem, _is_fits, _is_text
from .registry import _READERS, REMAP_FORMATS

__all__ = ["read_spectrum", "VACUUM_FORMAT_PREFIXES"]

#: specutils formats of surveys that publish vacuum wavelengths.
VACUUM_FORMAT_PREFIXES = ("SDSS", "APOGEE", "DESI", "MaNGA")


def _as_spectra(result, reader):
    """The list of spectra in what a reader returned (a Spectrum, SpectrumList or list)."""
    if isinstance(result, Spectrum):
        return [result]
    if isinstance(result, (list, tuple, SpectrumList)):
        spectra = [s for s in result if isinstance(s, Spectrum)]
        if spectra:
            return spectra
    raise SpectrumFileError(f"the {reader} reader returned no spectrum (got "
                            f"{type(result).__name__})")


def _identified(path):
    """specutils formats that identify ``path`` (SpectrumList readers), best first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        formats = io_registry.identify_format("read", SpectrumList, str(path), None, [], {})
    # the registry keeps (reader, priority) per format; astropy picks the highest
    readers = getattr(io_registry_compat.default_registry, "_readers", {})
    prio = {}
    for fmt in formats:
        entry = readers.get((fmt, SpectrumList))
        prio[fmt] = entry[1] if isinstance(entry, tuple) and len(entry) > 1 else 0
    return sorted(formats, key=lambda f: -prio[f])


def _read_with(path, fmt, fitter):
    """Read with one format: remap's own readers directly, others through specutils."""
    if fmt in _READERS:
        kwargs = {} if fitter is None else {"fitter": fitter}
        return [_READERS[fmt][0](str(path), **kwargs)]
    if fmt == FORMAT:
        return list(read_beams(path).values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _as_spectra(SpectrumList.read(str(path), format=fmt), fmt)


def _declare(spectra, path, fmt, medium):
    """Set file, reader, notes and the wavelength medium of every spectrum read."""
    out = []
    for spec in spectra:
        meta = dict(spec.meta or {})
        meta.setdefault("file", str(path))
        meta["reader"] = fmt
        meta[_NOTES] = list(meta.get(_NOTES, []))
        declared = meta.get(MEDIUM_KEY)
        source = "meta"
        if declared is None:
            try:
                declared = medium_from_header(meta.get("header"))
                source = "the header"
            except ValueError as exc:
                meta[_NOTES].append(f"medium not taken from the header: {exc}")
                declared = None
        if (declared is None and isinstance(fmt, str)
                and fmt.startswith(VACUUM_FORMAT_PREFIXES)):
            declared, source = "vacuum", f"the {fmt} convention"
        if declared is not None:
            declared = validate_medium(declared, f"{Path(path).name}: wavelength medium")
        if medium is not None:
            if declared is not None and declared != medium:
                warnings.warn(f"{Path(path).name}: {source} declares {declared} wavelengths, "
                              f"but medium={medium!r} was given; using {medium}",
                              AstropyUserWarning, stacklevel=3)
            meta[MEDIUM_KEY] = medium
        elif declared is not None:
            meta[MEDIUM_KEY] = declared
            if source != "meta":
                meta[_NOTES].append(f"wavelength medium {declared} from {source}")
        spec = copy.copy(spec)
        spec.meta = meta
        out.append(spec)
    return out


def read_spectrum(path, format=None, *, medium=None, fitter=None):
    """Read the spectrum of one star from a file, in whatever layout it comes.

    Parameters
    ----------
    path : str or path-like
    format : str or callable, optional
        A specutils format name (``"tabular-fits"``, ``"wcs1d-fits"``,
        ``"ECSV"``, ``"remap-beam"``, ``"remap-fits1d"``, ``"remap-table"``,
        ``"remap-multispec"``, ``"remap-echelle"``, ...), or a function
        ``reader(path) -> Spectrum | SpectrumList`` of your own.  Default:
        identify it (see the module description for the order).
    medium : {"air", "vacuum"}, optional
        The wavelength medium of the file's wavelengths; it overrides what
        the file declares (with a warning when they differ) and sets
        ``meta["wavelength_medium"]``.  Without it the medium comes from the
        file (see :func:`remap.spectra.medium.medium_from_header`) or stays
        undeclared; :func:`remap.fit` then assumes the survey's and warns.
    fitter : str or `remap.continuum.ContinuumFitter`, optional
        Continuum fitter for normalizing echelle orders before they are
        merged (default :data:`ORDER_FITTER`, ``"clipped"``).

    Returns
    -------
    spectrum : `specutils.Spectrum` or `specutils.SpectrumList`
        A single spectrum when the file holds one, else a ``SpectrumList``
        (one star: one spectrum per beam or per wavelength chunk, as
        :func:`remap.fit` takes it).  ``meta`` holds ``file``, ``reader``,
        ``reader_notes`` and, when known, ``wavelength_medium``.  Not
        validated: :func:`remap.prepare` / :func:`remap.fit` do that.

    Raises
    ------
    FileNotFoundError
        No such file.
    SpectrumFileError
        The path is not a regular file, the file is empty, or no reader can
        read it (the message names the file and the readers tried, with the
        reason each gave).
    ValueError
        ``medium`` is not ``"air"`` or ``"vacuum"``.

    Examples
    --------
    >>> import remap
    >>> spec = remap.read_spectrum("HD190406_mike.fits")        # doctest: +SKIP
    >>> spec.meta["reader"], spec.meta["reader_notes"]           # doctest: +SKIP
    ('remap-fits1d', ["flux unit 'DU/PIXEL' is not an astropy unit: ..."])
    """
    if medium is not None:
        medium = validate_medium(medium, "medium")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise SpectrumFileError(f"{path}: not a regular file")
    if callable(format):
        reader = getattr(format, "__name__", "custom")
        try:
            spectra = _as_spectra(format(str(path)), reader)
        except SpectrumFileError as exc:
            # a reader that calls read_spectrum itself has named the file already
            text = str(exc) if str(exc).startswith(f"{path}: ") else f"{path}: {exc}"
            raise SpectrumFileError(text) from None
        return _result(_declare(spectra, path, reader, medium))
    if path.stat().st_size == 0:
        raise SpectrumFileError(f"{path}: the file is empty (0 bytes)")
    # Readers of damaged files warn before they fail, and identification asks every
    # reader: keep their warnings (as hints for the error) and make what happens
    # independent of the caller's warning filters (pytest's "error", Dask workers').
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            spectra, fmt = _read_file(path, format, fitter)
        except SpectrumFileError as exc:
            hints = [_first_line(w.message) for w in caught
                     if not issubclass(w.category, (DeprecationWarning, ResourceWarning))]
            hint = f" (a reader warned: {hints[0]})" if hints and hints[0] not in str(exc) \
                else ""
            raise SpectrumFileError(f"{exc}{hint}") from None
    return _result(_declare(spectra, path, fmt, medium))


def _read_file(path, format, fitter):
    """(spectra, format) of a non-empty file; SpectrumFileError naming every reader tried."""
    name = path.name
    if format is not None:
        try:
            return _read_with(path, format, fitter), format
        except io_registry.IORegistryError as exc:
            raise SpectrumFileError(f"{path}: {_first_line(exc)}") from None
        except (SpectrumFileError, OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise SpectrumFileError(f"{path}: the {format} reader failed: "
                                    f"{type(exc).__name__}: {_first_line(exc)}") from None
    problem = _fits_problem(path) if _is_fits(path) else None
    if problem is not None:
        raise SpectrumFileError(f"{path}: a damaged FITS file ({problem})")
    tried = []
    candidates = _identified(path)
    fallbacks = [f for f in REMAP_FORMATS if f not in candidates]
    for fmt in candidates + fallbacks:
        if fmt in fallbacks and not _READERS[fmt][1]("read", str(path), None, strict=False):
            continue
        try:
            return _read_with(path, fmt, fitter), fmt
        except Exception as exc:  # noqa: BLE001 - readers raise anything on a bad file
            text = _first_line(exc).replace(f"{path}: ", "").replace(f"{name}: ", "")
            tried.append(f"the {fmt} reader failed ({type(exc).__name__}: {text})")
    if not tried:
        kind = "a FITS file" if _is_fits(path) else "a text file" if _is_text(path) else \
            "not FITS or text"
        raise SpectrumFileError(
            f"{path}: no reader recognises this file ({kind}); tried the specutils formats and "
            f"{', '.join(REMAP_FORMATS)}. Pass format= (remap fit --format) with a specutils "
            "format, or write wavelength and flux columns with common names")
    raise SpectrumFileError(f"{path}: " + "; ".join(tried))


def _result(spectra):
    return spectra[0] if len(spectra) == 1 else SpectrumList(spectra)
