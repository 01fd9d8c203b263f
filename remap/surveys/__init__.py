"""Spectroscopic surveys: beams, beam selection and spike removal.

`Survey` and `Beam` describe an instrument; the built-in ``marvels`` survey is
`MARVELS`.  Look surveys up by name with :func:`remap.get_survey`.
"""

from .base import DEFAULT_MIN_COVERAGE, Beam, Survey, find_spikes
from .marvels import MARVELS

__all__ = ["Beam", "Survey", "MARVELS", "DEFAULT_MIN_COVERAGE", "find_spikes"]
