"""Registration of remap's readers as specutils ``data_loader`` s."""

from __future__ import annotations

import os

from astropy.io import registry as io_registry
from specutils import Spectrum, SpectrumList
from specutils.io.registers import data_loader

from .echelle import identify_echelle, read_echelle
from .fits1d import identify_fits1d, read_fits1d
from .multispec import identify_multispec, read_multispec
from .table import identify_table, read_table

__all__ = ["register", "REMAP_FORMATS"]

#: remap's own reader formats, in the order they are tried as fallbacks.
REMAP_FORMATS = ("remap-fits1d", "remap-table", "remap-multispec", "remap-echelle")

#: Registry priorities.  remap's readers rank above those they fix (iraf 0, wcs1d-fits 5,
#: tabular-fits 6) and below specutils' survey loaders (10, 20), whose files they must not take.
_PRIORITY = {"remap-multispec": 9, "remap-echelle": 8.5, "remap-fits1d": 8, "remap-table": 7}

#: format -> (reader, identifier); the identifiers take ``strict=False`` for the fallbacks.
_READERS = {"remap-fits1d": (read_fits1d, identify_fits1d),
            "remap-table": (read_table, identify_table),
            "remap-multispec": (read_multispec, identify_multispec),
            "remap-echelle": (read_echelle, identify_echelle)}


def _registry_loader(reader):
    def load(file_obj, **kwargs):
        if not isinstance(file_obj, (str, os.PathLike)):
            name = getattr(file_obj, "name", None)  # astropy may hand over the open file
            if not isinstance(name, (str, os.PathLike)) or not os.path.isfile(name):
                raise TypeError(f"remap's readers take a path; received "
                                f"{type(file_obj).__name__}")
            file_obj = name
        spec = reader(str(file_obj), **kwargs)
        spec.meta.setdefault("file", str(file_obj))
        return spec
    load.__name__ = reader.__name__
    load.__doc__ = reader.__doc__
    return load


def register():
    """Register remap's readers as specutils ``data_loader`` s (idempotent; run on import).

    Returns
    -------
    registered : list of str
        The formats now registered by remap (a format of that name registered
        by someone else is left alone).
    """
    done = []
    # one rebuild of the read() docstrings at the end instead of one per registration
    with io_registry.delay_doc_updates(Spectrum), io_registry.delay_doc_updates(SpectrumList):
        for fmt, (reader, identifier) in _READERS.items():
            if _register_one(fmt, reader, identifier):
                done.append(fmt)
    return done


def _register_one(fmt, reader, identifier):
    """Register one reader; False when a reader of that name by someone else is there."""
    try:
        existing = io_registry.get_reader(fmt, Spectrum)
    except io_registry.IORegistryError:
        existing = None
    if existing is not None and getattr(existing, "__module__", None) != __name__:
        return False
    data_loader(fmt, identifier=identifier, dtype=Spectrum, extensions=None,
                priority=_PRIORITY[fmt], force=existing is not None)(_registry_loader(reader))
    return True
