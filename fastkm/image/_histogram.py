"""Pixel counts by color: exact histograms (hash table, dense table) and coarse color bins."""
from functools import cached_property

import numpy as np

from fastkm import _threads
from fastkm.image import _kernels

_DENSE_MIN_PIXELS = 1 << 21        # RGB images this large count colors in a dense table


class _Histogram:
    """Distinct colors of a set of pixels and their counts; subclasses fill
    ``_distinct`` = (table slots, colors, counts)."""

    @property
    def colors(self):
        """(n_distinct, n_channels) uint8, in table order."""
        return self._distinct[1]

    @property
    def weights(self):
        """(n_distinct,) uint32 pixel count of each distinct color."""
        return self._distinct[2]


class _ColorHistogram(_Histogram):
    """Distinct colors of uint8 pixels and their counts, in a compiled hash table.

    Pixels with alpha 0 (4 channels) are not stored: they are counted in
    ``n_transparent``.
    """

    _MAX_LOAD = 0.5
    dense = False

    def __init__(self, n_channels, size_hint=1 << 16, skip_transparent=True):
        self.n_channels = n_channels
        self.skip_transparent = bool(skip_transparent) and n_channels == 4
        size = 1 << 10
        while size < min(int(size_hint), 1 << 20):
            size <<= 1
        self._alloc(size)
        self.fill = 0
        self.n_pixels = 0
        self.n_transparent = 0

    def _alloc(self, size):
        self.keys = np.zeros(size, dtype=np.uint32)
        self.counts = np.zeros(size, dtype=np.uint32)
        self.max_fill = int(size * self._MAX_LOAD)

    def _grow(self):
        old_keys, old_counts = self.keys, self.counts
        self._alloc(old_keys.size * (4 if old_keys.size < (1 << 22) else 2))
        _kernels.histogram_rehash(old_keys, old_counts, self.keys, self.counts)

    def add(self, pixels):
        """Count the pixels of an (n, n_channels) uint8 C-contiguous array."""
        n = pixels.shape[0]
        if self.n_pixels + n >= 2**32:
            raise ValueError("at most 2**32 - 1 pixels can be counted in one histogram")
        start = 0
        while start < n:
            start, self.fill = _kernels.histogram_insert(
                pixels, start, self.keys, self.counts, self.fill, self.max_fill,
                self.skip_transparent)
            if start < n or self.fill >= self.max_fill:
                self._grow()
        if self.skip_transparent:
            self.n_transparent += int(np.count_nonzero(pixels[:, 3] == 0))
        self.n_pixels += n
        self.__dict__.pop("_distinct", None)

    @cached_property
    def _distinct(self):
        slots = np.flatnonzero(self.counts)
        keys = self.keys[slots].astype("<u4")
        colors = np.ascontiguousarray(keys.view(np.uint8).reshape(-1, 4)[:, :self.n_channels])
        return slots, colors, self.counts[slots]

    def lookup(self, pixels, values, transparent_value, n_threads):
        """Value of every pixel's color: ``values`` has one entry per distinct color."""
        dtype = values.dtype
        slot_values = np.zeros(self.keys.size, dtype=dtype)
        slot_values[self._distinct[0]] = values
        out = np.empty(pixels.shape[0], dtype=dtype)
        _kernels.histogram_lookup(pixels, self.keys, self.counts, slot_values,
                                  transparent_value, out, n_threads)
        return out


class _DenseHistogram(_Histogram):
    """Distinct colors of RGB pixels and their counts in a dense table of 2**24
    counts (64 MB): faster than the hash table for large images."""

    n_channels = 3
    n_transparent = 0
    dense = True

    def __init__(self, n_threads):
        self.counts = np.zeros(1 << 24, dtype=np.uint32)
        self.n_pixels = 0
        self.n_threads = n_threads

    def add(self, pixels):
        n = pixels.shape[0]
        if self.n_pixels + n >= 2**32:
            raise ValueError("at most 2**32 - 1 pixels can be counted in one histogram")
        _kernels.dense_histogram(pixels, self.counts, self.n_threads)
        self.n_pixels += n
        self.__dict__.pop("_distinct", None)

    @cached_property
    def _distinct(self):
        keys = np.flatnonzero(self.counts)
        colors = np.empty((keys.size, 3), dtype=np.uint8)
        for c in range(3):
            colors[:, c] = (keys >> (8 * c)) & 255
        return keys, colors, self.counts[keys]

    def lookup(self, pixels, values, transparent_value, n_threads):
        table = np.zeros(1 << 24, dtype=values.dtype)
        table[self._distinct[0]] = values
        out = np.empty(pixels.shape[0], dtype=values.dtype)
        _kernels.dense_lookup(pixels, table, out, n_threads)
        return out


def _histogram_of(images_pixels, skip_transparent=True, n_threads=1):
    n_channels = images_pixels[0].shape[2]
    total = sum(a.shape[0] * a.shape[1] for a in images_pixels)
    n_threads = _threads.threads_for("pixels", 8 * total, n_threads)
    if n_channels == 3 and total >= _DENSE_MIN_PIXELS:
        hist = _DenseHistogram(n_threads)
    else:
        hist = _ColorHistogram(n_channels, size_hint=total // 2,
                               skip_transparent=skip_transparent)
    for arr in images_pixels:
        hist.add(arr.reshape(-1, n_channels))
    return hist


class _BinPyramid:
    """Color bins at several bit depths (the top bits of each channel): weighted
    mean features and total weight of each occupied bin. The base is the finest
    level (its occupied bins, with their weight and weighted feature sums); every
    coarser level sums base bins, so all the means are exact weighted means of
    the pixels' features."""

    def __init__(self, q, bits, weights, sums):
        self.q = q                  # (m, C) int: the base bins' channel values
        self.bits = bits            # bits per channel of the base
        self.weights = weights      # (m,) float64
        self.sums = sums            # (m, d) float64: weight x features
        self._levels = {}

    @staticmethod
    def _bin_ids(q, shift, bits):
        ids = np.zeros(q.shape[0], dtype=np.intp)
        for c in range(q.shape[1]):
            ids |= (q[:, c].astype(np.intp) >> shift) << (c * bits)
        return ids

    @staticmethod
    def _unpack(ids, bits, n_channels):
        return np.stack([(ids >> (c * bits)) & ((1 << bits) - 1) for c in range(n_channels)],
                        axis=1)

    @classmethod
    def from_colors(cls, colors, weights, X, bits):
        """From distinct colors (m, C) with their weights and features X (m, d),
        binned at ``bits`` bits per channel."""
        n_channels = colors.shape[1]
        ids = cls._bin_ids(colors, 8 - bits, bits)
        n_bins = 1 << (bits * n_channels)
        w = np.asarray(weights, dtype=np.float64)
        wsum = np.bincount(ids, weights=w, minlength=n_bins)
        occupied = np.flatnonzero(wsum)
        sums = np.empty((occupied.size, X.shape[1]))
        for f in range(X.shape[1]):
            sums[:, f] = np.bincount(ids, weights=w * X[:, f], minlength=n_bins)[occupied]
        return cls(cls._unpack(occupied, bits, n_channels), bits, wsum[occupied], sums)

    @classmethod
    def from_pixels(cls, pixels, bits, n_threads, weights=None):
        """From RGB(A) pixels (n, C), or distinct colors and their ``weights``,
        binned at ``bits`` in one compiled pass (RGB features). Also returns the
        number of fully transparent pixels (not binned; only without weights)."""
        n_channels = pixels.shape[1]
        n_bins = 1 << (bits * n_channels)
        n_threads = _threads.threads_for("pixels", 8 * pixels.shape[0], n_threads)
        thread_sums = np.zeros((n_threads, n_bins, n_channels + 1), dtype=np.int64)
        _kernels.bin_histogram(pixels, np.empty(0, np.uint32) if weights is None else weights,
                               8 - bits, weights is None, thread_sums, n_threads)
        total = thread_sums.sum(axis=0) if n_threads > 1 else thread_sums[0]
        occupied = np.flatnonzero(total[:, 0])
        sums = total[occupied, 1:].astype(np.float64)
        if n_channels == 4:
            sums /= 255.0  # the kernel's features are 255 x premultiplied
        n_transparent = 0
        if n_channels == 4 and weights is None:
            n_transparent = pixels.shape[0] - int(total[:, 0].sum())
        pyramid = cls(cls._unpack(occupied, bits, n_channels), bits,
                      total[occupied, 0].astype(np.float64), sums)
        return pyramid, n_transparent

    @property
    def n_bins(self):
        return self.q.shape[0]

    def level(self, bits):
        """Weighted mean features (float32, m x d) and weights (float32) of the
        occupied bins at ``bits`` (<= the base's) bits per channel."""
        if bits not in self._levels:
            if bits == self.bits:
                w, s = self.weights, self.sums
            else:
                ids = self._bin_ids(self.q, self.bits - bits, bits)
                n_bins = 1 << (bits * self.q.shape[1])
                if n_bins <= (1 << 22):  # dense counts: no sort
                    w = np.bincount(ids, weights=self.weights, minlength=n_bins)
                    occupied = np.flatnonzero(w)
                    w = w[occupied]
                    inverse = np.zeros(n_bins, dtype=np.intp)
                    inverse[occupied] = np.arange(occupied.size)
                    inverse = inverse[ids]
                else:
                    occupied, inverse = np.unique(ids, return_inverse=True)
                    w = np.bincount(inverse, weights=self.weights)
                s = np.stack([np.bincount(inverse, weights=self.sums[:, f],
                                          minlength=occupied.size)
                              for f in range(self.sums.shape[1])], axis=1)
            self._levels[bits] = ((s / w[:, None]).astype(np.float32), w.astype(np.float32))
        return self._levels[bits]
