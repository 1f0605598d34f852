"""fastkm.quantize, fastkm.Palette and their kernels: exactness, every input mode,
alpha, dithering, popularity order, determinism across thread counts."""
import io
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastkm
from fastkm import Palette, quantize
from fastkm.image import _color, _histogram, _kernels, _remap

Image = pytest.importorskip("PIL.Image")


# --------------------------------------------------------------------------- images

def _smooth_image(h=96, w=128, seed=0):
    """A photo-like RGB image: smooth gradients, a few shapes and noise (many colors)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([
        120 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0),
        90 + 80 * np.cos((x + y) / 29.0),
        160 - 90 * np.sin(y / 13.0 + x / 41.0),
    ], axis=2)
    img[20:50, 30:70] = [230, 40, 40]
    img[60:90, 80:120] = [30, 200, 90]
    img += rng.normal(scale=6.0, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def rgb():
    return _smooth_image()


@pytest.fixture(scope="module")
def rgba(rgb):
    a = np.full(rgb.shape[:2], 255, np.uint8)
    a[:16, :] = 0                     # fully transparent band
    a[16:40, :40] = 128               # partly transparent block
    a[40:48, :] = np.arange(rgb.shape[1]) * 2  # an alpha ramp
    return np.dstack([rgb, a])


@pytest.fixture(scope="module")
def china_crop():
    datasets = pytest.importorskip("sklearn.datasets")
    return np.ascontiguousarray(datasets.load_sample_image("china.jpg")[100:260, 200:440])


def color_rank(palette):
    """Rank of each entry in the order that breaks ties: by color (packed RGBA,
    little-endian), then by position."""
    c = np.asarray(palette, dtype=np.int64)
    key = sum(c[:, i] << (8 * i) for i in range(c.shape[1]))
    rank = np.empty(len(c), dtype=np.int64)
    rank[np.argsort(key, kind="stable")] = np.arange(len(c))
    return rank


def nearest_bruteforce(pixels, palette):
    """Nearest entry in the integer features of the kernel; ties go to the entry
    of smallest color (so that the answer does not depend on the palette order)."""
    f = _remap._int_features(pixels.reshape(-1, pixels.shape[-1]))
    p = _remap._int_features(palette)
    d2 = ((f[:, None, :] - p[None, :, :]) ** 2).sum(axis=2)
    score = d2 * len(palette) + color_rank(palette)[None, :]
    return score.argmin(axis=1).reshape(pixels.shape[:-1])


def psnr_of(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


# --------------------------------------------------------------------------- exactness

def test_weighted_histogram_kmeans_equals_kmeans_on_all_pixels(china_crop):
    """k-means on the distinct colors weighted by their counts is k-means on the pixels."""
    X = china_crop.reshape(-1, 3).astype(np.float64)
    hist = _histogram._histogram_of([china_crop])
    colors, weights = hist.colors, hist.weights
    assert weights.sum() == X.shape[0] and colors.shape[0] < X.shape[0]
    init = X[np.random.RandomState(0).choice(X.shape[0], 12, replace=False)]
    a = fastkm.KMeans(12, init=init, n_init=1, tol=0).fit(X)
    b = fastkm.KMeans(12, init=init, n_init=1, tol=0).fit(colors.astype(np.float64),
                                                         sample_weight=weights)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-9)


def test_psnr_matches_weighted_kmeans_computed_another_way(china_crop):
    """preset='converged' vs scikit-learn KMeans on the weighted distinct colors: same
    quality (both converged k-means++ runs), and the reported PSNR is the PSNR."""
    sk = pytest.importorskip("sklearn.cluster")
    k = 16
    result = quantize(china_crop, k, preset="converged")
    direct = psnr_of(china_crop, result.to_array())
    assert result.psnr == pytest.approx(direct, abs=1e-9)

    hist = _histogram._histogram_of([china_crop])
    km = sk.KMeans(k, random_state=0, n_init=1).fit(hist.colors.astype(np.float64),
                                                   sample_weight=hist.weights)
    palette = np.clip(np.rint(km.cluster_centers_), 0, 255).astype(np.uint8)
    ref = palette[nearest_bruteforce(china_crop, palette)]
    ref_psnr = psnr_of(china_crop, ref)
    assert abs(result.psnr - ref_psnr) < 0.15, (result.psnr, ref_psnr)
    for preset in ("default", "fast"):
        assert quantize(china_crop, k, preset=preset).psnr > ref_psnr - 0.5


def assert_nearest(indices, features, palette_features):
    """Every index is a nearest entry."""
    d2 = ((features.reshape(-1, 1, features.shape[-1]) - palette_features[None]) ** 2).sum(axis=2)
    chosen = d2[np.arange(d2.shape[0]), indices.ravel()]
    np.testing.assert_array_equal(chosen, d2.min(axis=1))


@pytest.mark.parametrize("space", ["rgb", "oklab", "lab"])
def test_indices_are_exact_nearest_entries(rgb, space):
    result = quantize(rgb, 24, color_space=space)
    pal = result.palette
    if space == "rgb":
        np.testing.assert_array_equal(result.indices, nearest_bruteforce(rgb, pal))
        # ties are broken by color, not position: any order of the palette gives
        # the same colors
        perm = np.random.RandomState(0).permutation(len(pal))
        again = Palette(pal[perm]).quantize(rgb)
        np.testing.assert_array_equal(again.to_array(), result.to_array())
    else:
        assert_nearest(result.indices, _color.color_features(rgb.reshape(-1, 3), space),
                       _color.color_features(pal, space))


def test_rgba_indices_are_exact_in_premultiplied_space(rgba):
    result = quantize(rgba, 20)
    visible = rgba[..., 3] > 0
    assert_nearest(result.indices[visible], _remap._int_features(rgba[visible]),
                   _remap._int_features(result.palette))
    assert np.all(result.indices[~visible] == result.transparent_index)


def test_metrics_from_histogram_equal_metrics_per_pixel(rgb, rgba):
    for img in (rgb, rgba):
        result = quantize(img, 16)
        hist_mse, hist_de = result._errors
        result._distinct = None
        result.__dict__.pop("_errors")
        assert result._errors[0] == pytest.approx(hist_mse, rel=1e-9)
        assert result._errors[1] == pytest.approx(hist_de, rel=1e-9)


def test_lossless_when_few_colors(rgb):
    small = rgb // 64 * 64  # at most 64 distinct colors
    n_distinct = np.unique(small.reshape(-1, 3), axis=0).shape[0]
    for preset in ("default", "fast", "converged"):
        result = quantize(small, n_distinct, preset=preset)
        assert result.n_colors == n_distinct
        np.testing.assert_array_equal(result.to_array(), small)
        assert result.mse == 0 and result.psnr == float("inf") and result.delta_e == 0


def test_presets_quality_order(china_crop):
    fast = quantize(china_crop, 32, preset="fast").psnr
    default = quantize(china_crop, 32).psnr
    converged = quantize(china_crop, 32, preset="converged").psnr
    assert default > fast - 0.05 and converged > fast - 0.05
    assert min(fast, default, converged) > 25


def test_old_preset_name_best_still_works_with_a_deprecation_warning(china_crop):
    with pytest.warns(DeprecationWarning, match="now called 'converged'"):
        old = quantize(china_crop, 16, preset="best")
    new = quantize(china_crop, 16, preset="converged")
    assert old.palette.tobytes() == new.palette.tobytes()
    assert old.indices.tobytes() == new.indices.tobytes()


# --------------------------------------------------------------------------- results

def test_result_fields(rgb):
    result = quantize(rgb, 16)
    assert result.palette.shape == (16, 3) and result.palette.dtype == np.uint8
    assert result.indices.shape == rgb.shape[:2] and result.indices.dtype == np.uint8
    assert result.to_array().shape == rgb.shape
    assert result.image.mode == "P" and result.image.size == (rgb.shape[1], rgb.shape[0])
    assert np.array_equal(np.asarray(result.image.convert("RGB")), result.to_array())
    assert result.transparent_index is None
    assert 20 < result.psnr < 60 and 0 < result.delta_e < 20
    assert result.mse == pytest.approx(255.0**2 / 10 ** (result.psnr / 10))
    assert "16 colors" in repr(result)


def test_palette_sorted_by_popularity(rgb):
    for dither in (False, True):
        result = quantize(rgb, 32, dither=dither)
        counts = np.bincount(result.indices.ravel(), minlength=result.n_colors)
        np.testing.assert_array_equal(counts, result.counts)
        assert np.all(np.diff(counts) <= 0)
        assert counts.min() > 0  # unused entries are dropped


def test_more_than_256_colors_uses_uint16(rgb):
    result = quantize(rgb, 300, preset="fast")
    assert 256 < result.n_colors <= 300
    assert result.indices.dtype == np.uint16
    assert_nearest(result.indices, _remap._int_features(rgb.reshape(-1, 3)),
                   _remap._int_features(result.palette))
    with pytest.raises(ValueError, match="at most 256"):
        result.image


# --------------------------------------------------------------------------- inputs

def _modes(rgb, rgba):
    im = Image.fromarray(rgb)
    im_a = Image.fromarray(rgba)
    p_trans = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    p_trans.info["transparency"] = 0
    i16 = Image.fromarray(rgb[..., 1].astype(np.uint16) * 257)
    assert i16.mode.startswith("I;16")
    return {
        "RGB": (im, 3), "RGBA": (im_a, 4), "L": (im.convert("L"), 3),
        "LA": (im_a.convert("LA"), 4), "P": (im.convert("P"), 3), "P+transparency": (p_trans, 4),
        "I;16": (i16, 3), "I": (im.convert("I"), 3), "CMYK": (im.convert("CMYK"), 3),
        "1": (im.convert("1"), 3), "YCbCr": (im.convert("YCbCr"), 3),
    }


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "P+transparency", "I;16", "I",
                                  "CMYK", "1", "YCbCr"])
def test_every_pil_mode(rgb, rgba, mode):
    im, channels = _modes(rgb, rgba)[mode]
    result = quantize(im, 16)
    assert result.palette.shape[1] == channels
    assert result.n_colors <= 16
    assert result.to_array().shape == (rgb.shape[0], rgb.shape[1], channels)
    assert result.image.mode == "P"
    if mode in ("L", "I;16", "I", "1"):  # gray stays gray
        assert np.all(result.palette[:, 0] == result.palette[:, 1])
    if mode == "I;16":  # 16-bit values scaled to 8 bits
        assert np.abs(result.to_array()[..., 0].astype(int) - rgb[..., 1]).mean() < 10
    if mode == "I":  # 8-bit values in a 32-bit image stay as they are
        gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=int)
        assert np.abs(result.to_array()[..., 0].astype(int) - gray).mean() < 10


def test_arrays_and_paths(rgb, rgba, tmp_path):
    gray = rgb[..., 0].copy()
    for arr, channels in ((gray, 3), (gray[..., None], 3), (rgb, 3), (rgba, 4),
                          (np.dstack([gray, rgba[..., 3]]), 4)):
        assert quantize(arr, 8).palette.shape[1] == channels
    path = tmp_path / "in.png"
    Image.fromarray(rgba).save(path)
    from_path = quantize(str(path), 8)
    np.testing.assert_array_equal(from_path.indices, quantize(rgba, 8).indices)
    assert quantize(path, 8).n_colors == from_path.n_colors  # pathlib too


def test_opaque_alpha_is_dropped(rgb):
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    a, b = quantize(opaque, 16), quantize(rgb, 16)
    assert a.palette.shape == (16, 3)
    np.testing.assert_array_equal(a.palette, b.palette)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize("bad, error", [
    (np.zeros((4, 4, 3), np.float32), TypeError),
    (np.zeros((4, 4, 5), np.uint8), ValueError),
    (np.zeros((4,), np.uint8), ValueError),
    (np.zeros((0, 4, 3), np.uint8), ValueError),
    ([[1, 2], [3, 4]], TypeError),
    (42, TypeError),
])
def test_bad_images(bad, error):
    with pytest.raises(error):
        quantize(bad, 4)


def test_bad_parameters(rgb):
    with pytest.raises(ValueError, match="n_colors"):
        quantize(rgb, 0)
    with pytest.raises(ValueError, match="n_colors"):
        quantize(rgb, 70000)
    with pytest.raises(TypeError, match="n_colors"):
        quantize(rgb, 4.0)
    with pytest.raises(ValueError, match="color_space"):
        quantize(rgb, 4, color_space="hsv")
    with pytest.raises(ValueError, match="dither"):
        quantize(rgb, 4, dither="ordered")
    with pytest.raises(ValueError, match="preset"):
        quantize(rgb, 4, preset="slow")
    with pytest.raises(FileNotFoundError):
        quantize("/nonexistent/image.png", 4)


# --------------------------------------------------------------------------- alpha

def test_transparency(rgba):
    result = quantize(rgba, 16)
    t = result.transparent_index
    assert t is not None and tuple(result.palette[t]) == (0, 0, 0, 0)
    clear = rgba[..., 3] == 0
    assert np.all(result.indices[clear] == t)
    # partial alpha is kept (premultiplied clustering), not flattened
    out = result.to_array()
    assert np.abs(out[16:40, :40, 3].astype(int) - 128).mean() < 8
    assert np.all((out[16:40, :40, 3] > 64) & (out[16:40, :40, 3] < 192))
    assert result.palette.shape == (16, 4)


@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_transparency_survives_save(rgba, tmp_path, fmt):
    binary = rgba.copy()
    binary[..., 3] = np.where(rgba[..., 3] == 0, 0, 255)  # GIF has binary alpha only
    for img in ((rgba, binary) if fmt == "png" else (binary,)):
        result = quantize(img, 32)
        path = tmp_path / f"out.{fmt}"
        result.save(path)
        with Image.open(path) as im:
            assert im.format == fmt.upper() and im.mode == "P"
            back = np.asarray(im.convert("RGBA"))
        expected = result.to_array()
        np.testing.assert_array_equal(back[..., 3], expected[..., 3])
        visible = expected[..., 3] > 0
        np.testing.assert_array_equal(back[..., :3][visible], expected[..., :3][visible])
        assert sorted(os.listdir(tmp_path)) == [f"out.{fmt}"]


def test_gif_writes_partial_alpha_opaque(rgba, tmp_path):
    result = quantize(rgba, 32)
    result.save(tmp_path / "out.gif")
    with Image.open(tmp_path / "out.gif") as im:
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
    expected = result.to_array()[..., 3]
    assert np.any((expected > 0) & (expected < 255))
    np.testing.assert_array_equal(alpha, np.where(expected == 0, 0, 255))


def test_all_transparent():
    img = np.zeros((8, 8, 4), np.uint8)
    img[..., :3] = 77
    result = quantize(img, 4)
    assert result.n_colors == 1 and result.transparent_index == 0
    assert np.all(result.to_array() == 0)


def test_one_color_with_transparency(rgba):
    result = quantize(rgba, 1)
    assert result.n_colors == 1
    assert np.all(result.indices == 0)


# --------------------------------------------------------------------------- dithering

def test_dithering_is_deterministic_and_diffuses(rgb):
    a = quantize(rgb, 8, dither=True)
    b = quantize(rgb, 8, dither="floyd-steinberg")
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.palette, b.palette)
    plain = quantize(rgb, 8)
    assert not np.array_equal(a.indices, plain.indices)
    # error diffusion keeps local averages closer to the image than plain mapping
    def blur(x):
        x = x.astype(np.float64)
        return sum(np.roll(np.roll(x, i, 0), j, 1) for i in range(-2, 3) for j in range(-2, 3))

    err_d = np.abs(blur(a.to_array()) - blur(rgb))[4:-4, 4:-4].mean()
    err_p = np.abs(blur(plain.to_array()) - blur(rgb))[4:-4, 4:-4].mean()
    assert err_d < err_p
    assert a.dither == "floyd-steinberg" and plain.dither is None


def test_dithering_with_alpha(rgba):
    result = quantize(rgba, 12, dither=True)
    assert np.all(result.indices[rgba[..., 3] == 0] == result.transparent_index)
    again = quantize(rgba, 12, dither=True)
    np.testing.assert_array_equal(result.indices, again.indices)


# --------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("kwargs", [
    {}, {"preset": "fast"}, {"color_space": "oklab"}, {"dither": True}, {"preset": "converged"},
])
def test_same_bytes_for_any_thread_count(rgb, rgba, kwargs):
    for img in (rgb, rgba):
        outs = []
        for n_threads in (1, 2, 3):
            result = quantize(img, 24, n_threads=n_threads, **kwargs)
            buf = io.BytesIO()
            result.image.save(buf, format="PNG")
            outs.append((result.palette.tobytes(), result.indices.tobytes(), buf.getvalue()))
        assert outs[0] == outs[1] == outs[2]


def test_random_state(rgb):
    a = quantize(rgb, 16, random_state=0)
    b = quantize(rgb, 16, random_state=0)
    np.testing.assert_array_equal(a.palette, b.palette)
    c = quantize(rgb, 16, random_state=np.random.RandomState(0))
    np.testing.assert_array_equal(a.palette, c.palette)


# --------------------------------------------------------------------------- shared palette

def test_shared_palette(rgb, rgba):
    frames = [rgb, np.ascontiguousarray(rgb[::-1]), np.ascontiguousarray(rgb[:, ::-1] // 2)]
    pal = Palette.fit(frames, 32)
    assert len(pal) == 32 and pal.counts.sum() == sum(f.shape[0] * f.shape[1] for f in frames)
    assert np.all(np.diff(pal.counts) <= 0)
    results = [pal.quantize(f) for f in frames]
    for f, r in zip(frames, results):
        np.testing.assert_array_equal(r.palette, pal.colors)
        np.testing.assert_array_equal(r.indices, nearest_bruteforce(f, pal.colors))
    total = sum(np.bincount(r.indices.ravel(), minlength=len(pal)) for r in results)
    np.testing.assert_array_equal(total, pal.counts)
    # a single image: the same palette as quantize
    np.testing.assert_array_equal(Palette.fit(rgb, 16).colors, quantize(rgb, 16).palette)
    # frames with and without alpha share an RGBA palette
    mixed = Palette.fit([rgb, rgba], 16)
    assert mixed.colors.shape[1] == 4 and mixed.transparent_index is not None
    assert mixed.quantize(rgb).to_array().shape[2] == 4


def test_given_palette(rgb, rgba):
    colors = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]], np.uint8)
    pal = Palette(colors)
    assert pal.counts is None and len(pal) == 4 and "4 RGB colors" in repr(pal)
    result = pal.quantize(rgb, dither=True)
    assert result.n_colors == 4
    np.testing.assert_array_equal(pal.quantize(rgb).indices, nearest_bruteforce(rgb, colors))
    with pytest.raises(ValueError, match="alpha"):
        pal.quantize(rgba)
    with pytest.raises(ValueError):
        Palette(np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError):
        Palette([[0, 0, 300]])
    lab = Palette(colors, color_space="lab").quantize(rgb)
    assert_nearest(lab.indices, _color.color_features(rgb.reshape(-1, 3), "lab"),
                   _color.color_features(colors, "lab"))


def test_save_is_atomic(rgb, tmp_path):
    result = quantize(rgb, 8)
    with pytest.raises(ValueError):
        result.save(tmp_path / "out.unknown-extension")
    with pytest.raises(OSError):
        result.save(tmp_path / "missing-dir" / "out.png")
    with pytest.raises((OSError, KeyError, ValueError)):
        result.save(tmp_path / "out.jpg")  # JPEG cannot hold a 'P' image
    assert os.listdir(tmp_path) == []
    result.save(tmp_path / "out.png")
    assert os.listdir(tmp_path) == ["out.png"]


# --------------------------------------------------------------------------- kernels

def test_histogram_counts_and_growth():
    rng = np.random.RandomState(1)
    px = rng.randint(0, 256, size=(200_000, 3)).astype(np.uint8)  # forces several rehashes
    hist = _histogram._ColorHistogram(3, size_hint=16)
    hist.add(px[:70_000])
    hist.add(px[70_000:])
    p64 = px.astype(np.int64)
    keys = p64[:, 0] | p64[:, 1] << 8 | p64[:, 2] << 16
    uniq, counts = np.unique(keys, return_counts=True)
    got = hist.colors.astype(np.int64)
    got_keys = got[:, 0] | got[:, 1] << 8 | got[:, 2] << 16
    order = np.argsort(got_keys)
    np.testing.assert_array_equal(got_keys[order], uniq)
    np.testing.assert_array_equal(hist.weights[order], counts)
    # lookup: the value stored for each distinct color, for every pixel
    values = (np.searchsorted(uniq, got_keys) % 65536).astype(np.uint16)
    looked_up = hist.lookup(px, values, -1, 2)
    np.testing.assert_array_equal(looked_up, np.searchsorted(uniq, keys) % 65536)


def test_histogram_rgba_skips_transparent():
    px = np.array([[1, 2, 3, 0], [4, 5, 6, 0], [1, 2, 3, 255], [1, 2, 3, 255]], np.uint8)
    hist = _histogram._ColorHistogram(4)
    hist.add(px)
    assert hist.n_transparent == 2
    np.testing.assert_array_equal(hist.colors, [[1, 2, 3, 255]])
    np.testing.assert_array_equal(hist.weights, [2])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 40), channels=st.sampled_from([3, 4]),
       n_threads=st.integers(1, 3))
def test_remap_matches_bruteforce(seed, k, channels, n_threads):
    rng = np.random.RandomState(seed)
    levels = rng.choice([2, 8, 256])  # few levels: many ties and duplicate entries
    step = 255 // max(levels - 1, 1)
    px = (rng.randint(0, levels, size=(40, 37, channels)) * step).astype(np.uint8)
    colors = px.reshape(-1, channels)[rng.randint(0, px.shape[0] * px.shape[1], size=k)]
    pal = Palette(colors)
    if channels == 4:
        pal.transparent_index = None  # plain nearest entry for every pixel
    indices, counts = _remap._remap_pixels(pal, px, None, n_threads)
    np.testing.assert_array_equal(indices, nearest_bruteforce(px, colors))
    np.testing.assert_array_equal(counts, np.bincount(indices.ravel(), minlength=k))


def test_cell_candidates_cover_every_nearest_entry():
    rng = np.random.RandomState(3)
    pal = rng.randint(0, 256, size=(50, 3)).astype(np.float64)
    lo = rng.randint(0, 240, size=(200, 3)).astype(np.float64)
    hi = lo + rng.randint(0, 16, size=(200, 3))
    pad = lambda x: np.ascontiguousarray(_remap._pad4(x), dtype=np.float32)
    counts = np.empty(200, np.int64)
    pal_t = np.ascontiguousarray(pad(pal).T)
    _kernels.cell_candidates(pad(lo), pad(hi), pal_t, np.zeros(1, np.int64), counts,
                             np.empty(0, np.uint16), False, 2)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    cand = np.empty(offsets[-1], np.uint16)
    _kernels.cell_candidates(pad(lo), pad(hi), pal_t, offsets, counts, cand, True, 2)
    for r in range(200):
        pts = lo[r] + rng.random_sample((50, 3)) * (hi[r] - lo[r])
        nearest = ((pts[:, None] - pal[None]) ** 2).sum(axis=2).argmin(axis=1)
        assert set(nearest) <= set(cand[offsets[r]:offsets[r + 1]])


# --------------------------------------------------------------------------- colors

def test_ciede2000_reference_pairs():
    # Sharma, Wu & Dalal (2005), test data
    pairs = [
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
        ((50.0, 2.5, 0.0), (61.0, -5.0, 29.0), 22.8977),
        ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
        ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
        ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
        ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
        ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),
    ]
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    np.testing.assert_allclose(_color.ciede2000(a, b), [p[2] for p in pairs], atol=1e-4)
    np.testing.assert_allclose(_color.ciede2000(b, a), [p[2] for p in pairs], atol=1e-4)


def test_color_space_round_trips():
    rng = np.random.RandomState(0)
    c = rng.randint(0, 256, size=(2000, 4)).astype(np.uint8)
    c[:, 3] = np.maximum(c[:, 3], 128)
    for space in _color.COLOR_SPACES:
        for cols in (c[:, :3], c):
            back = _color.features_to_colors(_color.color_features(cols, space), space,
                                             cols.shape[1])
            assert np.abs(back.astype(int) - cols).max() <= (0 if cols.shape[1] == 3 else 1)
    np.testing.assert_allclose(_color.srgb_to_lab(np.array([[255, 255, 255]], np.uint8)),
                               [[100, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(_color.linear_to_oklab(np.ones((1, 3))), [[1, 0, 0]], atol=1e-6)


def test_feature_boxes_contain_the_features():
    rng = np.random.RandomState(2)
    lo = (rng.randint(0, 16, size=(300, 4)) * 16).astype(np.int64)
    hi = lo + 15
    for space in ("oklab", "lab", "rgb"):
        box_lo, box_hi = _color.feature_box(lo, hi, space)
        for t in rng.random_sample((20, 4)):
            pts = np.rint(lo + t * (hi - lo)).astype(np.uint8)
            f = _color.color_features(pts, space)
            assert np.all(f >= box_lo - 1e-9) and np.all(f <= box_hi + 1e-9)
