"""Network heads: one per predicted label, and the built-in ``teff``, ``logg``, ``feh``.

A head is described by a `HeadSpec`.  The label range and the bin width define
the classification bins into which a label (with its uncertainty) is encoded as
a probability mass function (METHOD.md: 80 K bins for T_eff, the median
uncertainty of the calibration labels in Gilda 2025; 0.1 dex for log g and
[Fe/H], a choice of remap since the paper gives none).
"""

from __future__ import annotations

import dataclasses
import math

import astropy.units as u

from .plugins import get_head
from .plugins.hookspecs import hookimpl

__all__ = ["HeadSpec", "TEFF", "LOGG", "FEH", "remap_heads", "resolve_heads"]


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """Description of one network head (one predicted label).

    Parameters
    ----------
    name : str
        Unique name, also the column name in results (``"teff"``).
    label : str
        Human-readable label for plots and tables (``"T_eff"``).
    unit : `astropy.units.Unit`
        Unit of the label values (``u.K``, ``u.dex``, ...).
    low, high : float
        Label range covered by the bins, in ``unit``.
    bin_width : float
        Width of a bin, in ``unit``.
    synthetic_sigma : float
        Standard deviation used to smooth a noiseless synthetic label into a
        PMF (METHOD.md: grid step / 5; 20 K for T_eff).
    """

    name: str
    label: str
    unit: u.UnitBase
    low: float
    high: float
    bin_width: float
    synthetic_sigma: float

    def __post_init__(self):
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"head name must be a Python identifier; received: {self.name!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.high > self.low):
            raise ValueError(f"head {self.name!r} needs finite low < high; "
                             f"received: low={self.low}, high={self.high}")
        if not (self.bin_width > 0):
            raise ValueError(f"head {self.name!r} needs bin_width > 0; "
                             f"received: bin_width={self.bin_width}")
        if not (self.synthetic_sigma > 0):
            raise ValueError(f"head {self.name!r} needs synthetic_sigma > 0; "
                             f"received: synthetic_sigma={self.synthetic_sigma}")

    def __call__(self, **options) -> HeadSpec:
        """This head, or a copy with the fields given as ``options`` replaced.

        A `HeadSpec` is its own factory in the sense of
        :mod:`remap.plugins.hookspecs`: ``remap.get_head("teff")`` returns the
        registered head, ``remap.get_head("teff", bin_width=40.0)`` a copy with
        40 K bins (validated like a new head).

        Raises
        ------
        TypeError
            An option that is not a field of `HeadSpec`.
        ValueError
            A replaced field is invalid.
        """
        if not options:
            return self
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"head {self.name!r} has no field(s) {unknown}; fields: "
                            f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **options)

    @property
    def n_bins(self):
        """Number of bins: ``ceil((high - low) / bin_width)`` (rounded to absorb float error)."""
        return int(math.ceil(round((self.high - self.low) / self.bin_width, 9)))


#: Effective temperature, 3000-7000 K in 80 K bins (50 bins).
TEFF = HeadSpec("teff", "T_eff", u.K, 3000.0, 7000.0, 80.0, 20.0)
#: Surface gravity log g (cgs), 1.0-5.5 in 0.1 dex bins (45 bins).
LOGG = HeadSpec("logg", "log g", u.dex, 1.0, 5.5, 0.1, 0.1)
#: Metallicity [Fe/H], -2.0..+1.0 in 0.1 dex bins (30 bins).
FEH = HeadSpec("feh", "[Fe/H]", u.dex, -2.0, 1.0, 0.1, 0.1)


@hookimpl
def remap_heads():
    """The built-in heads ``teff``, ``logg``, ``feh`` (each `HeadSpec` is its own factory)."""
    return [TEFF, LOGG, FEH]


def resolve_heads(heads, *, what):
    """Head specifications from `HeadSpec` objects or registered head names.

    Parameters
    ----------
    heads : iterable of `HeadSpec` or str
    what : str
        Who asks, for the error messages (``"build_model"``).

    Returns
    -------
    heads : list of `HeadSpec`

    Raises
    ------
    TypeError
        An item that is neither.
    ValueError
        No heads, or two with the same name.
    remap.UnknownPluginError
        A name no plugin registers.
    """
    out = []
    for h in heads:
        if isinstance(h, str):
            h = get_head(h)
        if not isinstance(h, HeadSpec):
            raise TypeError(f"heads must be HeadSpec instances or head names; received {h!r}")
        out.append(h)
    if not out:
        raise ValueError(f"{what} needs at least one head; received none")
    names = [h.name for h in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate head names: {names}")
    return out
