"""On-disk data sets of survey-like spectra: HDF5 shards and a manifest, read into tf.data.

A data set is a directory::

    manifest.json          what the set is and which shards are complete
    shard-00000.h5         one HDF5 file per shard
    shard-00001.h5
    ...

Why HDF5 (through h5py) and not TFRecord: an HDF5 file is self-describing
(names, shapes, dtypes and units travel with the arrays), chunked so that any
block of rows can be read without reading the rest (which a shuffled reader
needs), compressed transparently, and readable from every language and tool
used in astronomy (numpy, IDL, Julia, TOPCAT, astropy).  A TFRecord file is a
sequential stream of serialized protocol buffers that only TensorFlow reads
back comfortably, with no random access: it would lock the data into one
framework.  :meth:`Dataset.to_tf` streams the shards into a `tf.data.Dataset`
without loading the whole set.

Each shard holds, for ``n`` samples:

==========================  ==========================  =================================
path                        shape, dtype                content
==========================  ==========================  =================================
``beams/<B>/flux``          (n, npix_B) float32         flux on beam B's grid
``beams/<B>/mask``          (n, npix_B) bool            True = bad pixel
``beams/<B>/wavelength``    (npix_B,) float64           the grid, Å (attribute ``unit``)
``labels``                  (n, n_labels) float64       labels (NaN = unknown)
``label_uncertainty``       (n, n_labels) float64       their 1σ uncertainties (NaN allowed)
``meta/<field>``            (n,)                        per-sample metadata, e.g.
                                                        ``resolution``, ``sigma``, ``seed``,
                                                        ``source``
==========================  ==========================  =================================

The manifest (JSON) records the format name and version, the survey, the beams
with their grids, the label names and units, the metadata fields, the
configuration that produced the set (``config``), and one entry per complete
shard: file name, sample count and SHA-256.

Writes are atomic: a shard is written to a temporary file in the same
directory and moved into place with `os.replace` only when complete; the
manifest is rewritten (temp file + `os.replace`) after every shard.  A build
that is killed leaves at most a temporary file, which the next
`DatasetWriter` on that directory removes; complete shards are recognised by
their manifest entry, count and hash and are kept (:meth:`DatasetWriter.has_shard`).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
from astropy.table import Table

from .._util.fs import atomic_write_text, mkstemp, sha256_of
from .._util.json import jsonable
from .._util.validators import check_int, check_seed
from ..exceptions import RemapError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST_NAME", "DEFAULT_METADATA_FIELDS",
           "DatasetError", "shard_name", "sha256_of", "DatasetWriter", "ShardWriter", "Dataset"]

#: Format name written to (and required in) every manifest.
FORMAT_NAME = "remap-dataset"
#: Version of the layout described in this module.
FORMAT_VERSION = 1
#: File name of the manifest inside a data-set directory.
MANIFEST_NAME = "manifest.json"

#: Per-sample metadata written by ``remap dataset build``: field -> numpy dtype
#: (``"str"`` for variable-length UTF-8 strings).
DEFAULT_METADATA_FIELDS = {"resolution": "float32", "sigma": "float32", "draw": "int16",
                           "seed": "uint64", "label_point": "int64", "source": "str"}

_TMP_PREFIX = ".tmp-"


class DatasetError(RemapError, ValueError):
    """A data-set directory is missing, corrupt, or does not match what is asked."""


def shard_name(index):
    """File name of shard ``index``: ``shard-00000.h5``."""
    return f"shard-{int(index):05d}.h5"


def _atomic_write_text(path, text):
    atomic_write_text(path, text, prefix=_TMP_PREFIX + Path(path).name + ".")


def _grid_values(grid):
    if not isinstance(grid, u.Quantity):
        raise TypeError(f"a beam grid must be a Quantity of wavelengths; received "
                        f"{type(grid).__name__}")
    g = np.asarray(grid.to_value(u.AA, equivalencies=u.spectral()), dtype=float)
    if g.ndim != 1 or g.size < 2 or np.any(np.diff(g) <= 0):
        raise ValueError("a beam grid must be a strictly increasing 1-D array of wavelengths")
    return g


def _read_manifest(directory):
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{directory}: no {MANIFEST_NAME}; not a remap data set (build one "
                           "with 'remap dataset build')")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: format is {manifest.get('format')!r}, expected "
                           f"{FORMAT_NAME!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{path}: format version {manifest.get('format_version')!r} is not "
                           f"supported by this remap (reads version {FORMAT_VERSION})")
    return manifest


class DatasetWriter:
    """Write (or resume writing) a sharded data set into a directory.

    Parameters
    ----------
    directory : str or path
        Created if missing.
    survey : str
        Survey name (``"marvels"``).
    grids : dict of str to `~astropy.units.Quantity`
        Beam name -> wavelength grid.
    label_names : sequence of str
        Label columns, e.g. ``("teff", "logg", "feh")``.
    label_units : sequence of str
        Their units (``"K"``, ``"dex"``, ...).
    wavelength_medium : {"air", "vacuum"}, optional
        Medium of the grids.
    metadata_fields : dict of str to str, optional
        Per-sample metadata field -> numpy dtype name, or ``"str"``
        (default :data:`DEFAULT_METADATA_FIELDS`).
    config : dict, optional
        JSON-serialisable description of how the set is made (library,
        options, seed, ...).  A directory that already holds a set is resumed
        only when everything above, ``config`` included, is the same.
    overwrite : bool
        Delete an existing, different set in ``directory`` instead of refusing.
    compression : {"gzip", "lzf", None}
        HDF5 filter for the flux and mask (gzip level 1 with byte shuffling by
        default: ~40 % smaller for noisy float32 flux).

    Raises
    ------
    DatasetError
        ``directory`` holds a different data set (and ``overwrite`` is false),
        or files that are not a data set.
    """

    def __init__(self, directory, *, survey, grids, label_names, label_units,
                 metadata_fields=None, wavelength_medium=None, config=None, overwrite=False,
                 compression="gzip"):
        self.directory = Path(directory)
        if compression not in ("gzip", "lzf", None):
            raise ValueError(f"compression must be 'gzip', 'lzf' or None; received: "
                             f"compression={compression!r}")
        self.compression = compression
        label_names = [str(n) for n in label_names]
        label_units = [str(n) for n in label_units]
        if len(label_names) != len(label_units) or not label_names:
            raise ValueError("give one unit per label name (and at least one label)")
        if not grids:
            raise ValueError("give at least one beam grid")
        self.grids = {str(b): _grid_values(g) for b, g in grids.items()}
        fields = dict(DEFAULT_METADATA_FIELDS if metadata_fields is None else metadata_fields)
        for name, dtype in fields.items():
            if dtype != "str":
                np.dtype(dtype)  # raises TypeError for a bad dtype
        header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                  "survey": str(survey), "wavelength_medium": wavelength_medium,
                  "beams": {b: {"npix": int(g.size), "wave_min": float(g[0]),
                                "wave_max": float(g[-1]), "unit": "Angstrom",
                                "grid": g.tolist()} for b, g in self.grids.items()},
                  "labels": label_names, "label_units": label_units,
                  "metadata_fields": fields, "config": config or {}}
        self.header = jsonable(header, what="data-set header", error=DatasetError)
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(_TMP_PREFIX + "*"):
            stale.unlink()
        manifest_path = self.directory / MANIFEST_NAME
        if manifest_path.exists():
            old = _read_manifest(self.directory)
            same = {k: old.get(k) for k in self.header} == self.header
            if not same and not overwrite:
                diff = sorted(k for k in self.header if old.get(k) != self.header[k])
                raise DatasetError(
                    f"{self.directory} already holds a different data set (differs in: "
                    f"{', '.join(diff)}); choose another directory or pass overwrite=True "
                    "(--overwrite)")
            if same:
                self.manifest = old
                self.manifest.setdefault("shards", [])
                return
            for entry in old.get("shards", []):
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / entry["file"]).unlink()
        else:
            stray = sorted(p.name for p in self.directory.glob("shard-*.h5"))
            if stray and not overwrite:
                raise DatasetError(f"{self.directory} holds shard files ({stray[0]}, ...) but "
                                   f"no {MANIFEST_NAME}; choose an empty directory or pass "
                                   "overwrite=True")
            for name in stray:
                (self.directory / name).unlink()
        self.manifest = {**self.header, "complete": False, "shards": []}
        self._write_manifest()

    # -- manifest ---------------------------------------------------------
    def _write_manifest(self):
        self.manifest["shards"].sort(key=lambda e: e["index"])
        self.manifest["n_samples"] = int(sum(e["n"] for e in self.manifest["shards"]))
        _atomic_write_text(self.directory / MANIFEST_NAME,
                           json.dumps(self.manifest, indent=1, sort_keys=True) + "\n")

    def _entry(self, index):
        for entry in self.manifest["shards"]:
            if entry["index"] == index:
                return entry
        return None

    @property
    def completed(self):
        """Indices of the shards recorded as complete."""
        return sorted(e["index"] for e in self.manifest["shards"])

    def has_shard(self, index, n=None):
        """True when shard ``index`` is complete and intact (count and SHA-256 checked).

        A shard listed in the manifest whose file is missing, has another hash,
        or (when ``n`` is given) another sample count is dropped from the
        manifest and its file deleted, so that it is written again.
        """
        entry = self._entry(index)
        if entry is None:
            return False
        path = self.directory / entry["file"]
        ok = path.is_file() and (n is None or entry["n"] == n) and sha256_of(path) == \
            entry["sha256"]
        if not ok:
            self.manifest["shards"].remove(entry)
            self.manifest["complete"] = False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._write_manifest()
        return ok

    def shard(self, index, n):
        """A `ShardWriter` for shard ``index`` of ``n`` samples (use it as a context manager)."""
        index = check_int("shard index", index, 0)
        return ShardWriter(self, index, check_int("n", n, 1))

    def _commit(self, index, tmp_path, n):
        final = self.directory / shard_name(index)
        digest = sha256_of(tmp_path)
        os.replace(tmp_path, final)
        old = self._entry(index)
        if old is not None:
            self.manifest["shards"].remove(old)
        self.manifest["shards"].append({"index": index, "file": final.name, "n": n,
                                        "sha256": digest})
        self._write_manifest()

    def finish(self, **summary):
        """Mark the set complete and store ``summary`` (JSON values) in the manifest."""
        self.manifest["complete"] = True
        self.manifest["summary"] = jsonable(summary, "summary", what="manifest",
                                            error=DatasetError)
        self._write_manifest()


class ShardWriter:
    """Fills one shard row block by row block; made by :meth:`DatasetWriter.shard`.

    On leaving the ``with`` block without an error, the shard must be full
    (``n`` rows); it is closed, hashed, moved into place and recorded in the
    manifest.  On an error the temporary file is deleted.
    """

    def __init__(self, writer, index, n):
        self.writer = writer
        self.index = index
        self.n = n
        self.filled = 0
        self._file = None
        self._tmp = None

    def __enter__(self):
        w = self.writer
        fd, tmp = mkstemp(prefix=f"{_TMP_PREFIX}{shard_name(self.index)}.", dir=w.directory)
        os.close(fd)
        self._tmp = tmp
        f = self._file = h5py.File(tmp, "w")
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["index"] = self.index
        f.attrs["n"] = self.n
        f.attrs["survey"] = w.header["survey"]
        comp = {}
        if w.compression == "gzip":
            comp = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
        elif w.compression == "lzf":
            comp = {"compression": "lzf", "shuffle": True}
        for beam, grid in w.grids.items():
            g = f.create_group(f"beams/{beam}")
            chunk = (min(self.n, 32), grid.size)
            g.create_dataset("flux", (self.n, grid.size), dtype="float32", chunks=chunk, **comp)
            g.create_dataset("mask", (self.n, grid.size), dtype="bool", chunks=chunk, **comp)
            wave = g.create_dataset("wavelength", data=grid)
            wave.attrs["unit"] = "Angstrom"
        nlab = len(w.header["labels"])
        labels = f.create_dataset("labels", (self.n, nlab), dtype="float64")
        labels.attrs["names"] = w.header["labels"]
        labels.attrs["units"] = w.header["label_units"]
        f.create_dataset("label_uncertainty", (self.n, nlab), dtype="float64")
        for name, dtype in w.header["metadata_fields"].items():
            dt = h5py.string_dtype() if dtype == "str" else np.dtype(dtype)
            f.create_dataset(f"meta/{name}", (self.n,), dtype=dt)
        return self

    def append(self, *, flux, labels, mask=None, label_uncertainty=None, metadata=None):
        """Write the next ``k`` rows.

        Parameters
        ----------
        flux : dict of str to array (k, npix)
            One entry per beam of the set.
        labels : array (k, n_labels)
        mask : dict of str to bool array (k, npix), optional
            Missing beams are all good.
        label_uncertainty : array (k, n_labels), optional
            NaN when missing.
        metadata : dict of str to array (k,), optional
            Fields of the set; missing fields stay empty (0 or "").

        Raises
        ------
        ValueError
            Wrong beams, shapes, or more rows than the shard holds.
        """
        if self._file is None:
            raise RuntimeError("use the ShardWriter as a context manager (with ...)")
        w = self.writer
        if set(flux) != set(w.grids):
            raise ValueError(f"flux must have one entry per beam {sorted(w.grids)}; received "
                             f"{sorted(flux)}")
        labels = np.atleast_2d(np.asarray(labels, dtype=float))
        k = labels.shape[0]
        if labels.shape[1] != len(w.header["labels"]):
            raise ValueError(f"labels have {labels.shape[1]} columns; the set has "
                             f"{len(w.header['labels'])} ({', '.join(w.header['labels'])})")
        if self.filled + k > self.n:
            raise ValueError(f"shard {self.index} holds {self.n} samples; {self.filled} are "
                             f"written and {k} more were given")
        rows = slice(self.filled, self.filled + k)
        for beam, grid in w.grids.items():
            fl = np.asarray(flux[beam], dtype=np.float32)
            if fl.shape != (k, grid.size):
                raise ValueError(f"flux of beam {beam!r} has shape {fl.shape}; expected "
                                 f"({k}, {grid.size})")
            self._file[f"beams/{beam}/flux"][rows] = fl
            if mask is not None and beam in mask:
                mk = np.asarray(mask[beam], dtype=bool)
                if mk.shape != fl.shape:
                    raise ValueError(f"mask of beam {beam!r} has shape {mk.shape}; expected "
                                     f"{fl.shape}")
                self._file[f"beams/{beam}/mask"][rows] = mk
        self._file["labels"][rows] = labels
        unc = (np.full(labels.shape, np.nan) if label_uncertainty is None
               else np.atleast_2d(np.asarray(label_uncertainty, dtype=float)))
        if unc.shape != labels.shape:
            raise ValueError(f"label_uncertainty has shape {unc.shape}; expected "
                             f"{labels.shape}")
        self._file["label_uncertainty"][rows] = unc
        for name, values in (metadata or {}).items():
            if name not in w.header["metadata_fields"]:
                raise ValueError(f"unknown metadata field {name!r}; the set has "
                                 f"{sorted(w.header['metadata_fields'])}")
            values = np.asarray(values)
            if values.shape != (k,):
                raise ValueError(f"metadata {name!r} has shape {values.shape}; expected ({k},)")
            if w.header["metadata_fields"][name] == "str":
                values = np.asarray([str(v) for v in values], dtype=object)
            self._file[f"meta/{name}"][rows] = values
        self.filled += k

    def __exit__(self, exc_type, exc, tb):
        try:
            self._file.close()
        finally:
            self._file = None
        if exc_type is None and self.filled != self.n:
            os.unlink(self._tmp)
            raise DatasetError(f"shard {self.index} was closed with {self.filled} of its "
                               f"{self.n} samples written")
        if exc_type is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            return False
        self.writer._commit(self.index, self._tmp, self.n)
        return False


class Dataset:
    """A data set on disk, opened read-only from its directory.

    Parameters
    ----------
    directory : str or path
    verify : bool
        Check every shard's SHA-256 against the manifest on opening.

    Attributes
    ----------
    manifest : dict
    survey : str
    beams : list of str
    label_names, label_units : list of str
    complete : bool
        False while a build has not finished; only the complete shards are read.

    Raises
    ------
    DatasetError
        No manifest, an unknown format, a missing shard, or (``verify``) a
        hash mismatch.
    """

    def __init__(self, directory, *, verify=False):
        self.directory = Path(directory)
        self.manifest = _read_manifest(self.directory)
        self.survey = self.manifest["survey"]
        self.beams = list(self.manifest["beams"])
        self.label_names = list(self.manifest["labels"])
        self.label_units = list(self.manifest["label_units"])
        self.complete = bool(self.manifest.get("complete", False))
        self.shards = sorted(self.manifest["shards"], key=lambda e: e["index"])
        for entry in self.shards:
            if not (self.directory / entry["file"]).is_file():
                raise DatasetError(f"{self.directory}: shard {entry['file']} is listed in the "
                                   "manifest but missing")
        counts = np.array([e["n"] for e in self.shards], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self._labels = None
        if verify:
            self.verify()

    def __len__(self):
        return int(self._offsets[-1])

    def __repr__(self):
        return (f"<Dataset {str(self.directory)!r}: {len(self)} samples, survey "
                f"{self.survey!r}, beams {self.beams}, {len(self.shards)} shards"
                f"{'' if self.complete else ', incomplete'}>")

    def verify(self):
        """Check each shard's SHA-256 against the manifest; raise `DatasetError` on a mismatch."""
        for entry in self.shards:
            if sha256_of(self.directory / entry["file"]) != entry["sha256"]:
                raise DatasetError(f"{self.directory}: shard {entry['file']} does not match "
                                   "its SHA-256 in the manifest (corrupt or modified)")

    def _check_beam(self, beam):
        if beam not in self.beams:
            raise DatasetError(f"the data set has no beam {beam!r}; beams: {self.beams}")

    def grid(self, beam):
        """The wavelength grid of a beam (`~astropy.units.Quantity`, Å)."""
        self._check_beam(beam)
        return np.asarray(self.manifest["beams"][beam]["grid"], dtype=float) * u.AA

    def _open(self, k):
        return h5py.File(self.directory / self.shards[k]["file"], "r")

    @property
    def labels(self):
        """`~astropy.table.Table` of every sample: labels, ``<label>_err`` and metadata.

        Columns carry their units; the row number is the sample index used by
        :meth:`read`.
        """
        if self._labels is None:
            parts = {"labels": [], "label_uncertainty": []}
            fields = self.manifest["metadata_fields"]
            meta = {name: [] for name in fields}
            for k in range(len(self.shards)):
                with self._open(k) as f:
                    parts["labels"].append(f["labels"][()])
                    parts["label_uncertainty"].append(f["label_uncertainty"][()])
                    for name in fields:
                        ds = f[f"meta/{name}"]
                        meta[name].append(ds.asstr()[()] if fields[name] == "str" else ds[()])
            nlab = len(self.label_names)
            lab = np.concatenate(parts["labels"]) if parts["labels"] else np.empty((0, nlab))
            unc = (np.concatenate(parts["label_uncertainty"]) if parts["label_uncertainty"]
                   else np.empty((0, nlab)))
            table = Table()
            for j, (name, unit) in enumerate(zip(self.label_names, self.label_units)):
                table[name] = lab[:, j]
                table[f"{name}_err"] = unc[:, j]
                if unit:
                    table[name].unit = table[f"{name}_err"].unit = u.Unit(unit)
            for name, values in meta.items():
                table[name] = (np.concatenate(values) if values else
                               np.empty(0, dtype=object if fields[name] == "str" else fields[name]))
            self._labels = table
        return self._labels

    def _locate(self, indices):
        idx = np.asarray(indices)
        if idx.size == 0:
            idx = idx.astype(np.int64).reshape(0)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError("indices must be a 1-D sequence of integers")
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"sample index out of range for a data set of {n} samples")
        idx = np.where(idx < 0, idx + n, idx)
        shard = np.searchsorted(self._offsets, idx, side="right") - 1
        return idx, shard, idx - self._offsets[shard]

    def read_arrays(self, indices, beam):
        """Flux, mask, labels and label uncertainties of some samples, as numpy arrays.

        Parameters
        ----------
        indices : sequence of int
            Sample indices (any order, repeats allowed).
        beam : str

        Returns
        -------
        flux : (k, npix) float32
        mask : (k, npix) bool
        labels, label_uncertainty : (k, n_labels) float64
        """
        self._check_beam(beam)
        idx, shard, row = self._locate(indices)
        npix = self.manifest["beams"][beam]["npix"]
        nlab = len(self.label_names)
        flux = np.empty((idx.size, npix), np.float32)
        mask = np.empty((idx.size, npix), bool)
        labels = np.empty((idx.size, nlab))
        unc = np.empty((idx.size, nlab))
        for k in np.unique(shard):
            sel = np.flatnonzero(shard == k)
            rows, inverse = np.unique(row[sel], return_inverse=True)
            with self._open(int(k)) as f:
                flux[sel] = f[f"beams/{beam}/flux"][rows][inverse]
                mask[sel] = f[f"beams/{beam}/mask"][rows][inverse]
                labels[sel] = f["labels"][rows][inverse]
                unc[sel] = f["label_uncertainty"][rows][inverse]
        return flux, mask, labels, unc

    def read(self, indices, beam=None):
        """Some samples as `specutils.Spectrum` batches.

        Parameters
        ----------
        indices : sequence of int
        beam : str, optional
            One beam; by default every beam.

        Returns
        -------
        spectra : `specutils.Spectrum` or dict of str to `specutils.Spectrum`
            A batch (2-D flux, dimensionless normalized flux) on the beam's
            grid with the mask; ``meta["labels"]`` is the matching rows of
            :attr:`labels`.
        """
        from specutils import Spectrum
        if beam is None:
            return {b: self.read(indices, b) for b in self.beams}
        flux, mask, _, _ = self.read_arrays(indices, beam)
        idx, _, _ = self._locate(indices)
        meta = {"labels": self.labels[idx], "survey": self.survey, "beam": beam,
                "wavelength_medium": self.manifest.get("wavelength_medium")}
        return Spectrum(flux=flux.astype(float) * u.one, spectral_axis=self.grid(beam),
                        mask=mask, meta=meta)

    def to_tf(self, beam, batch_size, *, shuffle=True, seed=0, prefetch=True,
              label_encoder=None, indices=None, block_size=256, shuffle_buffer=4096,
              drop_remainder=False):
        """Stream one beam of the set as a `tf.data.Dataset` of ``(flux, target)`` batches.

        Rows are read in blocks of ``block_size`` consecutive samples of one
        shard, so only a few blocks are in memory at a time.  With ``shuffle``
        the order of the blocks (across all shards) and of the rows inside each
        block is permuted by a generator seeded with ``(seed, epoch)``, and a
        seeded ``tf.data`` shuffle buffer of ``shuffle_buffer`` rows mixes rows
        of different blocks: the same seed gives the same sequence of batches
        epoch after epoch.

        Parameters
        ----------
        beam : str
        batch_size : int
        shuffle : bool
        seed : int
        prefetch : bool
            Add ``prefetch(tf.data.AUTOTUNE)``.
        label_encoder : callable, optional
            ``label_encoder(labels, uncertainties)`` with (k, n_labels) float
            arrays returns the targets for ``k`` samples: an array or a dict
            of arrays with leading dimension ``k`` (e.g. one PMF per head).
            By default the target is the float32 label vector (NaN = unknown).
        indices : sequence of int, optional
            Use only these samples (e.g. a training fold).
        block_size, shuffle_buffer : int
        drop_remainder : bool

        Returns
        -------
        dataset : `tf.data.Dataset`
            Elements ``(flux, target)``; flux has shape (batch, npix, 1), float32.
        """
        import tensorflow as tf

        self._check_beam(beam)
        check_int("batch_size", batch_size, 1)
        check_int("block_size", block_size, 1)
        check_seed(seed)
        if indices is None:
            idx = np.arange(len(self))
        else:
            idx, _, _ = self._locate(indices)
            idx = np.unique(idx)
        if idx.size == 0:
            raise DatasetError("no samples to stream (empty data set or empty indices)")
        _, shard, row = self._locate(idx)
        blocks = []
        for k in np.unique(shard):
            rows = row[shard == k]
            blocks += [(int(k), rows[i:i + block_size]) for i in range(0, rows.size, block_size)]
        npix = self.manifest["beams"][beam]["npix"]
        nlab = len(self.label_names)

        def encode(labels, unc):
            if label_encoder is None:
                return labels.astype(np.float32)
            return label_encoder(labels, unc)

        def spec_of(value):
            if isinstance(value, dict):
                return {k: spec_of(v) for k, v in value.items()}
            arr = np.asarray(value)
            return tf.TensorSpec((None,) + arr.shape[1:], tf.as_dtype(arr.dtype))

        probe = encode(np.zeros((1, nlab)), np.ones((1, nlab)))
        signature = (tf.TensorSpec((None, npix, 1), tf.float32), spec_of(probe))
        epoch = [0]

        def generate():
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch[0],)))
            epoch[0] += 1
            order = rng.permutation(len(blocks)) if shuffle else range(len(blocks))
            files = {}
            try:
                for b in order:
                    k, rows = blocks[b]
                    if k not in files:
                        files[k] = self._open(k)
                    f = files[k]
                    sl = slice(int(rows[0]), int(rows[-1]) + 1)
                    pick = rows - rows[0]
                    flux = f[f"beams/{beam}/flux"][sl][pick]
                    labels = f["labels"][sl][pick]
                    unc = f["label_uncertainty"][sl][pick]
                    if shuffle:
                        perm = rng.permutation(len(rows))
                        flux, labels, unc = flux[perm], labels[perm], unc[perm]
                    yield flux[:, :, None], encode(labels, unc)
            finally:
                for f in files.values():
                    f.close()

        ds = tf.data.Dataset.from_generator(generate, output_signature=signature).unbatch()
        # declare the length, so that Keras knows the steps per epoch (and does
        # not warn that the input "ran out of data" at the end of an epoch)
        ds = ds.apply(tf.data.experimental.assert_cardinality(int(idx.size)))
        if shuffle and shuffle_buffer > 1:
            ds = ds.shuffle(int(shuffle_buffer), seed=int(seed), reshuffle_each_iteration=True)
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
        if prefetch:
            ds = ds.prefetch(tf.data.AUTOTUNE)
        return ds
