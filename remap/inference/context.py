"""Per-star state of the chunk of stars the pipeline is working on: `Context`.

The stages of :mod:`remap.inference.stages` pass `remap.inference.Batch`
arrays to each other; everything else they learn about a star goes into the
`Context`: structured notes (`Note`: star, stage, code, message, beam; no
stage ever looks at a message's text), `remap.Flag` bits, per-star values
(declared with :meth:`Context.declare`, which makes them columns of
`remap.FitResult.values` and of ``to_table()``), the per-beam network outputs
and the time spent in each stage.
"""

from __future__ import annotations

import contextlib
import time
from typing import NamedTuple

import numpy as np

from ..exceptions import SpectrumError
from .flags import Flag
from .result import Column

__all__ = ["Note", "Context"]


class Note(NamedTuple):
    """One thing to say about a star.

    Attributes
    ----------
    star : int
        Index of the star in its chunk.
    stage : str
        Name of the stage that wrote it.
    code : str
        What kind of note (``"no_overlap"``, ``"beam_not_used"``,
        ``"missing_beam"``, ``"low_snr"``, ``"masked"``, ``"pmf_disjoint"``,
        ``"beams_disagree"``, ``"edge_pmf"``, ``"far_from_training"``,
        ``"continuum_failed"``, ``"sigma_all_zero"``, ``"bad_input"``, ...).
    message : str
        The text shown to the user.
    beam : str or None
        The beam it is about, if any.
    error : str or None
        For a ``"bad_input"`` note: the class name of the error that gave the
        star up (e.g. ``"SpectrumError"``); None otherwise.
    """

    star: int
    stage: str
    code: str
    message: str
    beam: str | None = None
    error: str | None = None


class Context:
    """What the pipeline knows about the stars of one chunk.

    Parameters
    ----------
    labels : list of str
        How each star is named in messages (``spectra[12]``, ``spectrum``).
    index : ndarray of int
        Position of each star in the caller's input.
    beams : list of str
        The model's beams.
    heads : list of `remap.heads.HeadSpec`
        The model's heads.
    errors : {"flag", "raise"}
        What :meth:`fail` does.

    Attributes
    ----------
    n : int
    notes : list of `Note`
    flags : ndarray of int64, shape (n,)
    failed : ndarray of bool, shape (n,)
        Stars given up as `remap.Flag.BAD_INPUT`.
    values : dict of str to ndarray
        Declared per-star values (NaN where unset).
    columns : dict of str to `remap.inference.result.Column`
    snr, masked_fraction : dict of str to ndarray
        Per beam, shape (n,), NaN where the beam was not used.
    used : dict of str to ndarray of bool
        Per beam: the beam's network ran on the star.
    beam_pmfs : dict of str to dict of str to ndarray
        Per head and beam, shape (n, n_bins), NaN rows where unused.
    embeddings : dict of str to dict of str to ndarray
        Per beam and head, shape (n, d), NaN rows where unused.
    pmfs, summaries, disjoint : dict
        Per head, set by the ``conflation`` stage.
    neighbours : dict
        Per beam and head, set by the ``neighbours`` stage.
    timings : dict of str to float
        Seconds per stage (the network stage per beam: ``"network A"``).
    pieces : list of list of str
        Per star, how each of its input spectra is named in messages.
    piece_units : dict of int to list
        For stars given as several spectra, the flux unit of each.
    piece_resolution : dict of int to list
        Per star, for each input spectrum, ``(meta["resolution"] or None, row)``
        (the row of a 2-D input, whose meta may hold one value per row).
    """

    def __init__(self, labels, index, beams, heads, errors="flag"):
        self.n = len(labels)
        self.labels = list(labels)
        self.index = np.asarray(index, dtype=np.int64)
        self.beams = list(beams)
        self.heads = list(heads)
        self.errors = errors
        self.notes = []
        self.flags = np.zeros(self.n, dtype=np.int64)
        self.failed = np.zeros(self.n, dtype=bool)
        self.values = {}
        self.columns = {}
        self.snr = {b: np.full(self.n, np.nan) for b in self.beams}
        self.masked_fraction = {b: np.full(self.n, np.nan) for b in self.beams}
        self.used = {b: np.zeros(self.n, dtype=bool) for b in self.beams}
        self.beam_pmfs = {h.name: {b: np.full((self.n, h.n_bins), np.nan) for b in self.beams}
                          for h in self.heads}
        self.embeddings = {b: {} for b in self.beams}
        self.pmfs, self.summaries, self.disjoint, self.neighbours = {}, {}, {}, {}
        self.timings = {}
        self.pieces = [[label] for label in self.labels]
        self.piece_units = {}
        self.piece_resolution = {}

    # ---------------------------------------------------------------- notes and flags
    def note(self, star: int, stage: str, code: str, message: str, beam: str | None = None,
             error: str | None = None):
        """Record a note about ``star``."""
        self.notes.append(Note(int(star), stage, code, message, beam, error))

    def has_note(self, star: int, *, code: str | None = None, beam: str | None = None) -> bool:
        """Whether a note about ``star`` (of that code and/or beam) was recorded."""
        return any(n.star == star and (code is None or n.code == code)
                   and (beam is None or n.beam == beam) for n in self.notes)

    def flag(self, stars, bit: Flag):
        """Set ``bit`` for ``stars`` (indices or a boolean mask)."""
        self.flags[stars] |= int(bit)

    def fail(self, star: int, stage: str, exc: Exception):
        """Give ``star`` up: `BAD_INPUT` and the error as its note, or raise it.

        With ``errors="raise"`` the error is raised (a `remap.SpectrumError`
        stays one; its message names the star by its place in the input).
        """
        if self.errors == "raise":
            raise exc
        self.failed[star] = True
        self.flags[star] |= int(Flag.BAD_INPUT)
        kind = type(exc).__name__
        self.note(star, stage, "bad_input", f"{kind}: {exc}" if not isinstance(
            exc, SpectrumError) else str(exc), error=kind)

    def messages(self) -> list[str]:
        """Per star, its notes joined with ``"; "`` in the order they were written."""
        out = [[] for _ in range(self.n)]
        for n in self.notes:
            out[n.star].append(n.message)
        return ["; ".join(m) for m in out]

    def notes_of(self) -> list[tuple]:
        """Per star, the tuple of its `Note` records."""
        out = [[] for _ in range(self.n)]
        for n in self.notes:
            out[n.star].append(n)
        return [tuple(m) for m in out]

    # ---------------------------------------------------------------- values
    def declare(self, name: str, unit: str = "", description: str = "", stage: str = ""):
        """Declare a per-star value column (NaN until set); re-declaring is a no-op."""
        if name not in self.columns:
            self.columns[name] = Column(str(unit), description, stage)
            self.values[name] = np.full(self.n, np.nan)

    def set_value(self, name: str, stars, values):
        """Set a declared per-star value for ``stars``."""
        if name not in self.columns:
            raise KeyError(f"value {name!r} was not declared (Context.declare)")
        self.values[name][stars] = values

    # ---------------------------------------------------------------- timing
    @contextlib.contextmanager
    def timer(self, key: str):
        """Add the time spent in the ``with`` block to ``timings[key]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0
