"""Compiled kernels of color quantization (``fastkm.image``).

* Color histograms: an open-addressing hash table of the distinct colors of
  uint8 pixels (24-bit RGB or 32-bit RGBA keys; grown by the caller), a dense
  table of 2**24 counts for large RGB images, and per-pixel lookups in both;
  ``bin_histogram`` sums pixels (or weighted colors) into coarse color bins.
* Exact nearest palette entries. Every palette entry that can be nearest to some
  point of a color cell (a box) is listed once per occupied cell by box distance
  bounds (``cell_candidates``); a pixel then compares only its cell's candidates,
  after trying the previous pixel's answer (same color, or nearer to that entry
  than half the gap to its nearest neighbour: triangle inequality). Integer
  arithmetic for RGB(A) (``remap_cells``), float for perceptual color spaces
  (``nearest_cells_float``).
* Serpentine Floyd-Steinberg error diffusion with clamped error
  (``dither_floyd_steinberg``); its search tries the previous answer, then only
  the entries within twice that distance (Orchard 1991).

Every buffer is allocated by the Python layer (``fastkm.image``); kernels only
fill them and never validate. Each pixel's answer depends on that pixel alone
(dithering: on a fixed serial scan), and per-thread sums are integers, so results
do not depend on the number of threads.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.math cimport fabsf
from libc.stdlib cimport free, malloc

ctypedef fused index_t:
    uint8_t
    uint16_t

cdef enum:
    PIXEL_CHUNK = 4096   # pixels per parallel work item


# --------------------------------------------------------------------------- histogram

cdef inline Py_ssize_t _cell_of(const uint8_t* p, Py_ssize_t c, int shift) noexcept nogil:
    cdef int b = 8 - shift
    cdef Py_ssize_t cell = (p[0] >> shift) | ((<Py_ssize_t>(p[1] >> shift)) << b) | (
        (<Py_ssize_t>(p[2] >> shift)) << (2 * b))
    if c == 4:
        cell = cell | ((<Py_ssize_t>(p[3] >> shift)) << (3 * b))
    return cell


cdef inline uint32_t _key(const uint8_t* p, Py_ssize_t n_channels) noexcept nogil:
    if n_channels == 3:
        return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint32_t _slot(uint32_t key, int shift) noexcept nogil:
    # Fibonacci hashing: the top bits of key * 2^32/phi
    return <uint32_t>((key * <uint32_t>2654435769u) >> shift)


def histogram_insert(
    const uint8_t[:, ::1] pixels,      # IN  (n_pixels, n_channels), n_channels 3 or 4
    Py_ssize_t start,
    uint32_t[::1] table_keys,          # IN/OUT (size,), size a power of two
    uint32_t[::1] table_counts,        # IN/OUT (size,), 0 marks an empty slot
    Py_ssize_t fill,
    Py_ssize_t max_fill,
    bint skip_transparent,
):
    """Count pixels ``start:`` into an open-addressing hash table of colors.

    Parameters
    ----------
    pixels : uint8 ndarray of shape (n_pixels, 3 or 4), C-contiguous
        The key of a pixel is its bytes read as a little-endian integer.
    start : int
        First pixel to count.
    table_keys, table_counts : uint32 ndarrays of shape (size,)
        The table; size is a power of two. A slot is empty while its count is 0.
    fill : int
        Occupied slots on entry.
    max_fill : int
        The kernel stops right after the insertion that makes ``fill == max_fill``
        (< size), so that the caller can grow the table and call again.
    skip_transparent : bool
        With 4 channels, ignore pixels whose alpha is 0.

    Returns
    -------
    stop : int
        Pixels ``start:stop`` are counted; ``stop == n_pixels`` when done.
    fill : int
        Occupied slots on exit.
    """
    cdef Py_ssize_t n = pixels.shape[0], c = pixels.shape[1], i
    cdef uint32_t size = <uint32_t>table_keys.shape[0], mask = size - 1
    cdef int shift = 32
    cdef uint32_t key, prev_key = 0, h, prev_slot = 0
    cdef bint have_prev = False
    cdef const uint8_t* p
    while (<uint32_t>1 << (32 - shift)) < size:
        shift -= 1
    with nogil:
        i = start
        while i < n:
            p = &pixels[i, 0]
            i += 1
            if skip_transparent and c == 4 and p[3] == 0:
                continue
            key = _key(p, c)
            if have_prev and key == prev_key:   # runs of one color are common in images
                table_counts[prev_slot] += 1
                continue
            h = _slot(key, shift) if shift < 32 else 0
            while table_counts[h] != 0 and table_keys[h] != key:
                h = (h + 1) & mask
            if table_counts[h] == 0:
                table_keys[h] = key
                table_counts[h] = 1
                fill += 1
                have_prev = True
                prev_key = key
                prev_slot = h
                if fill >= max_fill:
                    break
            else:
                table_counts[h] += 1
                have_prev = True
                prev_key = key
                prev_slot = h
    return i, fill


def histogram_rehash(
    const uint32_t[::1] old_keys,      # IN  (old_size,)
    const uint32_t[::1] old_counts,    # IN  (old_size,)
    uint32_t[::1] new_keys,            # OUT (new_size,), counts zeroed by the caller
    uint32_t[::1] new_counts,          # OUT (new_size,)
):
    """Move every occupied slot of a table into a larger, empty one."""
    cdef Py_ssize_t i, n = old_keys.shape[0]
    cdef uint32_t size = <uint32_t>new_keys.shape[0], mask = size - 1, h, key
    cdef int shift = 32
    while (<uint32_t>1 << (32 - shift)) < size:
        shift -= 1
    with nogil:
        for i in range(n):
            if old_counts[i] == 0:
                continue
            key = old_keys[i]
            h = _slot(key, shift) if shift < 32 else 0
            while new_counts[h] != 0:
                h = (h + 1) & mask
            new_keys[h] = key
            new_counts[h] = old_counts[i]


def histogram_lookup(
    const uint8_t[:, ::1] pixels,      # IN  (n_pixels, n_channels)
    const uint32_t[::1] table_keys,    # IN  (size,)
    const uint32_t[::1] table_counts,  # IN  (size,)
    const index_t[::1] slot_values,    # IN  (size,) value stored for each occupied slot
    int transparent_value,             # IN  value of alpha-0 pixels when >= 0
    index_t[::1] out,                  # OUT (n_pixels,)
    int n_threads,
):
    """Value of every pixel's color in a filled table (every color must be in it).

    Parameters
    ----------
    pixels : uint8 ndarray of shape (n_pixels, 3 or 4)
    table_keys, table_counts : uint32 ndarrays of shape (size,), from ``histogram_insert``
    slot_values : uint8 or uint16 ndarray of shape (size,)
    transparent_value : int
        With 4 channels and ``transparent_value >= 0``, pixels with alpha 0 get it
        without a lookup (they were skipped by ``histogram_insert``).
    out : ndarray of shape (n_pixels,), same dtype as slot_values
    n_threads : int
    """
    cdef Py_ssize_t n = pixels.shape[0], c = pixels.shape[1]
    cdef Py_ssize_t n_chunks = (n + PIXEL_CHUNK - 1) // PIXEL_CHUNK, ch, i, end
    cdef uint32_t size = <uint32_t>table_keys.shape[0], mask = size - 1, h, key, prev_key
    cdef int shift = 32
    cdef index_t prev_value
    cdef bint have_prev
    cdef const uint8_t* p
    while (<uint32_t>1 << (32 - shift)) < size:
        shift -= 1
    for ch in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        have_prev = False
        prev_key = 0
        prev_value = 0
        end = min(n, (ch + 1) * PIXEL_CHUNK)
        for i in range(ch * PIXEL_CHUNK, end):
            p = &pixels[i, 0]
            if c == 4 and p[3] == 0 and transparent_value >= 0:
                out[i] = <index_t>transparent_value
                continue
            key = _key(p, c)
            if not (have_prev and key == prev_key):
                h = _slot(key, shift) if shift < 32 else 0
                while table_keys[h] != key and table_counts[h] != 0:
                    h = (h + 1) & mask
                prev_value = slot_values[h]
                prev_key = key
                have_prev = True
            out[i] = prev_value


def dense_histogram(
    const uint8_t[:, ::1] pixels,      # IN  (n_pixels, 3)
    uint32_t[::1] counts,              # IN/OUT (2 ** 24,) count of every 24-bit color
    int n_threads,
):
    """Add the pixels of an RGB image to a dense table of 2**24 counts.

    For large images this beats the hash table: one increment per pixel, no
    probing. Each thread owns a range of colors (and reads every pixel), so
    there are no races and the counts do not depend on the thread count.

    Parameters
    ----------
    pixels : uint8 ndarray of shape (n_pixels, 3)
    counts : uint32 ndarray of shape (2 ** 24,), indexed by ``r | g << 8 | b << 16``
    n_threads : int
    """
    cdef Py_ssize_t n = pixels.shape[0], i, t
    cdef uint32_t key, lo, hi
    cdef const uint8_t* p
    if n == 0:
        return
    for t in prange(n_threads, nogil=True, schedule="static", num_threads=n_threads):
        lo = <uint32_t>((t * (<int64_t>1 << 24)) // n_threads)
        hi = <uint32_t>(((t + 1) * (<int64_t>1 << 24)) // n_threads)
        for i in range(n):
            p = &pixels[i, 0]
            key = _key(p, 3)
            if lo <= key < hi:
                counts[key] += 1


def dense_lookup(
    const uint8_t[:, ::1] pixels,      # IN  (n_pixels, 3)
    const index_t[::1] values,         # IN  (2 ** 24,) value of every 24-bit color
    index_t[::1] out,                  # OUT (n_pixels,)
    int n_threads,
):
    """``out[i] = values[key(pixel i)]`` (the dense counterpart of ``histogram_lookup``)."""
    cdef Py_ssize_t n = pixels.shape[0], i
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        out[i] = values[_key(&pixels[i, 0], 3)]


def bin_histogram(
    const uint8_t[:, ::1] pixels,      # IN  (n_pixels, n_channels)
    const uint32_t[::1] weights,       # IN  (n_pixels,) or (0,) for weight 1
    int shift,                         # IN  bin = the top (8 - shift) bits of each channel
    bint skip_transparent,             # IN  with 4 channels, ignore pixels with alpha 0
    int64_t[:, :, ::1] thread_sums,    # OUT (n_threads, n_bins, n_channels + 1)
    int n_threads,
):
    """Pixel count and summed integer features of every color bin, per thread.

    Parameters
    ----------
    pixels : uint8 ndarray of shape (n_pixels, 3 or 4)
        Pixels, or distinct colors with their ``weights``.
    weights : uint32 ndarray of shape (n_pixels,), or empty for unit weights
    shift : int
        A pixel's bin is ``sum((p[c] >> shift) << (c * (8 - shift)))``.
    skip_transparent : bool
    thread_sums : int64 ndarray of shape (n_threads, n_bins, n_channels + 1)
        ``n_bins = 2 ** (n_channels * (8 - shift))``, zeroed by the caller.
        ``[t, b, 0]`` counts the pixels thread t put in bin b; ``[t, b, 1:]`` sums
        their features: RGB, or ``(r*a, g*a, b*a, 255*a)`` (255 x premultiplied)
        for 4 channels. Integers: the sum over threads does not depend on the
        thread count.
    n_threads : int
    """
    cdef Py_ssize_t n = pixels.shape[0], c = pixels.shape[1]
    cdef Py_ssize_t n_chunks = (n + PIXEL_CHUNK - 1) // PIXEL_CHUNK, ch, i, end
    cdef bint weighted = weights.shape[0] > 0
    cdef int64_t* s
    cdef const uint8_t* p
    cdef int64_t a, w
    if n == 0:
        return
    for ch in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        end = min(n, (ch + 1) * PIXEL_CHUNK)
        for i in range(ch * PIXEL_CHUNK, end):
            p = &pixels[i, 0]
            if c == 4 and skip_transparent and p[3] == 0:
                continue
            w = weights[i] if weighted else 1
            s = &thread_sums[threadid(), _cell_of(p, c, shift), 0]
            s[0] += w
            if c == 3:
                s[1] += w * p[0]
                s[2] += w * p[1]
                s[3] += w * p[2]
            else:
                a = w * p[3]
                s[1] += p[0] * a
                s[2] += p[1] * a
                s[3] += p[2] * a
                s[4] += 255 * a


# --------------------------------------------------------------------------- exact remap

cdef inline void _features(const uint8_t* p, Py_ssize_t c, int64_t* f) noexcept nogil:
    # integer features, exact: RGB as is; RGBA premultiplied and scaled by 255,
    # i.e. (r*a, g*a, b*a, 255*a) = 255 * (premultiplied r, g, b, a)
    cdef int64_t a
    if c == 3:
        f[0] = p[0]
        f[1] = p[1]
        f[2] = p[2]
        f[3] = 0
    else:
        a = p[3]
        f[0] = p[0] * a
        f[1] = p[1] * a
        f[2] = p[2] * a
        f[3] = 255 * a


cdef inline int64_t _d2_int(const int64_t* f, const int64_t* q) noexcept nogil:
    cdef int64_t t0 = f[0] - q[0], t1 = f[1] - q[1], t2 = f[2] - q[2], t3 = f[3] - q[3]
    return t0 * t0 + t1 * t1 + t2 * t2 + t3 * t3


cdef inline Py_ssize_t _nearest_int(
    const int64_t* f,            # IN  (4,) features of the pixel
    const int64_t* pal,          # IN  (k, 4) features of the palette
    Py_ssize_t k,
) noexcept nogil:
    """Nearest palette entry by brute force, the first one on ties (exact)."""
    cdef Py_ssize_t j, best = 0
    cdef int64_t d, bd = _d2_int(f, pal)
    for j in range(1, k):
        d = _d2_int(f, pal + 4 * j)
        if d < bd:
            bd = d
            best = j
    return best


# --------------------------------------------------------------------------- cell lists

def mark_cells(
    const uint8_t[:, ::1] pixels,      # IN  (n_pixels, n_channels)
    int shift,                         # IN  cell = the top (8 - shift) bits of each channel
    uint8_t[:, ::1] thread_flags,      # OUT (n_threads, 2 ** (n_channels * (8 - shift)))
    int n_threads,
):
    """Flag the cells that hold at least one pixel (one row of flags per thread).

    Parameters
    ----------
    pixels : uint8 ndarray of shape (n_pixels, 3 or 4)
    shift : int
        A pixel's cell is ``sum((p[c] >> shift) << (c * (8 - shift)))``.
    thread_flags : uint8 ndarray of shape (n_threads, n_cells)
        Zeroed by the caller; the caller ORs the rows together.
    n_threads : int
    """
    cdef Py_ssize_t n = pixels.shape[0], c = pixels.shape[1]
    cdef Py_ssize_t n_chunks = (n + PIXEL_CHUNK - 1) // PIXEL_CHUNK, ch, i, end
    cdef uint8_t* flags
    for ch in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        flags = &thread_flags[threadid(), 0]
        end = min(n, (ch + 1) * PIXEL_CHUNK)
        for i in range(ch * PIXEL_CHUNK, end):
            flags[_cell_of(&pixels[i, 0], c, shift)] = 1


def cell_candidates(
    const float[:, ::1] box_lo,        # IN  (n_rows, 4) lower corner of each cell's features
    const float[:, ::1] box_hi,        # IN  (n_rows, 4) upper corner
    const float[:, ::1] palette_t,     # IN  (4, k) palette features, transposed
    const int64_t[::1] offsets,        # IN  (n_rows + 1,) when filling, else ignored
    int64_t[::1] counts,               # OUT (n_rows,) number of candidates of each cell
    uint16_t[::1] candidates,          # OUT (offsets[n_rows],) when filling, else (0,)
    bint fill,
    int n_threads,
):
    """Palette entries that can be nearest to some point of each cell (a box).

    Entry e is a candidate of box B when ``mindist(B, e) <= min_e' maxdist(B, e')``:
    the nearest entry of any point of B, and every entry tied with it, passes
    the test. The test runs in float32 with a relative margin of 1e-5, far above
    its rounding error (RGB features are small integers: there it is exact).
    Called twice: once to count, then (``fill``) to write each cell's
    candidates, in increasing index order, at ``candidates[offsets[r]:]``.

    Parameters
    ----------
    box_lo, box_hi : float32 ndarrays of shape (n_rows, 4)
        A box containing the features of every color of the cell (features
        with fewer than 4 dimensions are padded with zeros, here and in palette_t).
    palette_t : float32 ndarray of shape (4, k)
    offsets : int64 ndarray of shape (n_rows + 1,)
    counts : int64 ndarray of shape (n_rows,)
    candidates : uint16 ndarray
    fill : bool
    n_threads : int
    """
    cdef Py_ssize_t n_rows = box_lo.shape[0], k = palette_t.shape[1]
    cdef Py_ssize_t r, j, pos
    cdef const float* p0 = &palette_t[0, 0]
    cdef const float* p1 = &palette_t[1, 0]
    cdef const float* p2 = &palette_t[2, 0]
    cdef const float* p3 = &palette_t[3, 0]
    cdef float m0, m1, m2, m3, s0, s1, s2, s3, t0, t1, t2, t3, v, best_far, lim
    cdef float* near
    cdef float* far
    if n_rows == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        near = <float*> malloc(k * sizeof(float))
        far = <float*> malloc(k * sizeof(float))
        for r in prange(n_rows, schedule="static"):
            # box centre m and half-width s: the farthest point of [lo, hi] from v
            # is |v - m| + s away, the nearest max(|v - m| - s, 0), and
            # max(x, 0) = (x + |x|) / 2: no branches, the loop vectorises
            m0 = 0.5 * (box_lo[r, 0] + box_hi[r, 0])
            m1 = 0.5 * (box_lo[r, 1] + box_hi[r, 1])
            m2 = 0.5 * (box_lo[r, 2] + box_hi[r, 2])
            m3 = 0.5 * (box_lo[r, 3] + box_hi[r, 3])
            s0 = 0.5 * (box_hi[r, 0] - box_lo[r, 0])
            s1 = 0.5 * (box_hi[r, 1] - box_lo[r, 1])
            s2 = 0.5 * (box_hi[r, 2] - box_lo[r, 2])
            s3 = 0.5 * (box_hi[r, 3] - box_lo[r, 3])
            for j in range(k):
                t0 = fabsf(p0[j] - m0)
                t1 = fabsf(p1[j] - m1)
                t2 = fabsf(p2[j] - m2)
                t3 = fabsf(p3[j] - m3)
                far[j] = ((t0 + s0) * (t0 + s0) + (t1 + s1) * (t1 + s1)
                          + (t2 + s2) * (t2 + s2) + (t3 + s3) * (t3 + s3))
                t0 = 0.5 * ((t0 - s0) + fabsf(t0 - s0))
                t1 = 0.5 * ((t1 - s1) + fabsf(t1 - s1))
                t2 = 0.5 * ((t2 - s2) + fabsf(t2 - s2))
                t3 = 0.5 * ((t3 - s3) + fabsf(t3 - s3))
                near[j] = t0 * t0 + t1 * t1 + t2 * t2 + t3 * t3
            best_far = far[0]
            for j in range(1, k):
                v = far[j]
                best_far = v if v < best_far else best_far
            lim = best_far * (1 + 1e-5) + 1e-6
            pos = offsets[r] if fill else 0
            for j in range(k):
                if near[j] <= lim:
                    if fill:
                        candidates[pos] = <uint16_t>j
                    pos = pos + 1
            if not fill:
                counts[r] = pos
        free(near)
        free(far)


def remap_cells(
    const uint8_t[:, ::1] pixels,      # IN  (n_pixels, n_channels)
    const uint32_t[::1] weights,       # IN  (n_pixels,) or (0,) for weight 1
    const int64_t[:, ::1] palette,     # IN  (k, 4) integer features of the palette
    const int64_t[::1] gap2,           # IN  (k,) squared distance to the nearest other entry
    int shift,                         # IN  cell bits, as in ``mark_cells``
    const int32_t[::1] cell_row,       # IN  (n_cells,) row of each cell, -1 if none
    const int64_t[::1] offsets,        # IN  (n_rows + 1,)
    const uint16_t[::1] candidates,    # IN  (offsets[n_rows],)
    int transparent_index,             # IN  entry of alpha-0 pixels when >= 0
    const index_t[::1] out_map,        # IN  (k,) value written for each entry
    index_t[::1] out,                  # OUT (n_pixels,)
    int64_t[:, ::1] thread_counts,     # OUT (n_threads, k)
    int n_threads,
):
    """Exact nearest palette entry of every pixel (the first one on ties).

    Distances are squared Euclidean in integer features: RGB for 3 channels,
    ``255 * (r*a/255, g*a/255, b*a/255, a)`` (premultiplied alpha) for 4, so they
    are exact. A pixel with the color of the previous pixel takes its entry. Otherwise, if it is
    nearer to the previous pixel's entry than half the gap between that entry
    and its nearest neighbour, that entry is the answer (triangle inequality);
    else only its cell's candidates (``cell_candidates``) are compared.

    Parameters
    ----------
    pixels : uint8 ndarray of shape (n_pixels, 3 or 4)
    weights : uint32 ndarray of shape (n_pixels,), or empty for unit weights
    palette : int64 ndarray of shape (k, 4), 4th column 0 for RGB
    gap2 : int64 ndarray of shape (k,)
        ``min_{j != a} |c_a - c_j|^2`` (any value <= 0 disables the shortcut for a).
    shift : int
    cell_row, offsets, candidates : the cells' candidate lists, in CSR form; a
        pixel whose cell has no row is compared with every entry.
    transparent_index : int
        With 4 channels and ``transparent_index >= 0``, pixels with alpha 0 map to it.
    out_map : uint8 or uint16 ndarray of shape (k,)
        What is written for entry j: ``out_map[j]``. (The caller passes the
        entries sorted by color, so that ties are broken by color whatever the
        order of the palette, and maps back to palette positions here.)
    out : ndarray of shape (n_pixels,), same dtype as out_map
    thread_counts : int64 ndarray of shape (n_threads, k)
        Zeroed by the caller; row t holds the weight thread t mapped to each entry
        (integers: their sum is independent of the thread count).
    n_threads : int
    """
    cdef Py_ssize_t n = pixels.shape[0], c = pixels.shape[1], k = palette.shape[0]
    cdef Py_ssize_t n_chunks = (n + PIXEL_CHUNK - 1) // PIXEL_CHUNK, ch, i, end, prev, t, j, row
    cdef Py_ssize_t lo, hi
    cdef bint weighted = weights.shape[0] > 0, found, better
    cdef const uint8_t* p
    cdef const uint8_t* q
    cdef const int64_t* pal = &palette[0, 0]
    cdef int64_t* f
    cdef int64_t* counts
    cdef int64_t dd, bd
    if n == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        f = <int64_t*> malloc(4 * sizeof(int64_t))
        for ch in prange(n_chunks, schedule="dynamic"):
            counts = &thread_counts[threadid(), 0]
            prev = -1
            q = NULL
            end = min(n, (ch + 1) * PIXEL_CHUNK)
            for i in range(ch * PIXEL_CHUNK, end):
                p = &pixels[i, 0]
                if c == 4 and p[3] == 0 and transparent_index >= 0:
                    out[i] = out_map[transparent_index]
                    counts[transparent_index] += weights[i] if weighted else 1
                    continue
                if q == NULL or p[0] != q[0] or p[1] != q[1] or p[2] != q[2] or (
                        c == 4 and p[3] != q[3]):
                    row = cell_row[_cell_of(p, c, shift)]
                    if row < 0:
                        _features(p, c, f)
                        prev = _nearest_int(f, pal, k)
                    else:
                        lo = offsets[row]
                        hi = offsets[row + 1]
                        if hi - lo == 1:
                            prev = candidates[lo]
                        else:
                            _features(p, c, f)
                            found = False
                            if prev >= 0:
                                dd = _d2_int(f, pal + 4 * prev)
                                found = 4 * dd < gap2[prev]
                            if not found:
                                prev = candidates[lo]
                                bd = _d2_int(f, pal + 4 * prev)
                                for t in range(lo + 1, hi):
                                    j = candidates[t]
                                    dd = _d2_int(f, pal + 4 * j)
                                    better = dd < bd
                                    prev = j if better else prev
                                    bd = dd if better else bd
                    q = p
                out[i] = out_map[prev]
                counts[prev] += weights[i] if weighted else 1
        free(f)


def nearest_cells_float(
    const uint8_t[:, ::1] colors,      # IN  (n, n_channels) the colors (for their cells)
    const double[:, ::1] X,            # IN  (n, d) their features
    const uint32_t[::1] weights,       # IN  (n,) or (0,) for weight 1
    const double[:, ::1] palette,      # IN  (k, d) palette features
    int shift,                         # IN  cell bits, as in ``mark_cells``
    const int32_t[::1] cell_row,       # IN  (n_cells,)
    const int64_t[::1] offsets,        # IN  (n_rows + 1,)
    const uint16_t[::1] candidates,    # IN  (offsets[n_rows],)
    uint16_t[::1] labels,              # OUT (n,)
    int64_t[:, ::1] thread_counts,     # OUT (n_threads, k)
    int n_threads,
):
    """Nearest palette entry of float feature rows (the first one on ties), searching
    only the candidates of each row's cell (every entry when the cell has no row).

    Parameters
    ----------
    colors : uint8 ndarray of shape (n, 3 or 4)
    X : float64 ndarray of shape (n, d), 1 <= d <= 4
    weights : uint32 ndarray of shape (n,), or empty for unit weights
    palette : float64 ndarray of shape (k, d)
    shift, cell_row, offsets, candidates : as in ``remap_cells``
    labels : uint16 ndarray of shape (n,)
    thread_counts : int64 ndarray of shape (n_threads, k), zeroed by the caller
    n_threads : int
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = palette.shape[0], c = colors.shape[1]
    cdef Py_ssize_t i, t, j, f, row, best, lo, hi
    cdef bint weighted = weights.shape[0] > 0
    cdef double dd, bd, u
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        row = cell_row[_cell_of(&colors[i, 0], c, shift)]
        if row < 0:
            lo = 0
            hi = k
        else:
            lo = offsets[row]
            hi = offsets[row + 1]
        best = -1
        bd = 0.0
        for t in range(lo, hi):
            j = t if row < 0 else candidates[t]
            dd = 0.0
            for f in range(d):
                u = X[i, f] - palette[j, f]
                dd = dd + u * u
            if best < 0 or dd < bd:
                bd = dd
                best = j
        labels[i] = <uint16_t>best
        thread_counts[threadid(), best] += weights[i] if weighted else 1


def apply_lut(
    index_t[::1] indices,              # IN/OUT (n,)
    const index_t[::1] lut,            # IN  (k,)
    int n_threads,
):
    """``indices[i] = lut[indices[i]]`` in place (renumbering palette entries)."""
    cdef Py_ssize_t n = indices.shape[0], i
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        indices[i] = lut[indices[i]]


# --------------------------------------------------------------------------- dithering

cdef inline double _d2_f(const double* f, const double* q) noexcept nogil:
    cdef double t0 = f[0] - q[0], t1 = f[1] - q[1], t2 = f[2] - q[2], t3 = f[3] - q[3]
    return t0 * t0 + t1 * t1 + t2 * t2 + t3 * t3


cdef inline Py_ssize_t _nearest_f(
    const double* f, const double* pal, Py_ssize_t k,
    const int32_t* order, const double* order_d2, Py_ssize_t start,
) noexcept nogil:
    cdef Py_ssize_t j, t, best = start
    cdef double d, bd, lim
    bd = _d2_f(f, pal + 4 * start)
    lim = 4.0 * bd * (1.0 + 1e-12) + 1e-9   # a hair wider than 2|p - c|: rounding
    if k < 2 or lim < order_d2[start * k + 1]:
        return best
    for t in range(1, k):
        if order_d2[start * k + t] > lim:
            break
        j = order[start * k + t]
        d = _d2_f(f, pal + 4 * j)
        if d < bd or (d == bd and j < best):
            bd = d
            best = j
    return best


cdef inline double _clamp(double v, double lo, double hi) noexcept nogil:
    return lo if v < lo else (hi if v > hi else v)


def dither_floyd_steinberg(
    const uint8_t[:, :, ::1] pixels,   # IN  (height, width, n_channels)
    const double[:, ::1] palette,      # IN  (k, 4) premultiplied features, 0..255
    const int32_t[:, ::1] order,       # IN  (k, k)
    const double[:, ::1] order_d2,     # IN  (k, k)
    int transparent_index,             # IN  entry of alpha-0 pixels when >= 0
    const index_t[::1] out_map,        # IN  (k,) value written for each entry
    double error_limit,                # IN  largest error diffused, per channel
    double strength,                   # IN  fraction of the error diffused (0..1)
    double[:, ::1] err_this,           # scratch (width + 2, 4)
    double[:, ::1] err_next,           # scratch (width + 2, 4)
    index_t[:, ::1] out,               # OUT (height, width)
    int64_t[::1] counts,               # OUT (k,) pixels mapped to each entry
):
    """Floyd-Steinberg error diffusion, serpentine scan, in premultiplied sRGB.

    Rows alternate direction. Each pixel's target is its color plus the error
    diffused to it, clamped to the valid range; its entry is the nearest to the
    target; the quantization error, clamped to ``±error_limit`` per channel and
    scaled by ``strength``, goes 7/16 ahead, 3/16 behind-below, 5/16 below and
    1/16 ahead-below. Serial and in a fixed order: deterministic.

    Parameters
    ----------
    pixels : uint8 ndarray of shape (height, width, 3 or 4)
    palette : float64 ndarray of shape (k, 4)
        RGB (4th column 0) or premultiplied RGBA ``(r*a/255, g*a/255, b*a/255, a)``.
    order : int32 ndarray of shape (k, k)
        ``order[a]`` lists every entry by increasing distance from entry a,
        starting with a itself.
    order_d2 : float64 ndarray of shape (k, k)
        ``order_d2[a, t]`` is the squared distance from a to ``order[a, t]``.
    transparent_index : int
        With 4 channels and ``transparent_index >= 0``, alpha-0 pixels map to it
        and neither receive nor pass on error.
    out_map : uint8 or uint16 ndarray of shape (k,), as in ``remap_cells``
    error_limit, strength : float
    err_this, err_next : float64 scratch of shape (width + 2, 4)
    out : uint8 or uint16 ndarray of shape (height, width)
    counts : int64 ndarray of shape (k,), zeroed by the caller
    """
    cdef Py_ssize_t h = pixels.shape[0], w = pixels.shape[1], c = pixels.shape[2]
    cdef Py_ssize_t k = palette.shape[0], y, x, t, step, j, prev, ch
    cdef double f[4]
    cdef double a, v
    cdef double* cur
    cdef double* nxt
    cdef double* tmp
    cdef const uint8_t* p
    if h == 0 or w == 0:
        return
    err_this[:, :] = 0.0
    err_next[:, :] = 0.0
    cur = &err_this[0, 0]
    nxt = &err_next[0, 0]
    prev = 0
    with nogil:
        for y in range(h):
            step = 1 if y % 2 == 0 else -1
            for t in range(w):
                x = t if step == 1 else w - 1 - t
                p = &pixels[y, x, 0]
                if c == 4 and p[3] == 0 and transparent_index >= 0:
                    out[y, x] = out_map[transparent_index]
                    counts[transparent_index] += 1
                    continue
                # error rows are offset by one column so x - 1 and x + 1 always exist
                if c == 3:
                    for ch in range(3):
                        f[ch] = _clamp(p[ch] + cur[4 * (x + 1) + ch], 0.0, 255.0)
                    f[3] = 0.0
                else:
                    a = _clamp(p[3] + cur[4 * (x + 1) + 3], 0.0, 255.0)
                    for ch in range(3):
                        f[ch] = _clamp(p[ch] * (p[3] / 255.0) + cur[4 * (x + 1) + ch], 0.0, a)
                    f[3] = a
                j = _nearest_f(f, &palette[0, 0], k, &order[0, 0], &order_d2[0, 0], prev)
                prev = j
                out[y, x] = out_map[j]
                counts[j] += 1
                for ch in range(4):
                    v = _clamp(f[ch] - palette[j, ch], -error_limit, error_limit) * strength
                    cur[4 * (x + 1 + step) + ch] += v * (7.0 / 16.0)
                    nxt[4 * (x + 1 - step) + ch] += v * (3.0 / 16.0)
                    nxt[4 * (x + 1) + ch] += v * (5.0 / 16.0)
                    nxt[4 * (x + 1 + step) + ch] += v * (1.0 / 16.0)
            tmp = cur
            cur = nxt
            nxt = tmp
            for x in range(4 * (w + 2)):
                nxt[x] = 0.0
