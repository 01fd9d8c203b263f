"""The ``remap-beam`` file format: per-beam spectra as FITS or ECSV tables.

remap stores spectra that have been cut into survey beams (see
:meth:`remap.surveys.Survey.split`) in one file per star, either as FITS
(``.fits``/``.fit``) or as ECSV (``.ecsv``).  Importing :mod:`remap` registers
the format with specutils, so that::

    from specutils import Spectrum, SpectrumList
    spec = Spectrum.read("star.fits", format="remap-beam")          # one-beam file
    spec = Spectrum.read("star.fits", format="remap-beam", beam="B")
    both = SpectrumList.read("star.fits", format="remap-beam")     # every beam
    spec.write("star_A.ecsv", format="remap-beam")

and the plain functions :func:`write_beams` / :func:`read_beams` work with a
mapping ``beam name -> Spectrum``.

**Layout.** Columns (one row per pixel):

``wavelength``
    spectral axis, with its unit (any spectral unit; remap writes what it is given);
``flux``
    flux with its unit; for a batch of ``N`` spectra sharing one axis, a
    vector column of length ``N``;
``uncertainty`` (optional)
    1-σ uncertainty (a `~astropy.nddata.StdDevUncertainty`; variances and
    inverse variances are converted when writing), same shape and unit as flux;
``mask`` (optional)
    boolean, True = bad pixel, same shape as flux.

Keywords (FITS header cards / ECSV table ``meta``):

``REMAPFMT``
    ``'remap-beam'``: the marker that identifies the format (files without
    it are never read as ``remap-beam``);
``REMAPVER``
    format version, currently 1;
``SURVEY``, ``MEDIUM``
    survey name and wavelength medium (``air``/``vacuum``), when known;
``BEAM``
    beam name (one per FITS extension / per ECSV single-beam file);
``COVERAGE``
    covered fraction of the beam range, when known.

A FITS file has an empty primary HDU carrying ``REMAPFMT``, ``REMAPVER``,
``SURVEY``, ``MEDIUM`` and ``NBEAMS``, then one binary-table extension per beam
named ``BEAM_<name>`` with ``BEAM`` (and ``COVERAGE``) in its header.  An ECSV
file is one table; with several beams it has a ``beam`` column and the
per-beam coverage in ``meta['COVERAGE']`` (a mapping); all beams of one ECSV
file must then be single spectra (1-D flux).

Reading returns the spectra as stored (no validation beyond the layout; run
:func:`remap.spectra.prepare` on them).  ``meta`` of each spectrum holds
``beam``, ``survey``, ``wavelength_medium``, ``coverage`` (when stored) and
``file``.  Writing is atomic: the file is written to a temporary file in the
same directory and moved into place with `os.replace`, so a failed write never
leaves a partial file behind.
"""

from __future__ import annotations

import logging
import os
import pathlib

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.io import registry as io_registry
from astropy.nddata import StdDevUncertainty
from astropy.table import Table, vstack

from .._util.fs import mkstemp
from ..exceptions import RemapError
from .medium import validate_medium
from .validation import stddev_of, spectrum_class

__all__ = ["FORMAT", "FORMAT_VERSION", "BeamFileError", "write_beams", "read_beams",
           "identify_remap_beam", "register"]

log = logging.getLogger(__name__)

#: Name of the format in the specutils/astropy I/O registry, and the marker value.
FORMAT = "remap-beam"

#: Version written to ``REMAPVER``.
FORMAT_VERSION = 1

_FITS_EXT = (".fits", ".fit", ".fts")
_ECSV_EXT = (".ecsv",)


class BeamFileError(RemapError, OSError):
    """A file cannot be read or written as ``remap-beam`` (corrupt, truncated, not this format)."""


def _kind(path):
    name = str(path).lower()
    if name.endswith(_FITS_EXT):
        return "fits"
    if name.endswith(_ECSV_EXT):
        return "ecsv"
    raise ValueError(f"{path}: cannot tell the remap-beam flavour from the extension; expected "
                     f"one of {', '.join(_FITS_EXT + _ECSV_EXT)}")


# ---------------------------------------------------------------------------- identify
def identify_remap_beam(origin, *args, **kwargs):
    """astropy I/O identifier: True only for a file carrying ``REMAPFMT = 'remap-beam'``.

    Parameters
    ----------
    origin : str
        ``"read"`` or ``"write"``.
    *args
        ``args[0]`` is the path (or file object); further arguments are ignored.
    **kwargs
        Ignored.

    Returns
    -------
    is_remap_beam : bool
    """
    path = args[0] if args else None
    if not isinstance(path, (str, os.PathLike)):
        return False
    try:
        kind = _kind(path)
    except ValueError:
        return False
    if origin == "write":
        return False  # writing needs an explicit format="remap-beam"
    try:
        if kind == "fits":
            with open(path, "rb") as fh:
                if fh.read(6) != b"SIMPLE":
                    return False
            header = fits.getheader(path, 0)
            return header.get("REMAPFMT") == FORMAT
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
            if not first.startswith("# %ECSV"):
                return False
            for line in fh:
                if not line.startswith("#"):
                    break
                compact = line.replace(" ", "").replace("'", "").strip()
                if "{REMAPFMT:remap-beam}" in compact or compact.endswith("REMAPFMT:remap-beam"):
                    return True
        return False
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------------- write
def _beam_table(spectrum, beam_name):
    """Table of one spectrum's columns."""
    Spectrum = spectrum_class()
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"beam {beam_name!r}: expected a specutils.Spectrum; received "
                        f"{type(spectrum).__name__}")
    axis = u.Quantity(spectrum.spectral_axis)
    flux = u.Quantity(spectrum.flux)
    if flux.ndim not in (1, 2):
        raise ValueError(f"beam {beam_name!r}: flux must be 1-D or 2-D; shape {flux.shape}")
    table = Table()
    table["wavelength"] = axis.copy()
    table["flux"] = flux.T.copy()
    std = stddev_of(spectrum.uncertainty, flux.shape, flux.unit)
    if std is not None:
        table["uncertainty"] = np.asarray(std, float).T * flux.unit
    if spectrum.mask is not None:
        mask = np.asarray(spectrum.mask, dtype=bool)
        if mask.shape != flux.shape:
            raise ValueError(f"beam {beam_name!r}: mask shape {mask.shape} differs from flux "
                             f"shape {flux.shape}")
        table["mask"] = mask.T.copy()
    return table


def _common(spectra, key, given):
    """The value of ``meta[key]`` shared by all spectra (or ``given``)."""
    if given is not None:
        return given
    values = {(s.meta or {}).get(key) for s in spectra} - {None}
    if len(values) > 1:
        raise ValueError(f"the spectra disagree on meta[{key!r}]: {sorted(map(str, values))}; "
                         f"pass {key.replace('wavelength_', '')}= explicitly")
    return values.pop() if values else None


def _write_fits(fh, spectra_by_beam, survey, medium):
    primary = fits.PrimaryHDU()
    primary.header["REMAPFMT"] = (FORMAT, "remap per-beam spectra")
    primary.header["REMAPVER"] = (FORMAT_VERSION, "remap-beam format version")
    if survey is not None:
        primary.header["SURVEY"] = (survey, "survey name")
    if medium is not None:
        primary.header["MEDIUM"] = (medium, "wavelength medium (air or vacuum)")
    primary.header["NBEAMS"] = (len(spectra_by_beam), "number of beam extensions")
    hdus = [primary]
    for name, spec in spectra_by_beam.items():
        table = _beam_table(spec, name)
        if "mask" in table.colnames:
            table["mask"] = table["mask"].astype(np.uint8)  # portable FITS logical
        hdu = fits.table_to_hdu(table)
        hdu.name = f"BEAM_{name}"
        hdu.header["REMAPFMT"] = FORMAT
        hdu.header["BEAM"] = (name, "beam name")
        coverage = (spec.meta or {}).get("coverage")
        if coverage is not None:
            hdu.header["COVERAGE"] = (float(coverage), "covered fraction of the beam range")
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(fh)


def _write_ecsv(fh, spectra_by_beam, survey, medium):
    tables = []
    coverage = {}
    multi = len(spectra_by_beam) > 1
    for name, spec in spectra_by_beam.items():
        table = _beam_table(spec, name)
        if multi and table["flux"].ndim > 1:
            raise ValueError(f"beam {name!r}: an ECSV file with several beams holds single "
                             "spectra only; write a batch to FITS or one beam per ECSV file")
        if multi:
            table["beam"] = np.full(len(table), name)
        cov = (spec.meta or {}).get("coverage")
        if cov is not None:
            coverage[name] = float(cov)
        tables.append(table)
    table = vstack(tables, metadata_conflicts="silent") if multi else tables[0]
    table.meta.clear()
    table.meta["REMAPFMT"] = FORMAT
    table.meta["REMAPVER"] = FORMAT_VERSION
    if survey is not None:
        table.meta["SURVEY"] = survey
    if medium is not None:
        table.meta["MEDIUM"] = medium
    if multi:
        table.meta["COVERAGE"] = coverage
    else:
        table.meta["BEAM"] = next(iter(spectra_by_beam))
        if coverage:
            table.meta["COVERAGE"] = next(iter(coverage.values()))
    table.write(fh, format="ascii.ecsv")


def write_beams(path, spectra_by_beam, overwrite=False, *, survey=None, medium=None):
    """Write per-beam spectra to one ``remap-beam`` file, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file; ``.fits``/``.fit``/``.fts`` for FITS, ``.ecsv`` for ECSV.
    spectra_by_beam : dict of str to `specutils.Spectrum`
        Beam name -> spectrum (1-D flux, or 2-D for a batch; FITS only when
        there are several beams).
    overwrite : bool
        Replace an existing file.
    survey : str, optional
        Survey name; defaults to the spectra's common ``meta["survey"]``.
    medium : {"air", "vacuum"}, optional
        Wavelength medium; defaults to the common ``meta["wavelength_medium"]``.

    Returns
    -------
    path : `pathlib.Path`
        The file written.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        Unknown extension, empty mapping, bad beam name or medium, spectra
        disagreeing on survey/medium, or shapes that the flavour cannot hold.
    TypeError
        A value is not a spectrum.
    BeamFileError
        Writing failed (nothing is left at ``path``; an existing file is kept).
    """
    path = pathlib.Path(path)
    kind = _kind(path)
    if not isinstance(spectra_by_beam, dict) or not spectra_by_beam:
        raise ValueError("spectra_by_beam must be a non-empty dict of beam name -> Spectrum")
    Spectrum = spectrum_class()
    for name, spec in spectra_by_beam.items():
        if not isinstance(name, str) or not name or not name.isprintable() or " " in name:
            raise ValueError(f"beam names must be non-empty strings without spaces; "
                             f"received {name!r}")
        if not isinstance(spec, Spectrum):
            raise TypeError(f"beam {name!r}: expected a specutils.Spectrum; received "
                            f"{type(spec).__name__}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    spectra = list(spectra_by_beam.values())
    survey = _common(spectra, "survey", survey)
    medium = _common(spectra, "wavelength_medium", medium)
    if medium is not None:
        medium = validate_medium(medium, "medium")
    directory = path.parent if str(path.parent) else pathlib.Path(".")
    fd, tmp = mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb" if kind == "fits" else "w") as fh:
            if kind == "fits":
                _write_fits(fh, spectra_by_beam, survey, medium)
            else:
                _write_ecsv(fh, spectra_by_beam, survey, medium)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (TypeError, ValueError):
        _remove(tmp)
        raise
    except Exception as exc:
        _remove(tmp)
        raise BeamFileError(f"{path}: writing the remap-beam file failed: "
                            f"{type(exc).__name__}: {exc}") from exc
    return path


def _remove(tmp):
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------- read
def _unit(column):
    unit = column.unit
    return u.dimensionless_unscaled if unit is None else u.Unit(unit)


def _spectrum_from_table(table, path, beam, survey, medium, coverage):
    Spectrum = spectrum_class()
    missing = [c for c in ("wavelength", "flux") if c not in table.colnames]
    if missing:
        raise BeamFileError(f"{path}: beam {beam!r} lacks the column(s) {', '.join(missing)}; "
                            "a remap-beam table needs wavelength and flux")
    try:
        wave = u.Quantity(table["wavelength"], _unit(table["wavelength"]))
        flux_unit = _unit(table["flux"])
        flux = np.asarray(table["flux"], dtype=float).T * flux_unit
        unc = None
        if "uncertainty" in table.colnames:
            unc_unit = _unit(table["uncertainty"])
            std = (np.asarray(table["uncertainty"], float).T * unc_unit).to(flux_unit)
            unc = StdDevUncertainty(std)
        mask = None
        if "mask" in table.colnames:
            mask = np.asarray(table["mask"]).astype(bool).T
        meta = {"beam": beam, "file": str(path)}
        if survey is not None:
            meta["survey"] = survey
        if medium is not None:
            meta["wavelength_medium"] = validate_medium(medium, "MEDIUM")
        if coverage is not None:
            meta["coverage"] = float(coverage)
        return Spectrum(flux=flux, spectral_axis=wave, uncertainty=unc, mask=mask, meta=meta)
    except BeamFileError:
        raise
    except (ValueError, TypeError, u.UnitsError) as exc:
        raise BeamFileError(f"{path}: beam {beam!r} cannot be turned into a spectrum: "
                            f"{exc}") from exc


def _read_fits(path):
    try:
        with fits.open(path, memmap=False) as hdul:
            hdul.verify("exception")
            header = hdul[0].header
            if header.get("REMAPFMT") != FORMAT:
                raise BeamFileError(f"{path}: not a remap-beam file (no REMAPFMT = "
                                    f"'{FORMAT}' in the primary header)")
            survey, medium = header.get("SURVEY"), header.get("MEDIUM")
            out = {}
            for hdu in hdul[1:]:
                if "BEAM" not in hdu.header:
                    continue
                beam = str(hdu.header["BEAM"])
                table = Table.read(hdu)
                out[beam] = (table, survey, medium, hdu.header.get("COVERAGE"))
            nbeams = header.get("NBEAMS")
            if nbeams is not None and nbeams != len(out):
                raise BeamFileError(f"{path}: the primary header announces {nbeams} beams but "
                                    f"{len(out)} beam extensions were found (truncated file?)")
    except BeamFileError:
        raise
    except Exception as exc:
        raise BeamFileError(f"{path}: cannot read as a remap-beam FITS file (corrupt or "
                            f"truncated?): {type(exc).__name__}: {exc}") from exc
    return out


def _read_ecsv(path):
    try:
        table = Table.read(path, format="ascii.ecsv")
    except Exception as exc:
        raise BeamFileError(f"{path}: cannot read as a remap-beam ECSV file (corrupt or "
                            f"truncated?): {type(exc).__name__}: {exc}") from exc
    meta = table.meta
    if meta.get("REMAPFMT") != FORMAT:
        raise BeamFileError(f"{path}: not a remap-beam file (no 'REMAPFMT: {FORMAT}' in the "
                            "ECSV header)")
    survey, medium = meta.get("SURVEY"), meta.get("MEDIUM")
    coverage = meta.get("COVERAGE")
    if "beam" not in table.colnames:
        if "BEAM" not in meta:
            raise BeamFileError(f"{path}: a single-beam remap-beam ECSV file needs BEAM in its "
                                "header")
        return {str(meta["BEAM"]): (table, survey, medium, coverage)}
    out = {}
    names = np.asarray(table["beam"]).astype(str)
    coverage = coverage if isinstance(coverage, dict) else {}
    for name in dict.fromkeys(names.tolist()):
        sub = table[names == name]
        sub.remove_column("beam")
        out[str(name)] = (sub, survey, medium, coverage.get(name))
    return out


def read_beams(path):
    """Read every beam of a ``remap-beam`` file.

    Parameters
    ----------
    path : str or path-like
        A ``.fits``/``.fit``/``.fts`` or ``.ecsv`` file written by
        :func:`write_beams` (or ``Spectrum.write(..., format="remap-beam")``).

    Returns
    -------
    beams : dict of str to `specutils.Spectrum`
        In file order.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Unknown extension.
    BeamFileError
        Not a remap-beam file, corrupt or truncated, missing columns.
    """
    path = pathlib.Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such remap-beam file")
    raw = _read_fits(path) if kind == "fits" else _read_ecsv(path)
    if not raw:
        raise BeamFileError(f"{path}: the file holds no beam")
    return {beam: _spectrum_from_table(table, path, beam, survey, medium, cov)
            for beam, (table, survey, medium, cov) in raw.items()}


# ---------------------------------------------------------------------------- registry
def _path_of(source):
    """The path of ``source`` (astropy passes an open file when it identified the format)."""
    name = getattr(source, "name", source)
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"format {FORMAT!r} reads from a file path; received "
                        f"{type(source).__name__}")
    return name


def _read_spectrum(path, beam=None, **kwargs):
    """specutils loader: one `Spectrum` from a remap-beam file (``beam=`` picks one)."""
    if kwargs:
        raise TypeError(f"unexpected keyword arguments for format {FORMAT!r}: {sorted(kwargs)}")
    path = _path_of(path)
    beams = read_beams(path)
    if beam is None:
        if len(beams) > 1:
            raise BeamFileError(f"{path} holds {len(beams)} beams ({', '.join(beams)}); pass "
                                "beam=<name> or read them all with SpectrumList.read(..., "
                                f"format={FORMAT!r}) or remap.spectra.io.read_beams")
        return next(iter(beams.values()))
    if beam not in beams:
        raise KeyError(f"{path} has no beam {beam!r}; beams: {', '.join(beams)}")
    return beams[beam]


def _read_spectrum_list(path, **kwargs):
    """specutils loader: every beam of a remap-beam file as a `SpectrumList`."""
    from specutils import SpectrumList
    if kwargs:
        raise TypeError(f"unexpected keyword arguments for format {FORMAT!r}: {sorted(kwargs)}")
    return SpectrumList(read_beams(_path_of(path)).values())


def _write_spectrum(spectrum, path, overwrite=False, beam=None, survey=None, medium=None):
    """specutils writer: one spectrum as a one-beam file (beam from ``meta['beam']``)."""
    name = beam if beam is not None else (spectrum.meta or {}).get("beam")
    if name is None:
        raise ValueError("the spectrum has no meta['beam']; pass beam=<name> to write it as "
                         f"format {FORMAT!r}")
    write_beams(path, {str(name): spectrum}, overwrite=overwrite, survey=survey, medium=medium)


def _write_spectrum_list(spectra, path, overwrite=False, survey=None, medium=None):
    """specutils writer: a list of beam spectra (each with ``meta['beam']``) as one file."""
    by_beam = {}
    for i, spec in enumerate(spectra):
        name = (spec.meta or {}).get("beam")
        if name is None:
            raise ValueError(f"spectrum {i} of the list has no meta['beam']")
        if name in by_beam:
            raise ValueError(f"two spectra of the list are beam {name!r}")
        by_beam[str(name)] = spec
    write_beams(path, by_beam, overwrite=overwrite, survey=survey, medium=medium)


def register():
    """Register the ``remap-beam`` reader, identifier and writer with specutils (idempotent).

    Called on ``import remap``.  Registering again (e.g. after a module reload)
    replaces remap's own registration; a ``remap-beam`` format registered by
    someone else is left alone and a warning is logged.

    Returns
    -------
    registered : bool
        Whether remap's functions are now the registered ones.
    """
    from specutils import Spectrum, SpectrumList
    from specutils.io.registers import custom_writer, data_loader

    force = False
    for cls in (Spectrum, SpectrumList):
        try:
            reader = io_registry.get_reader(FORMAT, cls)
        except io_registry.IORegistryError:
            continue
        if getattr(reader, "__module__", None) != __name__:
            log.warning("specutils format %r is already registered by %s; remap leaves it",
                        FORMAT, getattr(reader, "__module__", "?"))
            return False
        force = True
    exts = ["fits", "fit", "fts", "ecsv"]
    data_loader(FORMAT, identifier=identify_remap_beam, dtype=Spectrum, extensions=exts,
                priority=10, force=force, autogenerate_spectrumlist=False)(_read_spectrum)
    data_loader(FORMAT, identifier=identify_remap_beam, dtype=SpectrumList, extensions=exts,
                priority=10, force=force)(_read_spectrum_list)
    custom_writer(FORMAT, dtype=Spectrum, force=force)(_write_spectrum)
    custom_writer(FORMAT, dtype=SpectrumList, force=force)(_write_spectrum_list)
    return True


register()
