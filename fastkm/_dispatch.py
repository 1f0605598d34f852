"""Pick the fastest build of each hot kernel module that this CPU can run.

setup.py compiles ``_lloyd``, ``_kmeanspp`` and ``_hamerly`` once for baseline x86-64 and once
for x86-64-v3 (AVX2 + FMA) as ``_lloyd_v3`` etc. The source is the
same; only the instruction set differs. ``FASTKM_ISA=baseline`` forces the
portable build (e.g. to compare them).
"""
import importlib
import os

from fastkm._openmp_helpers import cpu_x86_level


def _select():
    forced = os.environ.get("FASTKM_ISA", "").strip().lower()
    if forced in ("baseline", "v1", "sse2"):
        return ""
    if forced not in ("", "auto", "v3"):
        raise ImportError(f"FASTKM_ISA must be 'auto', 'baseline' or 'v3'; got {forced!r}.")
    if cpu_x86_level() >= 3:
        try:
            importlib.import_module("fastkm._lloyd_v3")
            importlib.import_module("fastkm._kmeanspp_v3")
            importlib.import_module("fastkm._hamerly_v3")
            importlib.import_module("fastkm._elkan_v3")
            return "_v3"
        except ImportError:
            if forced == "v3":
                raise
    return ""


ISA_SUFFIX = _select()
ISA = {"": "baseline (x86-64/SSE2 or the platform default)", "_v3": "x86-64-v3 (AVX2, FMA)"}[ISA_SUFFIX]
lloyd = importlib.import_module("fastkm._lloyd" + ISA_SUFFIX)
kmeanspp = importlib.import_module("fastkm._kmeanspp" + ISA_SUFFIX)
hamerly = importlib.import_module("fastkm._hamerly" + ISA_SUFFIX)
elkan = importlib.import_module("fastkm._elkan" + ISA_SUFFIX)
