"""The SDSS-III MARVELS survey (built-in survey plugin ``marvels``).

MARVELS observed with a dispersed fixed-delay interferometer feeding a
medium-resolution spectrograph (R ~ 11,000, Ge et al. 2009), which delivers
every star in two *beams*.  deep-REMAP trains one network per beam (Gilda
2025, §5, following Grieves et al. 2018):

======  ===============  ==================================  ========
beam    range            resolving power                     grid
======  ===============  ==================================  ========
``A``   4850-5280 Å      11,000 (10,000-12,000 on detector)  0.1 Å
``B``   5280-5750 Å      11,000 (10,000-12,000 on detector)  0.1 Å
======  ===============  ==================================  ========

The R range is the one the paper augments its synthetic spectra with (Gilda
2025, §3.3) and the 0.1 Å grid the one it resamples them onto.

Wavelength medium: the paper does not say whether the MARVELS wavelength
solution is in air or vacuum.  remap *assumes air*, the convention of
ground-based optical spectroscopy; build ``MARVELS(wavelength_medium="vacuum")``
if your reduction is in vacuum.  No fixed wavelengths of the interferometric
artefacts are published, so ``known_spikes`` is empty; spikes are found from
the data by :meth:`~remap.surveys.Survey.remove_spikes`.
"""

from __future__ import annotations

import astropy.units as u

from ..plugins.hookspecs import hookimpl
from .base import Beam, Survey

__all__ = ["MARVELS", "BEAM_A", "BEAM_B", "remap_surveys"]

#: Beam A / Set I (Gilda 2025 §5; Grieves et al. 2018).
BEAM_A = Beam("A", 4850 * u.AA, 5280 * u.AA, resolution=11000,
              resolution_range=(10000, 12000), sampling=0.1 * u.AA)

#: Beam B / Set II (Gilda 2025 §5; Grieves et al. 2018).
BEAM_B = Beam("B", 5280 * u.AA, 5750 * u.AA, resolution=11000,
              resolution_range=(10000, 12000), sampling=0.1 * u.AA)


class MARVELS(Survey):
    """SDSS-III MARVELS: beams ``A`` (4850-5280 Å) and ``B`` (5280-5750 Å), 0.1 Å grid.

    Parameters
    ----------
    wavelength_medium : {"air", "vacuum"}
        Medium of the MARVELS wavelength solution; ``"air"`` by default (an
        assumption, see the module documentation).
    known_spikes : `~astropy.units.Quantity`, optional
        Wavelengths of fixed artefacts to mask always (none by default).

    Raises
    ------
    ValueError
        Bad medium.
    """

    name = "marvels"
    description = "SDSS-III MARVELS (Ge et al. 2008), two interferometer beams, R ~ 11,000"
    wavelength_medium = "air"
    beams = {"A": BEAM_A, "B": BEAM_B}

    def __init__(self, *, wavelength_medium="air", known_spikes=None):
        super().__init__(wavelength_medium=wavelength_medium, known_spikes=known_spikes)


@hookimpl
def remap_surveys():
    """Register the built-in MARVELS survey (the class: options go to its constructor).

    Returns
    -------
    surveys : list of survey factories
        ``[MARVELS]``; ``remap.get_survey("marvels", wavelength_medium="vacuum")``
        calls ``MARVELS(wavelength_medium="vacuum")``.
    """
    return [MARVELS]
