"""``remap-table``: FITS, ECSV, CSV and plain-text tables with wavelength and flux columns."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table

from ...exceptions import SpectrumFileError
from ..medium import MEDIUM_KEY, medium_from_header
from ._common import (_NOTES, _flux_unit, _is_fits, _is_text, _merged_header, _path_of,
                      _spectral_unit, _spectrum, _to_sigma, _uncertainty)
from .merge import merged_file_spectrum

__all__ = ["identify_table", "read_table", "WAVELENGTH_NAMES", "FLUX_NAMES",
           "UNCERTAINTY_NAMES", "MASK_NAMES"]

#: Wavelength column names (case-insensitive).  ``loglam`` is log10(λ / Å).  A
#: suffix ``_air`` or ``_vac``/``_vacuum`` declares the medium.
WAVELENGTH_NAMES = ("wavelength", "wave", "lambda", "lam", "wl", "wavelengths", "loglam")

#: Flux column names (case-insensitive), in order of preference.
FLUX_NAMES = ("flux", "f", "s", "spec", "spectrum", "fnorm", "norm_flux", "flux_norm",
              "normalized_flux", "intensity")

#: Uncertainty column names -> kind (``std``, ``var`` or ``ivar``).
UNCERTAINTY_NAMES = {"ivar": "ivar", "inverse_variance": "ivar", "flux_ivar": "ivar",
                     "err": "std", "error": "std", "sigma": "std", "uncertainty": "std",
                     "e_flux": "std", "flux_err": "std", "flux_error": "std", "eflux": "std",
                     "err_flux": "std", "noise": "std", "std": "std", "stddev": "std",
                     "var": "var", "variance": "var", "flux_var": "var"}

#: Mask column names (case-insensitive); nonzero / True = bad pixel.
MASK_NAMES = ("mask", "and_mask", "andmask", "badpix", "bad_pixel", "bad", "pixel_mask", "dq")


def _find_column(names, wanted):
    lower = {n.lower(): n for n in names}
    for w in wanted:
        if w in lower:
            return lower[w]
    return None


def _wave_column(names):
    """(column, medium or None, log10?) of the wavelength column, or None."""
    pattern = re.compile(r"^(wavelength|wave|lambda|lam|wl|wavelengths)"
                         r"(?:_(air|vac|vacuum))?(?:_(?:aa|a|angstrom|nm|um))?$")
    best = None
    for n in names:
        low = n.lower()
        if low in ("loglam", "log_lambda", "log_wave", "logwave"):
            cand = (len(WAVELENGTH_NAMES), n, None, True)
        else:
            m = pattern.match(low)
            if m is None:
                continue
            medium = {"air": "air", "vac": "vacuum", "vacuum": "vacuum"}.get(m.group(2))
            cand = (WAVELENGTH_NAMES.index(m.group(1)), n, medium, False)
        if best is None or cand[0] < best[0]:
            best = cand
    return None if best is None else best[1:]


def _roles(table):
    """Column names per role: wave (name, medium, log10), flux, (uncertainty, kind), mask."""
    names = table.colnames
    wave = _wave_column(names)
    flux = _find_column(names, FLUX_NAMES)
    unc = _find_column(names, list(UNCERTAINTY_NAMES))
    mask = _find_column(names, MASK_NAMES)
    headerless = all(re.fullmatch(r"col\d+", n) for n in names)
    if (wave is None or flux is None) and headerless and 2 <= len(names) <= 4:
        cols = list(names)
        return {"wave": (cols[0], None, False), "flux": cols[1],
                "unc": (cols[2], "std") if len(cols) > 2 else None,
                "mask": cols[3] if len(cols) > 3 else None, "headerless": True}
    if wave is None or flux is None:
        return None
    return {"wave": wave, "flux": flux,
            "unc": None if unc is None else (unc, UNCERTAINTY_NAMES[unc.lower()]),
            "mask": mask, "headerless": False}


def _text_kind(path):
    """astropy format of a text table: ECSV when it says so, CSV by extension, else guessed."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    if first.startswith("# %ECSV"):
        return "ascii.ecsv"
    if str(path).lower().endswith(".csv"):
        return "ascii.csv"
    return "ascii"


def _text_head(path, n_data=20):
    """The comment lines and the first ``n_data`` other lines of a text file."""
    lines = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            lines.append(line)
            if not line.lstrip().startswith("#") and line.strip():
                n_data -= 1
                if n_data < 0:
                    break
    return "".join(lines)


def _quiet_read(source, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Table.read(source, **kwargs)


def _fits_tables(hdul):
    return [i for i, h in enumerate(hdul) if isinstance(h, (fits.BinTableHDU, fits.TableHDU))]


def _tables_of(path, head=False):
    """(table, header, medium hint) candidates of a table file, in file order."""
    if _is_fits(path):
        out = []
        with fits.open(path, memmap=False) as hdul:
            for i in _fits_tables(hdul):
                table = _quiet_read(hdul[i], format="fits")
                out.append((table, _merged_header(hdul, i)))
        return out
    if not _is_text(path):
        return []
    kind = _text_kind(path)
    source = _text_head(path) if head and kind != "ascii.ecsv" else str(path)
    if head and kind == "ascii.ecsv":
        source = str(path)
    kwargs = {"format": kind}
    if kind == "ascii":
        kwargs["guess"] = True
    try:
        table = _quiet_read(source, **kwargs)
    except Exception:  # noqa: BLE001 - not a table
        return []
    return [(table, dict(table.meta))]


def identify_table(origin, *args, strict=True, **kwargs):
    """astropy identifier of ``remap-table``.

    With ``strict`` (the registered identifier) it accepts only tables that
    specutils' ``tabular-fits``/``ECSV``/``ASCII`` loaders cannot read: the
    wavelength or flux column found by name has no unit or one astropy
    cannot parse (a dimensionless, normalized spectrum), or the file has
    no header row.  Without, any table with such columns.
    """
    path = _path_of(args)
    if origin != "read" or path is None:
        return False
    try:
        candidates = _tables_of(path, head=True)
    except Exception:  # noqa: BLE001 - not this format
        return False
    for table, header in candidates:
        roles = _roles(table)
        if roles is None:
            continue
        if not strict or roles["headerless"]:
            return True
        if _is_sdss(header):
            return False  # specutils' SDSS loaders read these (in vacuum)
        for col in (roles["wave"][0], roles["flux"]):
            unit = table[col].unit
            if unit is None or isinstance(unit, u.UnrecognizedUnit):
                return True
    return False


def _is_sdss(header):
    return str((header or {}).get("TELESCOP", "")).upper().startswith("SDSS")


def read_table(path, **kwargs):
    """``remap-table``: a FITS/ECSV/CSV/text table with wavelength and flux columns.

    Parameters
    ----------
    path : str or path-like
    **kwargs
        ``fitter`` for 2-D (per-order) columns (see
        :func:`~remap.spectra.readers.merge_orders`).

    Returns
    -------
    spectrum : `specutils.Spectrum`
    """
    name = Path(path).name
    tried = []
    for table, header in _tables_of(str(path)):
        roles = _roles(table)
        if roles is None:
            tried.append(f"columns {table.colnames}")
            continue
        return _table_spectrum(table, header, roles, name, kwargs.get("fitter"))
    found = "; ".join(tried) if tried else "no table"
    raise SpectrumFileError(
        f"{name}: no wavelength and flux columns ({found}); expected a wavelength column "
        f"named one of {', '.join(WAVELENGTH_NAMES)} and a flux column named one of "
        f"{', '.join(FLUX_NAMES)} (any case)")


def _column_values(table, col):
    column = table[col]
    values = np.ma.filled(np.ma.asarray(column, dtype=float), np.nan) \
        if np.asarray(column).dtype.kind in "fiub" else None
    if values is None:
        raise SpectrumFileError(f"column {col!r} is not numeric")
    return np.asarray(values, dtype=float)


def _table_spectrum(table, header, roles, name, fitter):
    notes = []
    wcol, medium, log10 = roles["wave"]
    if roles["headerless"]:
        notes.append("no column names: columns read as wavelength (Å), flux"
                     + (", 1-sigma uncertainty" if roles["unc"] else "")
                     + (", mask" if roles["mask"] else ""))
    wave = _column_values(table, wcol)
    if log10:
        notes.append(f"column {wcol!r} is log10(wavelength / Å)")
        wave, unit = 10.0 ** wave, u.AA
        if medium is None and _is_sdss(header) and medium_from_header(header) is None:
            medium = "vacuum"  # SDSS publishes vacuum wavelengths as loglam
    else:
        unit = _spectral_unit(table[wcol].unit, notes, f"column {wcol!r}")
    flux = _column_values(table, roles["flux"])
    flux_unit = _flux_unit(table[roles["flux"]].unit, notes)
    masked = np.ma.getmaskarray(np.ma.asarray(table[roles["flux"]]))
    unc = None
    if roles["unc"] is not None:
        ucol, kind = roles["unc"]
        unc = (_column_values(table, ucol), kind)
    mask = None
    if roles["mask"] is not None:
        mask = _mask_values(table[roles["mask"]], roles["mask"])
    if masked.any():
        mask = masked if mask is None else (mask | masked)
    meta = {"header": header, _NOTES: notes}
    if medium is not None:
        meta[MEDIUM_KEY] = medium
        notes.append(f"wavelength medium {medium} from the column name {wcol!r}")
    if wave.ndim in (2, 3) and wave.shape[0] == 1:
        wave = wave[0]
        flux = flux.reshape(wave.shape) if flux.size == wave.size else flux
    if mask is not None and mask.shape != flux.shape:
        mask = mask.reshape(flux.shape) if mask.size == flux.size else None
    if unc is not None:
        unc = (unc[0].reshape(flux.shape), unc[1])
    if wave.ndim == 2:
        if flux.shape != wave.shape:
            raise SpectrumFileError(f"{name}: wavelength {wave.shape} and flux {flux.shape} "
                                    "columns do not match")
        sigma = None if unc is None else _to_sigma(unc[0], unc[1])
        return merged_file_spectrum(wave * unit, flux * flux_unit, sigma, mask, header=header,
                                    notes=notes, fitter=fitter, name=name, medium=medium)
    if flux.ndim != 1:
        raise SpectrumFileError(f"{name}: the flux column holds {flux.shape} values per "
                                "wavelength; remap reads one star per file")
    uncertainty = None if unc is None else _uncertainty(unc[1], unc[0], flux_unit)
    return _spectrum(flux, wave, unit, flux_unit, uncertainty, mask, meta, name)


_TRUE = {"true", "t", "1", "yes", "y", "bad"}
_FALSE = {"false", "f", "0", "no", "n", "good", ""}


def _mask_values(column, name):
    """A boolean mask (True = bad) from a numeric, boolean or text ('True'/'False') column."""
    values = np.ma.asarray(column)
    if values.dtype.kind in "US":  # text tables: 'True'/'False', 'T'/'F', ...
        words = np.char.lower(np.char.strip(np.ma.filled(values, "1").astype(str)))
        unknown = sorted(set(words.ravel()) - _TRUE - _FALSE)
        if unknown:
            raise SpectrumFileError(f"mask column {name!r} holds {unknown[:3]}; expected "
                                    "numbers, booleans or True/False")
        return np.isin(words, list(_TRUE))
    return np.asarray(np.ma.filled(values, 1)).astype(bool)
