"""The array batch that the inference stages pass to each other: `Batch`.

A `Batch` holds rows of spectra as plain numpy arrays:

``flux`` (n, npix) float
    Finite everywhere (masked pixels are filled by linear interpolation).
``sigma`` (n, npix) float
    Standard deviations in the flux's unit; a row of NaN means *no
    uncertainty given* (rows are either all finite or all NaN).
``mask`` (n, npix) bool
    True = bad pixel.
``wave`` (npix,) or (n, npix) float
    Wavelengths in Å, strictly increasing along each row: one grid shared by
    every row, or a grid per row (e.g. after a per-row radial-velocity
    shift).  :meth:`Batch.wave_groups` gives the rows that share a grid.
``star`` (n,) int
    Index of the row's star in the current chunk (`remap.inference.Context`).
``piece`` (n,) int
    Which of the star's input spectra the row came from.
``beam`` str or None
    The survey beam of the rows (None before the ``split`` stage).
``medium`` str or None
    Wavelength medium of ``wave`` (``"air"``/``"vacuum"``; None: not stated).
``window`` (int, int) or None
    After ``resample``: the slice of the model grid of ``beam`` that ``wave``
    is (a beam covered in part); None before.
``frame`` (n,) float or None
    Per-row factors the stored wavelengths are divided by (the ``rest_frame``
    stage's Doppler factors): the rows' wavelengths are ``base_wave /
    frame[:, None]``, computed only when ``wave`` is read.  The stages that
    cut and resample rows work from ``base_wave`` and ``frame`` directly, so a
    batch of stars at different velocities keeps one shared observed grid
    instead of one grid per row.  None: ``wave`` is ``base_wave``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Batch"]


class Batch:
    """Rows of spectra as arrays (see the module documentation for each field)."""

    def __init__(self, flux, sigma, mask, wave, star, piece, beam=None, medium=None,
                 window=None, frame=None):
        self.flux = flux
        self.sigma = sigma
        self.mask = mask
        self.base_wave = wave
        self.frame = None if frame is None else np.asarray(frame, dtype=np.float64)
        self.star = star
        self.piece = piece
        self.beam = beam
        self.medium = medium
        self.window = window
        n, npix = self.flux.shape
        for name in ("sigma", "mask"):
            if getattr(self, name).shape != (n, npix):
                raise ValueError(f"Batch.{name} has shape {getattr(self, name).shape}; "
                                 f"expected {(n, npix)}")
        if self.base_wave.shape not in ((npix,), (n, npix)):
            raise ValueError(f"Batch.wave has shape {self.base_wave.shape}; expected ({npix},) "
                             f"or {(n, npix)}")
        for name in ("star", "piece"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"Batch.{name} has shape {getattr(self, name).shape}; "
                                 f"expected ({n},)")
        if self.frame is not None and self.frame.shape != (n,):
            raise ValueError(f"Batch.frame has shape {self.frame.shape}; expected ({n},)")

    def __repr__(self):
        return (f"Batch({len(self)} rows x {self.npix} pixels, beam={self.beam!r}, "
                f"medium={self.medium!r}, window={self.window!r}"
                f"{', per-row frame' if self.frame is not None else ''})")

    @property
    def wave(self) -> np.ndarray:
        """Wavelengths (Å): ``base_wave``, divided row by row by ``frame`` when it is set (one
        grid per row, computed on reading; kept until ``wave`` is set)."""
        if self.frame is None:
            return self.base_wave
        cached = getattr(self, "_wave", None)
        if cached is None or cached[0] is not self.base_wave or cached[1] is not self.frame:
            cached = (self.base_wave, self.frame, self.base_wave / self.frame[:, None])
            self._wave = cached
        return cached[2]

    @wave.setter
    def wave(self, value):
        self.base_wave = value
        self.frame = None

    def wave_ends(self) -> tuple[np.ndarray, np.ndarray]:
        """First and last wavelength of each row (Å), equal to ``wave[:, 0]``, ``wave[:, -1]``
        (without computing ``wave``)."""
        b = self.base_wave
        first, last = b[..., 0], b[..., -1]
        if self.frame is not None:
            return first / self.frame, last / self.frame
        return np.broadcast_to(first, (len(self),)), np.broadcast_to(last, (len(self),))

    def __len__(self):
        return len(self.star)

    @property
    def npix(self) -> int:
        """Pixels per row."""
        return self.flux.shape[1]

    @property
    def shared_wave(self) -> np.ndarray | None:
        """The grid shared by every row (1-D), or None when rows have their own."""
        return self.base_wave if self.base_wave.ndim == 1 and self.frame is None else None

    def row_wave(self, i: int) -> np.ndarray:
        """The wavelength grid of row ``i``."""
        b = self.base_wave if self.base_wave.ndim == 1 else self.base_wave[i]
        return b if self.frame is None else b / self.frame[i]

    def has_sigma(self) -> np.ndarray:
        """Per row: True when an uncertainty was given (the row of ``sigma`` is finite)."""
        return np.isfinite(self.sigma[:, 0]) if self.npix else np.zeros(len(self), bool)

    def wave_groups(self):
        """``(rows, wave)`` for each set of rows sharing one grid (one set for a shared grid).

        Yields
        ------
        rows : ndarray of int
        wave : ndarray, shape (npix,)
        """
        wave = self.wave
        if wave.ndim == 1 or (wave == wave[0]).all():
            yield np.arange(len(self)), wave if wave.ndim == 1 else wave[0]
            return
        _, first, inverse = np.unique(wave, axis=0, return_index=True, return_inverse=True)
        inverse = np.asarray(inverse).ravel()
        for g, row in enumerate(first):
            yield np.flatnonzero(inverse == g), wave[row]

    def _replace(self, **changes) -> "Batch":
        fields = dict(flux=self.flux, sigma=self.sigma, mask=self.mask, wave=self.base_wave,
                      star=self.star, piece=self.piece, beam=self.beam, medium=self.medium,
                      window=self.window, frame=self.frame)
        fields.update(changes)
        return Batch(**fields)

    def take(self, rows) -> "Batch":
        """A batch of some rows (index array or boolean mask)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        b = self.base_wave
        return self._replace(
            flux=self.flux[rows], sigma=self.sigma[rows], mask=self.mask[rows],
            wave=b if b.ndim == 1 else b[rows], star=self.star[rows], piece=self.piece[rows],
            frame=None if self.frame is None else self.frame[rows])

    def columns(self, sl: slice, wave: np.ndarray | None = None) -> "Batch":
        """A copy of some pixels of every row (a beam's range), optionally on ``wave`` (the
        rows' wavelengths there, in their final frame)."""
        changes = dict(flux=self.flux[:, sl].copy(), sigma=self.sigma[:, sl].copy(),
                       mask=self.mask[:, sl].copy())
        if wave is None:
            b = self.base_wave
            changes["wave"] = b[sl] if b.ndim == 1 else b[:, sl]
        else:
            changes.update(wave=wave, frame=None)
        return self._replace(**changes)

    @classmethod
    def concatenate(cls, batches: list) -> "Batch":
        """Rows of several batches of one beam, window and pixel count, in order.

        The grid stays shared when every batch shares the same one; otherwise
        each row keeps its own.
        """
        batches = [b for b in batches if len(b)]
        if not batches:
            raise ValueError("no rows to concatenate")
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        if any(b.npix != first.npix or b.beam != first.beam or b.window != first.window
               or b.medium != first.medium for b in batches):
            raise ValueError("batches of different beams, windows, media or pixel counts "
                             "cannot be concatenated")
        shared = all(b.frame is None and b.base_wave.ndim == 1
                     and (b.base_wave is first.base_wave
                          or np.array_equal(b.base_wave, first.base_wave))
                     for b in batches)
        framed = not shared and all(b.frame is not None and b.base_wave.ndim == 1
                                    and (b.base_wave is first.base_wave
                                         or np.array_equal(b.base_wave, first.base_wave))
                                    for b in batches)
        if shared or framed:
            wave = first.base_wave
        else:
            wave = np.concatenate([np.broadcast_to(b.wave, b.flux.shape) for b in batches])
        return cls(flux=np.concatenate([b.flux for b in batches]),
                   sigma=np.concatenate([b.sigma for b in batches]),
                   mask=np.concatenate([b.mask for b in batches]), wave=wave,
                   star=np.concatenate([b.star for b in batches]),
                   piece=np.concatenate([b.piece for b in batches]),
                   beam=first.beam, medium=first.medium, window=first.window,
                   frame=np.concatenate([b.frame for b in batches]) if framed else None)
