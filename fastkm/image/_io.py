"""Image input: paths, PIL images and arrays to (H, W, 3 or 4) uint8 pixels; alpha helpers."""
import os

import numpy as np


def _gray_to_rgb(gray):
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _pil_to_array(im):
    """(H, W, 3 or 4) uint8 pixels of a PIL image of any common mode."""
    mode = im.mode
    if mode in ("RGB", "RGBA"):
        arr = np.asarray(im)
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit gray: 0..65535 scaled to 0..255; a 32-bit 'I' image whose values
        # fit in 0..255 (e.g. converted from 'L') is taken as 8-bit
        a = np.asarray(im).astype(np.int64)
        if mode == "I" and a.size and a.min() >= 0 and a.max() <= 255:
            arr = _gray_to_rgb(a.astype(np.uint8))
        else:
            a = np.clip(a, 0, 65535)
            arr = _gray_to_rgb(((a * 255 + 32767) // 65535).astype(np.uint8))
    elif mode == "F":
        arr = _gray_to_rgb(np.clip(np.rint(np.asarray(im, dtype=np.float64)), 0, 255)
                           .astype(np.uint8))
    elif mode in ("LA", "La", "PA", "RGBa"):
        arr = np.asarray(im.convert("RGBA"))
    elif mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None
                                                  and im.palette.mode == "RGBA")
        arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    elif mode in ("1", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        arr = np.asarray(im.convert("RGB"))
    else:
        raise ValueError(f"unsupported image mode {mode!r}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def open_image(path):
    """Read an image file into (H, W, 3 or 4) uint8 pixels.

    Raises the errors of ``PIL.Image.open`` (``FileNotFoundError``,
    ``PIL.UnidentifiedImageError``, ...), ``OSError`` for a truncated file, and
    ``ValueError`` for an unsupported mode or an image Pillow refuses as a
    possible decompression bomb (the message says how to allow it).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return _pil_to_array(im)
    except Image.DecompressionBombError as e:
        raise ValueError(_bomb_message(path, e, Image.MAX_IMAGE_PIXELS)) from None


def _bomb_message(path, error, limit):
    """Why Pillow refused an image it takes for a decompression bomb, and the fix."""
    import re

    found = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return (f"{os.fspath(path)}: the image has {size}, more than twice Pillow's safety limit "
            f"of {limit:,} (PIL.Image.MAX_IMAGE_PIXELS); if you trust the file, raise that "
            "limit before opening it")


def _as_pixels(image):
    """(H, W, 3 or 4) uint8 C-contiguous pixels from a PIL image, an array or a path."""
    if isinstance(image, (str, bytes, os.PathLike)):
        arr = open_image(image)
    elif isinstance(image, np.ndarray):
        arr = _array_pixels(image)
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow is a dependency
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            arr = _pil_to_array(image)
        elif hasattr(image, "__array_interface__") or hasattr(image, "__array__"):
            arr = _array_pixels(np.asarray(image))
        else:
            raise TypeError(
                "image must be a PIL.Image, a uint8 NumPy array (H, W), (H, W, 3) or "
                f"(H, W, 4), or a path; got {type(image).__name__}"
            )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"the image has no pixels (shape {arr.shape})")
    return arr


def _array_pixels(a):
    if a.dtype != np.uint8:
        raise TypeError(
            f"image arrays must have dtype uint8; got {a.dtype} (scale to 0..255 and use "
            "np.uint8, e.g. np.clip(np.rint(x * 255), 0, 255).astype(np.uint8))"
        )
    if a.ndim == 2:
        return _gray_to_rgb(a)
    if a.ndim == 3 and a.shape[2] in (1, 2, 3, 4):
        if a.shape[2] == 1:
            return _gray_to_rgb(a[:, :, 0])
        if a.shape[2] == 2:  # gray + alpha
            return np.ascontiguousarray(np.concatenate([np.repeat(a[:, :, :1], 3, axis=2),
                                                        a[:, :, 1:]], axis=2))
        return np.ascontiguousarray(a)
    raise ValueError(
        "image arrays must have shape (H, W) or (H, W, C) with C = 1 (gray), 2 (gray + alpha), "
        f"3 (RGB) or 4 (RGBA); got {a.shape}"
    )


def _drop_opaque_alpha(arr):
    """RGBA pixels whose alpha is 255 everywhere carry no alpha: return RGB."""
    if arr.shape[2] == 4 and int(arr[:, :, 3].min()) == 255:
        return np.ascontiguousarray(arr[:, :, :3])
    return arr


def _add_alpha(arr):
    out = np.empty(arr.shape[:-1] + (4,), dtype=np.uint8)
    out[..., :3] = arr[..., :3]
    out[..., 3] = 255
    return out


def _match_channels(arr, n_channels):
    """``arr`` with the ``n_channels`` of the palette that maps it: an opaque alpha
    channel added, or an alpha channel that is opaque everywhere dropped."""
    if arr.shape[2] == n_channels:
        return arr
    if n_channels == 4:
        return _add_alpha(arr)
    arr3 = _drop_opaque_alpha(arr)
    if arr3.shape[2] == 4:
        raise ValueError(
            "the image has transparent pixels but the palette has no alpha channel")
    return arr3
