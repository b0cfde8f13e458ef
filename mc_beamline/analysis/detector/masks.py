"""Bad-pixel masks: files, and a compact text form that travels in run metadata.

Masks are boolean arrays of the detector shape with ``True`` = bad pixel. Mask files are
``.npy`` arrays with 1 (or True) = bad pixel. Detector masks are mostly long runs of good
pixels, so packed bits compressed with zlib fit in a few hundred bytes of start metadata,
which makes a stored run self-contained for replay on another machine.
"""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

import numpy as np


class MaskError(ValueError):
    """A mask that cannot be used with the detector."""


def load_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a ``.npy`` mask file (1 = bad pixel) and check it against the detector ``shape``."""
    path = Path(path)
    if not path.is_file():
        raise MaskError(f"Mask file {path} does not exist.")
    try:
        mask = np.load(path, allow_pickle=False)
    except (ValueError, OSError):
        raise MaskError(f"Mask file {path} is not a .npy array of 0/1 values.") from None
    if mask.shape != tuple(shape):
        raise MaskError(f"Mask file {path} has shape {mask.shape}, the detector {tuple(shape)}.")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number) or not np.all(np.isfinite(mask)):
            raise MaskError(f"Mask file {path} must hold 0/1 values.")
        mask = mask != 0
    return mask


def encode_mask(mask: np.ndarray) -> str:
    """Compact text form of a boolean mask: base64 of zlib-compressed packed bits."""
    packed = np.packbits(np.asarray(mask, dtype=bool).ravel())
    return base64.b64encode(zlib.compress(packed.tobytes(), 9)).decode("ascii")


def decode_mask(text: str, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`encode_mask` for a detector of ``shape`` (rows, columns)."""
    try:
        packed = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8)
    except (ValueError, zlib.error) as exc:
        raise MaskError(f"The stored mask does not decode ({exc}).") from None
    n = int(np.prod(shape))
    bits = np.unpackbits(packed)
    if bits.size < n:
        raise MaskError(f"The stored mask has {bits.size} pixels, the detector {n}.")
    return bits[:n].astype(bool).reshape(shape)
