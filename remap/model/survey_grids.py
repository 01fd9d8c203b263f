"""The check, at load, that a model's beam grids are its survey's (:func:`check_survey_grids`).

A network takes spectra on the pixel grid it was trained on, and
:func:`remap.fit` cuts observed spectra into beams with the survey's beam
definitions: the two must be the same grid, or the inputs are cut and
resampled onto a grid the network never saw.
"""

from __future__ import annotations

import math

from ..exceptions import UnknownPluginError

__all__ = ["check_survey_grids", "GRID_RTOL"]

#: Relative tolerance of the comparison of wavelengths and sampling.
GRID_RTOL = 1e-9


def check_survey_grids(manifest: dict, where: str, error=ValueError) -> None:
    """Raise ``error`` when a beam grid of ``manifest`` is not its survey's beam.

    Parameters
    ----------
    manifest : dict
        A model manifest (``survey``, ``beams`` -> ``grid``).
    where : str
        How to name the model in the message (its path).
    error : type
        Exception class to raise (the loader passes ``ArtifactError``).

    Notes
    -----
    A survey that is not installed cannot be checked: the model loads (to be
    inspected), and :func:`remap.fit` reports the missing survey plugin.
    """
    from ..plugins import get_survey

    name = manifest.get("survey")
    try:
        survey = get_survey(name)
    except (UnknownPluginError, TypeError, ValueError):
        return
    for beam, record in manifest.get("beams", {}).items():
        grid = record.get("grid", {}) if isinstance(record, dict) else {}
        if beam not in survey.beams:
            raise error(f"{where}: the model's beam {beam!r} is not a beam of its survey "
                        f"{name!r} (beams: {', '.join(survey.beams)})")
        b = survey.beams[beam]
        want = {"wave_min": b.wave_min.value, "wave_max": b.wave_max.value,
                "sampling": b.sampling.value, "npix": b.npix}
        for key, value in want.items():
            have = grid.get(key)
            if not isinstance(have, (int, float)) or not math.isclose(
                    float(have), float(value), rel_tol=GRID_RTOL, abs_tol=0.0):
                raise error(f"{where}: the grid of beam {beam!r} in the manifest ({key}="
                            f"{have!r}) disagrees with survey {name!r} ({key}={value!r}; "
                            f"beam {beam}: {want['wave_min']:g}-{want['wave_max']:g} Å at "
                            f"{want['sampling']:g} Å, {want['npix']} pixels): the network "
                            f"would see spectra cut and resampled differently from its "
                            f"training data")
