"""Image loading with PIL."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

Source = Union[str, Path, bytes, bytearray, memoryview]


def load_image(src: Source) -> torch.Tensor:
    """Loads an image as RGB.

    Args:
        src: Path to an image file, or the file's contents as bytes.

    Returns:
        ``uint8`` tensor ``[H, W, 3]``. Greyscale, palette and alpha images are converted to RGB
        (alpha is dropped, not composited).

    Raises:
        ValueError: If ``src`` is not a readable image.
    """
    is_bytes = isinstance(src, (bytes, bytearray, memoryview))
    name = f"<{len(src)} bytes in memory>" if is_bytes else str(src)
    try:
        with Image.open(io.BytesIO(bytes(src)) if is_bytes else src) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image {name}: {' '.join(str(e).split())}") from e
    # np.array copies, so the tensor owns writable memory independent of PIL's buffer.
    return torch.from_numpy(np.array(rgb, dtype=np.uint8))
