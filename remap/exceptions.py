"""Exceptions and warnings raised by remap."""

from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["RemapError", "PluginError", "UnknownPluginError", "DuplicatePluginError",
           "SpectrumError", "NoOverlapError", "SpectrumFileError", "OutputError",
           "MediumAssumedWarning"]


class RemapError(Exception):
    """Base class of all remap errors."""


class PluginError(RemapError):
    """A plugin could not be loaded or is malformed."""


class UnknownPluginError(PluginError, KeyError):
    """No plugin of the requested kind has the requested name."""

    def __str__(self):  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicatePluginError(PluginError):
    """Two plugins of one kind share a name (or two entry points share a name)."""


class SpectrumError(RemapError, ValueError):
    """A spectrum cannot be used as given: bad units, values, axis or size."""


class NoOverlapError(SpectrumError):
    """A spectrum does not overlap the wavelength range that is needed."""


class SpectrumFileError(SpectrumError, OSError):
    """A file cannot be read as a spectrum: empty, corrupt, or no reader recognises it.

    The message names the file and the readers that were tried.  It is both a
    `SpectrumError` (a `ValueError`) and an `OSError`.
    """


class OutputError(RemapError, OSError):
    """An output cannot be written without destroying data.

    Raised when an output path is one of the inputs, exists already (and
    replacing it was not asked for), or is locked by another remap run.
    """


class MediumAssumedWarning(AstropyUserWarning):
    """A spectrum declares no wavelength medium (air or vacuum), so one was assumed.

    Vacuum wavelengths taken as air (or the reverse) shift every line by about
    1.4 Å at 5000 Å; give the medium (``medium="air"`` / ``"vacuum"``,
    ``remap fit --medium``) or set ``spectrum.meta["wavelength_medium"]`` to
    silence it.
    """
