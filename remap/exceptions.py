"""Exceptions raised by remap."""

__all__ = ["RemapError", "PluginError", "UnknownPluginError", "DuplicatePluginError",
           "SpectrumError", "NoOverlapError"]


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
