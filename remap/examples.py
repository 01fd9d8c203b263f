"""Example data shipped with remap.

remap ships one example spectrum, a *simulated* MARVELS-like G dwarf (see
``remap/data/examples/README.rst`` for how it was made).  It is what
``remap normalize --example`` processes and what the documentation uses.
"""

from __future__ import annotations

import importlib.resources

from .spectra.io import read_beams

__all__ = ["EXAMPLES", "PROVENANCE", "example_path", "load_example"]

#: Example name -> (file name in ``remap/data/examples``, one-line description).
EXAMPLES = {
    "marvels-gdwarf": ("marvels_gdwarf_example.fits",
                       "simulated MARVELS-like G dwarf (5800 K), beams A and B, SNR ~ 100, "
                       "three injected spikes; remap-beam FITS"),
}

#: Example name -> how it was simulated (added to ``meta`` by :func:`load_example`).
PROVENANCE = {
    "marvels-gdwarf": {"simulated": True, "teff": 5800.0, "snr": 100.0,
                       "resolution": 11000.0, "seed": 2025,
                       "spikes": [5012.35, 5433.0, 5611.0],
                       "made_by": "remap/data/examples/make_example.py"},
}

_DEFAULT = "marvels-gdwarf"


def example_path(name=_DEFAULT):
    """Path of a bundled example file.

    Parameters
    ----------
    name : str
        One of the keys of :data:`EXAMPLES` (default ``"marvels-gdwarf"``).

    Returns
    -------
    path : `importlib.resources.abc.Traversable`
        The installed file; a `pathlib.Path` for ordinary installations.

    Raises
    ------
    KeyError
        Unknown example name (the message lists the known ones).
    FileNotFoundError
        The file is missing from the installation.
    """
    if name not in EXAMPLES:
        raise KeyError(f"unknown example {name!r}; known examples: {', '.join(sorted(EXAMPLES))}")
    path = importlib.resources.files("remap") / "data" / "examples" / EXAMPLES[name][0]
    if not path.is_file():
        raise FileNotFoundError(f"the example file {EXAMPLES[name][0]!r} is missing from the "
                                f"remap installation (expected at {path}); reinstall remap")
    return path


def load_example(name=_DEFAULT):
    """Read a bundled example spectrum.

    Parameters
    ----------
    name : str
        One of the keys of :data:`EXAMPLES`.

    Returns
    -------
    beams : dict of str to `specutils.Spectrum`
        One spectrum per survey beam (``"A"`` and ``"B"`` for the MARVELS
        example), as read by :func:`remap.spectra.io.read_beams`.  ``meta`` says that
        the spectrum is simulated and gives the parameters it was made with
        (:data:`PROVENANCE`; ``spikes`` are the wavelengths, in Å, of the
        injected spikes).

    Examples
    --------
    >>> from remap.examples import load_example
    >>> beams = load_example()
    >>> sorted(beams)
    ['A', 'B']
    >>> bool(beams["A"].meta["simulated"])
    True
    """
    with importlib.resources.as_file(example_path(name)) as path:
        beams = read_beams(path)
    for spectrum in beams.values():
        spectrum.meta.update(PROVENANCE[name], example=name)
    return beams
