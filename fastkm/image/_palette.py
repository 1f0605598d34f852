"""``Palette``: construction, canonical order and the tables the remap kernels search."""
from functools import cached_property

import numpy as np

from fastkm._validation import effective_n_threads
from fastkm.image import _color
from fastkm.image._io import _as_pixels, _drop_opaque_alpha, _match_channels
from fastkm.image._params import MAX_COLORS, _check_choice, _check_dither, _index_dtype
from fastkm.image._remap import _int_features, _pad4, _remap_pixels
from fastkm.image._result import QuantizedImage


class Palette:
    """A palette of up to 65536 colors, to quantize any number of images with.

    ``Palette.fit(images, n_colors)`` finds one palette for many images (the
    frames of an animation, a sprite sheet, a batch); ``palette.quantize(image)``
    maps an image onto it. ``Palette(colors)`` wraps a palette you already have.

    Parameters
    ----------
    colors : array-like of shape (n, 3) or (n, 4), uint8
        RGB or RGBA entries. With 4 columns, the first entry with alpha 0 is the
        one fully transparent pixels map to.
    color_space : {'rgb', 'oklab', 'lab'}, default='rgb'
        Space in which "nearest entry" is measured when remapping.

    Attributes
    ----------
    colors : ndarray of shape (n, 3) or (n, 4), uint8 (read-only)
        The entries.
    counts : ndarray of shape (n,) or None
        Pixels of the fitted images nearest to each entry (None when the palette
        was given). Fitted palettes are sorted by decreasing count.
    transparent_index : int or None
        The entry of fully transparent pixels.
    color_space : str
        Where "nearest" is measured.

    Notes
    -----
    The nearest entry of a color does not depend on the order of the entries:
    ties go to the smallest color.

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm import Palette
    >>> bw = Palette([[0, 0, 0], [255, 255, 255]])
    >>> bw
    Palette(2 RGB colors, color_space='rgb')
    >>> bw.quantize(np.array([[10, 240], [128, 127]], np.uint8)).indices
    array([[0, 1],
           [1, 0]], dtype=uint8)
    >>> frames = [np.full((4, 4, 3), (200, 10, 10), np.uint8),
    ...           np.full((4, 4, 3), (10, 10, 200), np.uint8)]
    >>> shared = Palette.fit(frames, 2)
    >>> shared.colors
    array([[ 10,  10, 200],
           [200,  10,  10]], dtype=uint8)
    >>> [int(shared.quantize(f).indices[0, 0]) for f in frames]
    [1, 0]
    """

    def __init__(self, colors, *, color_space="rgb"):
        colors = np.array(colors, copy=True)
        if colors.ndim == 2 and colors.shape[0] == 0:
            raise ValueError("a palette needs at least one color")
        if colors.dtype != np.uint8:
            if colors.dtype.kind not in "iu" or (colors.size and (colors.min() < 0
                                                                 or colors.max() > 255)):
                raise ValueError("palette colors must be integers in 0..255")
            colors = colors.astype(np.uint8)
        if (colors.ndim != 2 or colors.shape[1] not in (3, 4)
                or not 1 <= colors.shape[0] <= MAX_COLORS):
            raise ValueError(
                f"palette colors must have shape (n, 3) or (n, 4) with 1 <= n <= {MAX_COLORS}; "
                f"got {colors.shape}"
            )
        colors.setflags(write=False)
        self.colors = colors
        self.color_space = _check_choice(color_space, "color_space", _color.COLOR_SPACES)
        self.counts = None
        self.transparent_index = None
        if colors.shape[1] == 4:
            clear = np.flatnonzero(colors[:, 3] == 0)
            if clear.size:
                self.transparent_index = int(clear[0])

    # ---- construction
    @classmethod
    def fit(cls, images, n_colors=64, *, color_space="rgb", preset="default", random_state=0,
            n_threads=None):
        """One palette for all of ``images`` (k-means on their pooled pixels).

        Parameters
        ----------
        images : image or sequence of images
            PIL images, uint8 arrays or paths (see :func:`fastkm.quantize`); the
            frames of an animation, a sprite sheet, a batch.
        n_colors : int, default=64
            Largest palette size (1..65536); fewer when the images have fewer
            distinct colors (the palette is then exact).
        color_space : {'rgb', 'oklab', 'lab'}, default='rgb'
            Space of the clustering and of later remapping.
        preset : {'default', 'fast', 'converged'}, default='default'
            As in :func:`fastkm.quantize`.
        random_state : int, RandomState instance or None, default=0
            Seed of k-means++.
        n_threads : int, default=None
            Threads of the compiled passes.

        Returns
        -------
        Palette
            Entries sorted by how many pixels of all the images they got;
            ``counts`` holds those numbers.
        """
        # _fit builds palettes, so it imports this module: imported here, when needed
        from fastkm.image._fit import _fit_palette

        if not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ValueError("images is empty: at least one image is needed")
        pixels = [_drop_opaque_alpha(_as_pixels(im)) for im in images]
        return _fit_palette(pixels, n_colors, color_space, preset, random_state, n_threads)

    # ---- properties
    def __len__(self):
        """Number of entries."""
        return self.colors.shape[0]

    def __repr__(self):
        kind = "RGBA" if self.colors.shape[1] == 4 else "RGB"
        return f"Palette({len(self)} {kind} colors, color_space={self.color_space!r})"

    @property
    def n_channels(self):
        """3 (RGB entries) or 4 (RGBA)."""
        return self.colors.shape[1]

    # The kernels search the entries in "canonical" order, sorted by color (stable):
    # ties between equally near entries go to the smallest color, so the nearest
    # entry of a color does not depend on the order of the palette (sorting it by
    # popularity changes no pixel). Kernel outputs are mapped back to positions.
    @cached_property
    def _canon(self):
        """Positions of the entries sorted by color (RGBA packed little-endian)."""
        c = self.colors.astype(np.int64)
        key = sum(c[:, i] << (8 * i) for i in range(c.shape[1]))
        return np.argsort(key, kind="stable")

    @cached_property
    def _canon_rank(self):
        rank = np.empty(len(self), dtype=np.intp)
        rank[self._canon] = np.arange(len(self))
        return rank

    def _out_map(self, dtype):
        return self._canon.astype(dtype)

    @cached_property
    def _canon_colors(self):
        return np.ascontiguousarray(self.colors[self._canon])

    @cached_property
    def _features(self):
        """Features of the entries in the color space (float64, n x d), canonical order."""
        return np.ascontiguousarray(_color.color_features(self._canon_colors, self.color_space))

    @cached_property
    def _int_features(self):
        """Integer features (n, 4) and each entry's squared distance to its nearest
        other entry (0 when alone), canonical order."""
        feats = _int_features(self._canon_colors)
        n = len(self)
        gap2 = np.zeros(n, dtype=np.int64)
        if n > 1:
            for start in range(0, n, 512):
                block = feats[start:start + 512]
                d2 = ((block[:, None, :] - feats[None, :, :]) ** 2).sum(axis=2)
                d2[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = \
                    np.iinfo(np.int64).max
                gap2[start:start + block.shape[0]] = d2.min(axis=1)
        return feats, gap2

    @cached_property
    def _dither_features(self):
        """Premultiplied 0..255 features (n, 4) and, for each entry, every entry by
        increasing distance (for the search in the dithering kernel)."""
        feats = _pad4(_color.color_features(self._canon_colors, "rgb"))
        d2 = ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(axis=2)
        order = np.argsort(d2, axis=1, kind="stable").astype(np.int32)
        # each entry first in its own list, even when duplicated
        for a in range(len(self)):
            pos = int(np.flatnonzero(order[a] == a)[0])
            order[a, 1:pos + 1] = order[a, :pos].copy()
            order[a, 0] = a
        return feats, np.ascontiguousarray(order), np.ascontiguousarray(
            np.take_along_axis(d2, order, axis=1))

    def quantize(self, image, *, dither=False, n_threads=None):
        """Map an image onto this palette (entries keep their order).

        Parameters
        ----------
        image : PIL.Image, uint8 array or path
            As in :func:`fastkm.quantize`.
        dither : bool or 'floyd-steinberg', default=False
            Serpentine Floyd-Steinberg error diffusion.
        n_threads : int, default=None
            Threads of the compiled passes.

        Returns
        -------
        QuantizedImage
            Its ``palette`` is this palette's colors, in this order.
        """
        arr = _as_pixels(image)
        dither = _check_dither(dither)
        n_threads = effective_n_threads(n_threads)
        arr = _match_channels(arr, self.n_channels)
        indices, counts = _remap_pixels(self, arr, dither, n_threads)
        return QuantizedImage(self, indices, counts, arr, dither)


def _with_transparency(entries, n_transparent, n_colors, space):
    """The palette of ``entries``, plus the transparent entry if there are fully
    transparent pixels and room for it."""
    if n_transparent > 0 and n_colors >= 2:
        entries = np.concatenate([entries, np.zeros((1, 4), np.uint8)])
        pal = Palette(entries, color_space=space)
        pal.transparent_index = entries.shape[0] - 1
        return pal
    return Palette(entries, color_space=space)


def _sorted_by(palette, counts):
    """A copy of ``palette`` with entries by decreasing count (ties: index), unused
    ones dropped; and the old -> new index table."""
    order = np.lexsort((np.arange(counts.size), -counts))
    order = order[counts[order] > 0]
    pal = Palette(palette.colors[order], color_space=palette.color_space)
    pal.counts = counts[order].astype(np.int64)
    pal.transparent_index = None
    if palette.transparent_index is not None:
        where = np.flatnonzero(order == palette.transparent_index)
        pal.transparent_index = int(where[0]) if where.size else None
    lut = np.zeros(counts.size, dtype=_index_dtype(counts.size))
    lut[order] = np.arange(order.size)
    return pal, lut
