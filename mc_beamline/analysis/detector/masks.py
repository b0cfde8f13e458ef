"""Bad-pixel masks: files, and a compact text form that travels in run metadata.

Masks are boolean arrays of the detector shape with ``True`` = bad pixel. Mask files are
``.npy`` arrays, or EDF or TIFF images (as pyFAI-drawmask writes them, read by fabio), with
any nonzero value = bad pixel. Detector masks are mostly long runs of good
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


MASK_IMAGE_SUFFIXES = (".edf", ".tif", ".tiff")
"""Mask file name endings read as images by fabio (any other mask file is read as ``.npy``)."""


class ImageReadError(ValueError):
    """An image file fabio cannot read, or one that holds more than one frame.

    ``frames`` is the number of frames it holds (0 when it does not read at all); the
    message is fabio's reason, or says how many frames it holds."""

    def __init__(self, message: str, frames: int = 0):
        super().__init__(message)
        self.frames = frames


def read_single_image(path: str | Path) -> np.ndarray:
    """The one frame of a CBF, EDF or TIFF file, read by fabio; ImageReadError if there is not
    exactly one readable frame."""
    import fabio

    try:
        image = fabio.open(str(path))
    except Exception as exc:  # noqa: BLE001 - fabio raises many types for unreadable files
        raise ImageReadError(" ".join(str(exc).split()).rstrip(".") or type(exc).__name__) from None
    try:
        if image.nframes != 1:
            raise ImageReadError(f"{image.nframes} frames", frames=image.nframes)
        return np.asarray(image.data)
    finally:
        image.close()


def _read_mask_image(path: Path) -> np.ndarray:
    """The one frame of an EDF or TIFF mask image."""
    try:
        return read_single_image(path)
    except ImageReadError as exc:
        if exc.frames:
            raise MaskError(f"Mask file {path} holds {exc.frames} images, not one.") from None
        raise MaskError(f"Mask file {path} does not read as an EDF or TIFF image ({exc}).") from None


def load_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a mask file and check it against the detector ``shape`` (rows, columns).

    EDF/TIFF images (``.edf``, ``.tif``, ``.tiff``), else ``.npy`` arrays; a nonzero value
    is a bad pixel. Returns a boolean array of ``shape``, True = bad.

    Raises
    ------
    MaskError
        If the file is missing, unreadable, of another shape, or not numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise MaskError(f"Mask file {path} does not exist.")
    if path.suffix.lower() in MASK_IMAGE_SUFFIXES:
        mask = _read_mask_image(path)
    else:
        try:
            mask = np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            raise MaskError(
                f"Mask file {path} is not a .npy array of 0/1 values (nor an image ending in .edf, .tif or .tiff)."
            ) from None
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
