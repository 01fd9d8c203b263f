"""An example third-party survey plugin for remap (see docs/plugins.rst)."""

__all__ = []
