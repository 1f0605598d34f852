"""``QuantizedImage``: the quantized pixels as an array or a PIL image, atomic save, metrics."""
import os
import secrets
from functools import cached_property

import numpy as np

from fastkm.image import _color
from fastkm.image._remap import _nearest_colors

_METRIC_CHUNK = 1 << 20            # pixels per chunk when metrics are computed per pixel


# Formats Pillow writes from a palette ('P') image, keeping the indices
_INDEXED_FORMATS = ("PNG", "GIF", "BMP", "TIFF", "PCX", "TGA", "IM")


class QuantizedImage:
    """The result of :func:`fastkm.quantize` or :meth:`Palette.quantize` (not
    constructed directly).

    Attributes
    ----------
    palette : ndarray of shape (n, 3) or (n, 4), uint8
        The entries, most used first (for :func:`fastkm.quantize`).
    indices : ndarray of shape (H, W), uint8 (n <= 256) or uint16
        Palette index of every pixel.
    counts : ndarray of shape (n,), int64
        Pixels mapped to each entry.
    transparent_index : int or None
        The entry of fully transparent pixels, if any.
    color_space : str
        The palette's color space.
    dither : str or None
        'floyd-steinberg' or None.

    Examples
    --------
    >>> import numpy as np
    >>> import fastkm
    >>> img = np.zeros((2, 3, 3), np.uint8); img[:, 1:] = (0, 128, 255)
    >>> q = fastkm.quantize(img, 4)
    >>> q.n_colors, q.shape, q.mse
    (2, (2, 3, 3), 0.0)
    >>> q.to_array()[0, 1]
    array([  0, 128, 255], dtype=uint8)
    >>> q.image.mode
    'P'
    """

    def __init__(self, palette, indices, counts, source, dither, distinct=None, n_threads=1):
        self._palette_obj = palette  # the Palette; self.palette holds its colors
        self.palette = palette.colors
        self.indices = indices
        self.counts = counts
        self.transparent_index = palette.transparent_index
        self.color_space = palette.color_space
        self.dither = dither
        self._source = source
        # (colors, weights): the source's distinct colors and their pixel counts, for
        # exact metrics without a pass over the pixels
        self._distinct = distinct
        self._n_threads = n_threads

    def __repr__(self):
        h, w = self.indices.shape
        return (f"QuantizedImage({w}x{h}, {self.n_colors} colors, "
                f"color_space={self.color_space!r}, dither={self.dither!r})")

    @property
    def n_colors(self):
        """Number of palette entries."""
        return self.palette.shape[0]

    @property
    def shape(self):
        """(H, W, channels) of the quantized image."""
        return self.indices.shape + (self.palette.shape[1],)

    def to_array(self):
        """The quantized pixels.

        Returns
        -------
        pixels : ndarray of shape (H, W, 3) or (H, W, 4), uint8
            Every pixel replaced by its palette entry.
        """
        return np.take(self.palette, self.indices, axis=0)

    @property
    def image(self):
        """A Pillow ``'P'`` image (at most 256 entries), ready to save as PNG or GIF.

        An RGBA palette is stored as such (PNG writes it as PLTE + tRNS).
        """
        return self._pil_image(rgba_palette=self.palette.shape[1] == 4)

    def _pil_image(self, rgba_palette):
        from PIL import Image

        if self.n_colors > 256:
            raise ValueError(
                f"an indexed image holds at most 256 colors; this one has {self.n_colors}")
        h, w = self.indices.shape
        idx = np.ascontiguousarray(self.indices, dtype=np.uint8)
        im = Image.frombytes("P", (w, h), idx.tobytes())
        if rgba_palette:
            im.putpalette(self.palette.tobytes(), rawmode="RGBA")
        else:
            im.putpalette(np.ascontiguousarray(self.palette[:, :3]).tobytes(), rawmode="RGB")
        return im

    def save(self, path, format=None, **params):
        """Write the indexed image, atomically: a temporary file in the same
        directory is renamed into place, so a failure never leaves a partial file.

        Parameters
        ----------
        path : str or path-like
            Where to write; the extension picks the format unless ``format`` does.
        format : str, default=None
            A format Pillow writes from palette images: 'PNG', 'GIF', 'BMP',
            'TIFF', 'PCX', 'TGA' or 'IM'. JPEG and WebP have no palette images
            (a ValueError): save ``to_array()`` with Pillow for those.
        **params
            Passed to ``PIL.Image.save`` (e.g. ``optimize=True``).

        Notes
        -----
        GIF keeps the fully transparent entry as its transparent color; GIF has
        no partial alpha, so other entries are written opaque. PNG keeps the
        RGBA palette (PLTE + tRNS).
        """
        from PIL import Image

        path = os.fspath(path)
        if format is None:
            ext = os.path.splitext(path)[1].lower()
            format = Image.registered_extensions().get(ext)
            if format is None:
                raise ValueError(f"cannot tell the image format from the file name {path!r}; "
                                 "pass format='PNG' or 'GIF'")
        fmt = format.upper()
        if fmt not in _INDEXED_FORMATS:
            raise ValueError(
                f"cannot save {path!r} as {fmt}: that format has no palette (indexed) images; "
                "use .png or .gif, or save result.to_array() (the quantized pixels) with Pillow")
        if fmt == "GIF":
            im = self._pil_image(rgba_palette=False)
            if self.transparent_index is not None:
                params.setdefault("transparency", self.transparent_index)
        else:
            im = self.image
        directory, base = os.path.split(os.path.abspath(path))
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "xb") as f:
                im.save(f, format=fmt, **params)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    # ---- quality
    @cached_property
    def _errors(self):
        """(mse, mean CIEDE2000) against the source pixels, premultiplied."""
        if self._distinct is not None and self.dither is None:
            # fully transparent pixels are not among the distinct colors: they map
            # to the transparent entry, without error
            colors, weights = self._distinct
            labels, _ = _nearest_colors(self._palette_obj, colors, weights, self._n_threads)
            w = weights.astype(np.float64)
            sq, de = _color_errors(colors, self.palette[labels])
            n = self._source.shape[0] * self._source.shape[1]
            return float(sq @ w) / (n * colors.shape[1]), float(de @ w) / n
        src = self._source.reshape(-1, self._source.shape[2])
        idx = self.indices.reshape(-1)
        sq_sum = de_sum = 0.0
        for start in range(0, src.shape[0], _METRIC_CHUNK):
            sq, de = _color_errors(src[start:start + _METRIC_CHUNK],
                                   self.palette[idx[start:start + _METRIC_CHUNK]])
            sq_sum += float(sq.sum())
            de_sum += float(de.sum())
        return sq_sum / (src.shape[0] * src.shape[1]), de_sum / src.shape[0]

    @property
    def mse(self):
        """Mean squared error per channel (0..255 units; RGBA premultiplied)."""
        return self._errors[0]

    @property
    def psnr(self):
        """Peak signal-to-noise ratio in dB (infinite when lossless)."""
        mse = self.mse
        return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))

    @property
    def delta_e(self):
        """Mean CIEDE2000 color difference per pixel (RGBA composited over black)."""
        return self._errors[1]


def _color_errors(a, b):
    """Squared error summed over channels and CIEDE2000 of uint8 color rows."""
    fa = _color.color_features(a, "rgb")
    fb = _color.color_features(b, "rgb")
    sq = ((fa - fb) ** 2).sum(axis=1)
    de = _color.ciede2000(_color.srgb_to_lab(fa[:, :3]), _color.srgb_to_lab(fb[:, :3]))
    return sq, de
