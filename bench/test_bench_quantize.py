"""Color quantization: fastkm.quantize vs Pillow, libimagequant and scikit-learn.

    PYTHONPATH=. python -m pytest bench/test_bench_quantize.py --benchmark-only \\
        --benchmark-json=bench/results/quantize.json
    python bench/report.py bench/results/quantize.json

One group per image and palette size (``quantize-<image>-k<n>``); every method
maps the same RGB image to at most n colors without dithering. Each round times
one call that returns the indexed image; quality is measured afterwards (not
timed) on the last round's output, with the same code for every method: PSNR
over all pixels and channels, mean CIEDE2000 per pixel.

Methods: ``fastkm`` (default preset), ``fastkm-fast`` (``preset='fast'``),
``pillow-mediancut``, ``pillow-maxcoverage``, ``pillow-fastoctree``
(``Image.quantize(n, method=..., dither=NONE)``), ``imagequant`` (libimagequant,
the library behind pngquant, through the ``imagequant`` package when installed;
GPL-3, a comparison only: fastkm never imports it), and ``sklearn`` (KMeans on
all pixels, as in scikit-learn's color quantization example but without
subsampling; china.jpg at 64 colors only).

Images: ``china.jpg`` and ``flower.jpg`` (scikit-learn's sample images, 427x640)
at 16, 64 and 256 colors, and a 24-megapixel photo (china.jpg upscaled to
6000x4000 with Lanczos, plus uniform noise of +-4 levels like sensor noise:
1.86 million distinct colors) at 256 colors.
"""
import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

METHODS = ["fastkm", "fastkm-fast", "pillow-mediancut", "pillow-maxcoverage",
           "pillow-fastoctree", "imagequant", "sklearn"]
SMALL = [(name, k) for name in ("china", "flower") for k in (16, 64, 256)]


# --------------------------------------------------------------------------- images

@pytest.fixture(scope="session")
def sample_images():
    datasets = pytest.importorskip("sklearn.datasets")
    return {name: np.ascontiguousarray(datasets.load_sample_image(f"{name}.jpg"))
            for name in ("china", "flower")}


@pytest.fixture(scope="session")
def photo_24mp(sample_images):
    src = Image.fromarray(sample_images["china"]).resize((6000, 4000), Image.Resampling.LANCZOS)
    a = np.asarray(src).astype(np.int16)
    a += np.random.default_rng(0).integers(-4, 5, size=a.shape, dtype=np.int16)
    return np.clip(a, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- methods

def _pillow(method_name):
    method = getattr(Image.Quantize, method_name)

    def run(img, k, threads):
        return Image.fromarray(img).quantize(k, method=method, dither=Image.Dither.NONE)
    return run


def _fastkm(preset):
    import fastkm

    def run(img, k, threads):
        return fastkm.quantize(img, k, preset=preset, n_threads=threads)
    return run


def _imagequant():
    iq = pytest.importorskip("imagequant")

    def run(img, k, threads):
        return iq.quantize_pil_image(Image.fromarray(img), dithering_level=0.0, max_colors=k)
    return run


def _sklearn():
    cluster = pytest.importorskip("sklearn.cluster")
    from threadpoolctl import threadpool_limits

    def run(img, k, threads):
        X = img.reshape(-1, 3) / 255.0
        with threadpool_limits(threads):
            km = cluster.KMeans(k, random_state=0).fit(X)
        palette = np.clip(np.rint(km.cluster_centers_ * 255), 0, 255).astype(np.uint8)
        return palette[km.labels_].reshape(img.shape)
    return run


def make_method(name):
    if name == "fastkm":
        return _fastkm("default")
    if name == "fastkm-fast":
        return _fastkm("fast")
    if name.startswith("pillow-"):
        return _pillow(name.split("-", 1)[1].upper())
    if name == "imagequant":
        return _imagequant()
    if name == "sklearn":
        return _sklearn()
    raise ValueError(name)


def output_pixels(out):
    """RGB pixels of whatever a method returned."""
    if isinstance(out, np.ndarray):
        return out
    if hasattr(out, "to_array"):  # fastkm's QuantizedImage
        return out.to_array()
    return np.asarray(out.convert("RGB"))


DELTA_E_MAX_PIXELS = 1 << 22  # larger images: mean CIEDE2000 over every 16th pixel


def quality(img, out):
    from fastkm.image._color import ciede2000, srgb_to_lab

    q = output_pixels(out)
    a, b = img.reshape(-1, 3), q.reshape(-1, 3)
    sq = 0.0
    for s in range(0, a.shape[0], 1 << 22):
        d = a[s:s + (1 << 22)].astype(np.float64) - b[s:s + (1 << 22)]
        sq += float(np.einsum("ij,ij->", d, d))
    mse = sq / a.size
    step = 16 if a.shape[0] > DELTA_E_MAX_PIXELS else 1
    sa, sb = a[::step], b[::step]
    de = 0.0
    for s in range(0, sa.shape[0], 1 << 20):
        de += float(ciede2000(srgb_to_lab(sa[s:s + (1 << 20)]),
                              srgb_to_lab(sb[s:s + (1 << 20)])).sum())
    keys = b[::step].astype(np.uint32) @ np.array([1, 256, 65536], np.uint32)
    return {"psnr": 10 * np.log10(255.0**2 / mse) if mse else float("inf"), "mse": mse,
            "delta_e": de / sa.shape[0], "delta_e_pixel_step": step,
            "colors_used": int(np.unique(keys).size)}


def run_workload(benchmark, img, image_name, k, method, threads, rounds):
    run = make_method(method)
    outputs = []

    def call():
        out = run(img, k, threads)
        outputs.append(out)
        if len(outputs) > 1:
            outputs.pop(0)
        return out

    benchmark.extra_info.update({
        "workload": f"quantize-{image_name}-k{k}", "implementation": method, "image": image_name,
        "width": int(img.shape[1]), "height": int(img.shape[0]), "n_colors": int(k),
        "n_samples": int(img.shape[0] * img.shape[1]), "n_features": 3, "n_clusters": int(k),
        "dtype": "uint8",
        "threads": int(threads) if method.startswith(("fastkm", "sklearn")) else 1,
    })
    benchmark.pedantic(call, rounds=rounds, warmup_rounds=1 if rounds > 1 else 0, iterations=1)
    benchmark.extra_info.update(quality(img, outputs[-1]))


# --------------------------------------------------------------------------- workloads

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("image_name, k", SMALL, ids=[f"{n}-k{k}" for n, k in SMALL])
def test_quantize_sample_images(benchmark, sample_images, image_name, k, method, threads,
                                rounds_for):
    if method == "sklearn" and (image_name, k) != ("china", 64):
        pytest.skip("scikit-learn KMeans on all pixels: china.jpg at 64 colors only")
    benchmark.group = f"quantize-{image_name}-k{k}"
    rounds = 1 if method == "sklearn" else rounds_for(7)
    run_workload(benchmark, sample_images[image_name], image_name, k, method, threads, rounds)


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("sklearn",)])
def test_quantize_24mp(benchmark, photo_24mp, method, threads, rounds_for):
    if method == "pillow-maxcoverage":
        pytest.skip("Pillow MAXCOVERAGE takes minutes on 24 megapixels")
    benchmark.group = "quantize-24mp-k256"
    slow = method in ("imagequant", "pillow-mediancut")  # several seconds per call
    run_workload(benchmark, photo_24mp, "24mp", 256, method, threads,
                 1 if slow else rounds_for(2))
