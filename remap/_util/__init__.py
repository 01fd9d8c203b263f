"""Internal helpers shared by remap's modules (not public API)."""
