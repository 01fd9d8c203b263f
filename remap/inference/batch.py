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
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Batch"]


@dataclasses.dataclass
class Batch:
    """Rows of spectra as arrays (see the module documentation for each field)."""

    flux: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    wave: np.ndarray
    star: np.ndarray
    piece: np.ndarray
    beam: str | None = None
    medium: str | None = None
    window: tuple | None = None

    def __post_init__(self):
        n, npix = self.flux.shape
        for name in ("sigma", "mask"):
            if getattr(self, name).shape != (n, npix):
                raise ValueError(f"Batch.{name} has shape {getattr(self, name).shape}; "
                                 f"expected {(n, npix)}")
        if self.wave.shape not in ((npix,), (n, npix)):
            raise ValueError(f"Batch.wave has shape {self.wave.shape}; expected ({npix},) or "
                             f"{(n, npix)}")
        for name in ("star", "piece"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"Batch.{name} has shape {getattr(self, name).shape}; "
                                 f"expected ({n},)")

    def __len__(self):
        return len(self.star)

    @property
    def npix(self) -> int:
        """Pixels per row."""
        return self.flux.shape[1]

    @property
    def shared_wave(self) -> np.ndarray | None:
        """The grid shared by every row (1-D), or None when rows have their own."""
        return self.wave if self.wave.ndim == 1 else None

    def row_wave(self, i: int) -> np.ndarray:
        """The wavelength grid of row ``i``."""
        return self.wave if self.wave.ndim == 1 else self.wave[i]

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
        if self.wave.ndim == 1 or (self.wave == self.wave[0]).all():
            yield np.arange(len(self)), self.wave if self.wave.ndim == 1 else self.wave[0]
            return
        _, first, inverse = np.unique(self.wave, axis=0, return_index=True,
                                      return_inverse=True)
        inverse = np.asarray(inverse).ravel()
        for g, row in enumerate(first):
            yield np.flatnonzero(inverse == g), self.wave[row]

    def take(self, rows) -> "Batch":
        """A batch of some rows (index array or boolean mask)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return dataclasses.replace(
            self, flux=self.flux[rows], sigma=self.sigma[rows], mask=self.mask[rows],
            wave=self.wave if self.wave.ndim == 1 else self.wave[rows], star=self.star[rows],
            piece=self.piece[rows])

    def columns(self, sl: slice, wave: np.ndarray | None = None) -> "Batch":
        """A copy of some pixels of every row (a beam's range), optionally on ``wave``."""
        new_wave = (self.wave[sl] if self.wave.ndim == 1 else self.wave[:, sl]) \
            if wave is None else wave
        return dataclasses.replace(self, flux=self.flux[:, sl].copy(),
                                   sigma=self.sigma[:, sl].copy(), mask=self.mask[:, sl].copy(),
                                   wave=new_wave)

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
        shared = all(b.wave.ndim == 1 and (b.wave is first.wave
                                           or np.array_equal(b.wave, first.wave))
                     for b in batches)
        wave = first.wave if shared else np.concatenate(
            [np.broadcast_to(b.wave, b.flux.shape) for b in batches])
        return cls(flux=np.concatenate([b.flux for b in batches]),
                   sigma=np.concatenate([b.sigma for b in batches]),
                   mask=np.concatenate([b.mask for b in batches]), wave=wave,
                   star=np.concatenate([b.star for b in batches]),
                   piece=np.concatenate([b.piece for b in batches]),
                   beam=first.beam, medium=first.medium, window=first.window)
