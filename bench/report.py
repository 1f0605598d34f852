"""Render a pytest-benchmark JSON file of the fastkm suite as a Markdown table.

    python -m pytest bench --benchmark-only --benchmark-json=bench/results/latest.json
    python bench/report.py bench/results/latest.json [-o table.md]

One row per (workload, peer): the peer's and fastkm's median time, their ratio
(peer / fastkm: "2.5x faster" means fastkm took 2.5 times less time) and, for
fits, the mean inertia each reached.
"""
import argparse
import json
import os
import platform
import sys
from collections import OrderedDict

FASTKM = "fastkm"
PEER_ORDER = ["sklearn", "sklearn-intelex", "faiss"]


# --------------------------------------------------------------------------- formatting

def fmt_time(seconds):
    if seconds is None:
        return "—"
    if seconds >= 1.0:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


def fmt_ratio(peer, fast):
    if peer is None or fast is None or fast <= 0:
        return "—"
    ratio = peer / fast
    if ratio >= 1.0:
        return f"**{ratio:.2f}x faster**"
    return f"{ratio:.2f}x (fastkm slower)"


def fmt_inertia(value):
    if value is None:
        return "—"
    if abs(value) >= 1e6:
        return f"{value:,.0f}"
    return f"{value:.7g}"


def fmt_int_or_float(value):
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.1f}"
    return f"{int(value)}"


# --------------------------------------------------------------------------- machine line

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _local_info():
    """Fallback machine facts (the machine running report.py) for JSON files
    written without bench/conftest.py's machine_info hook."""
    info = {"cpu_model": _cpu_model(), "cpu_count": os.cpu_count()}
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    try:
        import sklearn

        info["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    try:
        import io

        import fastkm

        buf = io.StringIO()
        fastkm.show_config(file=buf)
        cfg = {}
        for line in buf.getvalue().splitlines():
            key, sep, value = line.partition(" : ")
            if sep:
                cfg[key.strip()] = value.strip()
        info["fastkm"] = cfg
    except ImportError:
        pass
    return info


def machine_line(data):
    mi = data.get("machine_info", {})
    info = mi.get("fastkm_bench")
    note = ""
    if not info:
        info = _local_info()
        note = " (machine facts from the host running report.py, not from the JSON)"
    cpu = info.get("cpu_model") or (mi.get("cpu") or {}).get("brand_raw") or "unknown CPU"
    cores = info.get("cpu_count")
    usable = info.get("cpu_affinity")
    core_txt = f"{cores} logical cores" if cores else "? cores"
    if usable and usable != cores:
        core_txt += f" ({usable} usable)"
    parts = [f"**Machine:** {cpu}, {core_txt}"]
    if info.get("threads"):
        parts.append(f"benchmark threads T={info['threads']}")
    py = mi.get("python_version") or (info.get("fastkm") or {}).get("python")
    if py:
        parts.append(f"Python {py}")
    parts.append(f"numpy {info.get('numpy', '?')}")
    parts.append(f"scikit-learn {info.get('sklearn') or 'n/a'}")
    fk = info.get("fastkm") or {}
    fk_txt = f"fastkm {fk.get('fastkm', '?')}"
    if fk.get("kernels"):
        fk_txt += f", kernels: {fk['kernels']}"
    if fk.get("openmp"):
        fk_txt += f", OpenMP: {fk['openmp']}"
    parts.append(fk_txt)
    blas = [p for p in info.get("threadpools", []) if p.get("user_api") == "blas"]
    if blas:
        seen = []
        for p in blas:
            txt = f"{p.get('internal_api')} {p.get('version')}"
            if p.get("architecture"):
                txt += f" ({p['architecture']})"
            if txt not in seen:
                seen.append(txt)
        parts.append("BLAS: " + ", ".join(seen))
    line = " · ".join(parts) + note
    extra = []
    if data.get("datetime"):
        extra.append(f"run {data['datetime']}")
    ci = data.get("commit_info") or {}
    if ci.get("id"):
        extra.append(f"commit {ci['id'][:10]}{' (dirty)' if ci.get('dirty') else ''}")
    if extra:
        line += "  \n" + ", ".join(extra)
    return line


# --------------------------------------------------------------------------- table

def load_groups(data):
    """OrderedDict: workload -> {implementation: benchmark dict}."""
    groups = OrderedDict()
    for bench in data.get("benchmarks", []):
        extra = bench.get("extra_info") or {}
        workload = extra.get("workload") or bench.get("group") or bench.get("name")
        name = extra.get("implementation") or (bench.get("params") or {}).get("impl")
        if name is None:
            name = bench.get("param") or bench.get("name")
        groups.setdefault(workload, {})[name] = bench
    return groups


def _median(bench):
    return None if bench is None else (bench.get("stats") or {}).get("median")


def _rounds(bench):
    return None if bench is None else (bench.get("stats") or {}).get("rounds")


def _shape(bench):
    e = bench.get("extra_info") or {}
    try:
        return f"{e['n_samples']:,}×{e['n_features']}×{e['n_clusters']}"
    except KeyError:
        return "?"


def _notes(peer, fast):
    notes = []
    pe = (peer or {}).get("extra_info") or {}
    fe = (fast or {}).get("extra_info") or {}
    if "n_iter" in pe or "n_iter" in fe:
        notes.append(f"n_iter {fmt_int_or_float(pe.get('n_iter'))} / "
                     f"{fmt_int_or_float(fe.get('n_iter'))}")
    if "n_steps" in pe or "n_steps" in fe:
        notes.append(f"steps {fmt_int_or_float(pe.get('n_steps'))} / "
                     f"{fmt_int_or_float(fe.get('n_steps'))}")
    if "batches_per_s" in pe or "batches_per_s" in fe:
        notes.append("batches/s " + " / ".join(
            "—" if e.get("batches_per_s") is None else f"{e['batches_per_s']:.0f}"
            for e in (pe, fe)))
    if "ms_per_iteration" in pe or "ms_per_iteration" in fe:
        p, f = pe.get("ms_per_iteration"), fe.get("ms_per_iteration")
        notes.append("ms/iter " + " / ".join("—" if v is None else f"{v:.1f}" for v in (p, f)))
    if pe.get("inertia") and fe.get("inertia") is not None:
        delta = (fe["inertia"] - pe["inertia"]) / pe["inertia"]
        notes.append(f"Δinertia {delta:+.3%}")
    if pe.get("label_agreement_vs_fastkm") is not None:
        notes.append(f"labels = fastkm's {100 * pe['label_agreement_vs_fastkm']:.4f}%")
    if "label_agreement_vs_numpy" in pe or "label_agreement_vs_numpy" in fe:
        notes.append("labels = NumPy ref " + " / ".join(
            "—" if e.get("label_agreement_vs_numpy") is None
            else f"{100 * e['label_agreement_vs_numpy']:.4f}%" for e in (pe, fe)))
    if fe.get("repeatable") is False:
        notes.append("fastkm NOT repeatable across rounds")
    notes.append(f"rounds {_rounds(peer) or '—'} / {_rounds(fast) or '—'}")
    return "; ".join(notes)


def is_quantize_group(impls):
    """Color quantization groups (bench/test_bench_quantize.py) record a PSNR."""
    return any("psnr" in (b.get("extra_info") or {}) for b in impls.values())


QUANTIZE_ORDER = ["fastkm", "fastkm-fast", "imagequant", "pillow-mediancut",
                  "pillow-maxcoverage", "pillow-fastoctree", "sklearn"]


def fmt_db(value):
    if value is None:
        return "—"
    return "∞" if value == float("inf") else f"{value:.2f}"


def render_quantize(groups):
    """One row per (image and palette size, method): time, ratio to fastkm, quality."""
    lines = ["| workload | image | method | threads | median | method / fastkm | PSNR (dB) | "
             "mean ΔE2000 | colors used |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for workload, impls in groups.items():
        fast = impls.get(FASTKM)
        names = [m for m in QUANTIZE_ORDER if m in impls]
        names += sorted(m for m in impls if m not in QUANTIZE_ORDER)
        for name in names:
            bench = impls[name]
            e = bench.get("extra_info") or {}
            ratio = "—"
            if name.startswith(FASTKM + "-") and _median(bench) and _median(fast):
                ratio = f"{_median(bench) / _median(fast):.2f}x"  # another fastkm preset
            elif name != FASTKM:
                ratio = fmt_ratio(_median(bench), _median(fast))
            sampled = " †" if e.get("delta_e_pixel_step", 1) > 1 else ""
            lines.append(
                f"| `{workload}` | {e.get('image', '?')} "
                f"{e.get('width', '?')}×{e.get('height', '?')}"
                f" → {e.get('n_colors', '?')} | {name} | {e.get('threads', '?')} | "
                f"{fmt_time(_median(bench))} | {ratio} | {fmt_db(e.get('psnr'))} | "
                f"{e['delta_e']:.2f}{sampled} | {e.get('colors_used', '—')} |"
                if "delta_e" in e else
                f"| `{workload}` | ? | {name} | ? | {fmt_time(_median(bench))} | {ratio} | "
                f"{fmt_db(e.get('psnr'))} | — | — |")
    lines.append("")
    lines.append("Medians over the rounds (one call from RGB pixels to an indexed image per "
                 "round, no dithering). method / fastkm > 1 means fastkm (default preset) is "
                 "faster. PSNR over all pixels and channels; ΔE2000 averaged per pixel († over "
                 "every 16th pixel).")
    return lines


def render(data):
    all_groups = load_groups(data)
    quantize_groups = OrderedDict((w, g) for w, g in all_groups.items() if is_quantize_group(g))
    groups = OrderedDict((w, g) for w, g in all_groups.items() if not is_quantize_group(g))
    lines = [machine_line(data), ""]
    if not groups:
        lines += render_quantize(quantize_groups)
        return "\n".join(lines) + "\n"
    header = ["workload", "n×d×k", "dtype", "threads", "peer", "peer median",
              "fastkm median", "peer / fastkm", "peer inertia", "fastkm inertia",
              "notes (peer / fastkm)"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 4 + ["---"] + ["---:"] * 5 + ["---"]) + "|")
    for workload, impls in groups.items():
        fast = impls.get(FASTKM)
        peers = [p for p in PEER_ORDER if p in impls]
        peers += sorted(p for p in impls if p != FASTKM and p not in PEER_ORDER)
        for peer_name in peers or [None]:
            peer = impls.get(peer_name) if peer_name else None
            ref = fast or peer
            e = ref.get("extra_info") or {}
            is_fit = "inertia" in e
            pi = (peer or {}).get("extra_info", {}).get("inertia") if peer else None
            fi = (fast or {}).get("extra_info", {}).get("inertia") if fast else None
            row = [
                f"`{workload}`",
                _shape(ref),
                str(e.get("dtype", "?")),
                str(e.get("threads", "?")),
                peer_name or "—",
                fmt_time(_median(peer)),
                fmt_time(_median(fast)),
                fmt_ratio(_median(peer), _median(fast)),
                fmt_inertia(pi) if is_fit else "n/a",
                fmt_inertia(fi) if is_fit else "n/a",
                _notes(peer, fast),
            ]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Times are medians over the rounds (one fit or one predict per round). "
                 "peer / fastkm > 1 means fastkm is faster. Inertia: mean over seeds 0, 1, 2 "
                 "(`china-k64-fit`) or over rounds (`lloyd-500k-iter`).")
    if quantize_groups:
        lines += ["", "**Color quantization**", ""] + render_quantize(quantize_groups)
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("json", nargs="?", default="bench/results/latest.json",
                        help="pytest-benchmark JSON (default: %(default)s)")
    parser.add_argument("-o", "--output", help="also write the Markdown to this file")
    args = parser.parse_args(argv)
    try:
        with open(args.json, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        parser.error(f"cannot read {args.json}: {exc}")
    if not data.get("benchmarks"):
        parser.error(f"{args.json} has no benchmarks (was it run with --benchmark-disable?)")
    text = render(data)
    sys.stdout.write(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
