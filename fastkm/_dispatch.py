"""Pick the fastest build of each hot kernel module that this CPU can run.

setup.py compiles ``_lloyd``, ``_kmeanspp``, ``_hamerly`` and ``_elkan`` once for
baseline x86-64, once for x86-64-v3 (AVX2 + FMA) as ``_lloyd_v3`` etc. and once for
x86-64-v4 (AVX-512 F/BW/CD/DQ/VL) as ``_lloyd_v4`` etc. The source is the same; only
the instruction set (and the register tile sized for it) differs. ``FASTKM_ISA``
caps the choice: ``baseline`` (the portable build, e.g. to compare them), ``v3`` or
``v4`` (the best build up to that level that the CPU runs; an ImportError if that
build is missing).
"""
import importlib
import os

from fastkm._openmp_helpers import cpu_x86_level

_HOT = ("_lloyd", "_kmeanspp", "_hamerly", "_elkan")
_LEVELS = (("_v4", 4), ("_v3", 3))  # best first


def _importable(suffix):
    for name in _HOT:
        importlib.import_module("fastkm." + name + suffix)


def _select():
    forced = os.environ.get("FASTKM_ISA", "").strip().lower()
    if forced in ("baseline", "v1", "sse2"):
        return ""
    if forced not in ("", "auto", "v3", "v4"):
        raise ImportError(
            f"FASTKM_ISA must be 'auto', 'baseline', 'v3' or 'v4'; got {forced!r}."
        )
    cap = {"v3": 3, "v4": 4}.get(forced, 4)
    level = cpu_x86_level()
    for suffix, needed in _LEVELS:
        # a level above the one asked for, or above what the CPU runs, is skipped
        if needed > cap or needed > level:
            continue
        try:
            _importable(suffix)
            return suffix
        except ImportError:
            if needed == cap and forced in ("v3", "v4"):
                raise
    return ""


ISA_SUFFIX = _select()
ISA = {
    "": "baseline (x86-64/SSE2 or the platform default)",
    "_v3": "x86-64-v3 (AVX2, FMA)",
    "_v4": "x86-64-v4 (AVX-512)",
}[ISA_SUFFIX]
lloyd = importlib.import_module("fastkm._lloyd" + ISA_SUFFIX)
kmeanspp = importlib.import_module("fastkm._kmeanspp" + ISA_SUFFIX)
hamerly = importlib.import_module("fastkm._hamerly" + ISA_SUFFIX)
elkan = importlib.import_module("fastkm._elkan" + ISA_SUFFIX)
