"""Two survey plugins for remap: a toy spectrograph, and a survey derived from MARVELS."""

import astropy.units as u

import remap
from remap.surveys import Beam, Survey

__all__ = ["ToySurvey", "remap_surveys"]


class ToySurvey(Survey):
    """A toy two-beam spectrograph: blue 4000-5000 Å and red 5000-6000 Å, R ~ 5000."""

    name = "toy"
    description = "Toy spectrograph, two beams, R ~ 5000"
    wavelength_medium = "vacuum"
    beams = {
        # a beam from its two ends, or from a (min, max) Quantity pair
        "blue": Beam("blue", 4000 * u.AA, 5000 * u.AA, resolution=5000,
                     resolution_range=(4500, 5500), sampling=0.25 * u.AA),
        "red": Beam.from_range("red", (5000, 6000) * u.AA, resolution=5000,
                               resolution_range=(4500, 5500), sampling=0.3 * u.AA),
    }


@remap.hookimpl
def remap_surveys():
    """Register the toy survey and MARVELS' beam A as a survey of its own.

    A registry hook returns factories: here classes, which remap calls with the
    options of ``remap.get_survey(name, **options)``.
    """
    # built-in surveys can be looked up inside the hook: they are registered first
    marvels = remap.get_survey("marvels")

    class MarvelsBlue(Survey):
        """SDSS-III MARVELS beam A (4850-5280 Å) only."""

        name = "marvels_blue"
        description = "SDSS-III MARVELS, beam A only"
        wavelength_medium = marvels.wavelength_medium
        beams = {"A": marvels.beams["A"]}

    return [ToySurvey, MarvelsBlue]
