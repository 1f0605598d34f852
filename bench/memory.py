"""Peak resident memory (RSS) of default fits, fastkm vs scikit-learn.

    python bench/memory.py

Each fit runs in a fresh subprocess (Linux). After the data are built the
kernel's peak-RSS mark is reset (``/proc/self/clear_refs``), so the figure is
the fit's own peak: VmHWM during the fit minus VmRSS before it, in MiB.
"""
import json
import subprocess
import sys

WORKLOADS = {
    "china.jpg KMeans(64)": "from sklearn.datasets import load_sample_image; "
    "X = (load_sample_image('china.jpg') / 255.0).reshape(-1, 3)",
    "200k x 32 float32 KMeans(256)": "from sklearn.datasets import make_blobs; "
    "X = make_blobs(200000, 32, centers=256, random_state=0)[0].astype('float32')",
}
IMPL = {
    "fastkm": "from fastkm import KMeans",
    "sklearn": "from sklearn.cluster import KMeans",
}
CODE = """
import json, gc
{imp}
{data}
import numpy as np
gc.collect()

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
km = KMeans({k}, random_state=0).fit(X)
after = status("VmHWM")
print(json.dumps({{"before": before, "after": after, "inertia": km.inertia_}}))
"""


def main():
    print("| workload | fastkm peak extra MiB | sklearn peak extra MiB |")
    print("|---|---|---|")
    for name, data in WORKLOADS.items():
        k = 64 if "china" in name else 256
        cells = []
        for imp in IMPL.values():
            out = subprocess.run([sys.executable, "-c", CODE.format(imp=imp, data=data, k=k)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            cells.append(f"{(r['after'] - r['before']) / 1024:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
