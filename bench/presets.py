"""Quality and time of the quantization presets.

    python bench/presets.py [--repeats 3]

For china.jpg, flower.jpg (scikit-learn's sample images) and a synthetic image
(smooth gradients, flat disks and noise), at 16, 64 and 256 colors, each preset
of ``fastkm.quantize``: PSNR (dB), mean CIEDE2000 per pixel, and the median
wall time of ``--repeats`` runs (default threads). Prints a Markdown table.
"""
import argparse
import time

import numpy as np

import fastkm


def synthetic(h=480, w=640, seed=0):
    """Gradients, a dozen flat disks and noise: many colors, sharp edges."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([120 + 100 * np.sin(x / 37.0) * np.cos(y / 53.0),
                    90 + 80 * np.cos((x + y) / 59.0),
                    160 - 90 * np.sin(y / 23.0 + x / 71.0)], axis=2)
    for _ in range(12):
        cy, cx, r = rng.randint(0, h), rng.randint(0, w), rng.randint(20, 90)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.randint(0, 256, 3)
    img += rng.normal(scale=5.0, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    from sklearn.datasets import load_sample_image

    images = {"china": load_sample_image("china.jpg"),
              "flower": load_sample_image("flower.jpg"), "synthetic": synthetic()}
    print("| image | colors | preset | PSNR dB | mean ΔE2000 | time (median) |")
    print("|---|---|---|---|---|---|")
    for name, img in images.items():
        for k in (16, 64, 256):
            for preset in ("fast", "default", "converged"):
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    q = fastkm.quantize(img, k, preset=preset)
                    times.append(time.perf_counter() - t0)
                print(f"| {name} | {k} | {preset} | {q.psnr:.2f} | {q.delta_e:.3f} | "
                      f"{np.median(times) * 1e3:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
