"""Peak resident memory (RSS) of a sparse fit, fastkm vs scikit-learn.

    PYTHONPATH=. python bench/sparse_memory.py [--threads T]

Each fit runs in a fresh subprocess (Linux) on the TF-IDF workload of
``bench/tfidf.py`` (20,000 x 100,000 CSR float64). After the data are built
the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``), so the
figure is the fit's own peak: VmHWM during the fit minus VmRSS before it, in
MiB. The dense centers alone are n_clusters x 100,000 float64 values
(76 MiB at k=100).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
IMPL = {
    "fastkm": "from fastkm import KMeans",
    "sklearn": "from sklearn.cluster import KMeans",
}
CODE = """
import json, gc, sys
sys.path.insert(0, {here!r})
from threadpoolctl import threadpool_limits
{imp}
from tfidf import tfidf_matrix
X = tfidf_matrix()
gc.collect()

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
with threadpool_limits({threads}):
    km = KMeans({k}, n_init=1, random_state=0).fit(X)
after = status("VmHWM")
print(json.dumps({{"before": before, "after": after, "inertia": km.inertia_}}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--k", type=int, nargs="*", default=[20, 100])
    args = ap.parse_args(argv)
    print(f"threads={args.threads}\n")
    print("| workload | fastkm peak extra MiB | sklearn peak extra MiB |")
    print("|---|---|---|")
    for k in args.k:
        cells = []
        for imp in IMPL.values():
            code = CODE.format(here=HERE, imp=imp, k=k, threads=args.threads)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            cells.append(f"{(r['after'] - r['before']) / 1024:.1f}")
        print(f"| TF-IDF 20,000 x 100,000 KMeans({k}, n_init=1) | " + " | ".join(cells) + " |",
              flush=True)


if __name__ == "__main__":
    main()
