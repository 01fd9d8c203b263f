"""The "toy" survey: a two-beam spectrograph, registered through remap's plugin hook."""

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
        "blue": Beam("blue", 4000 * u.AA, 5000 * u.AA, resolution=5000,
                     resolution_range=(4500, 5500), sampling=0.25 * u.AA),
        "red": Beam("red", 5000 * u.AA, 6000 * u.AA, resolution=5000,
                    resolution_range=(4500, 5500), sampling=0.3 * u.AA),
    }


@remap.hookimpl
def remap_surveys():
    """Register the toy survey: its class is the factory (options go to the constructor)."""
    return [ToySurvey]
