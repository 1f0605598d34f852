"""Import the fastest build of each hot kernel module that this CPU can run.

setup.py compiles the modules in ``HOT`` once for baseline x86-64, once for
x86-64-v3 (AVX2 + FMA) as ``lloyd_v3`` etc. and once for x86-64-v4 (AVX-512
F/BW/CD/DQ/VL) as ``lloyd_v4`` etc. The source is the same; only the
instruction set (and the register tiles sized for it) differs. Every algorithm
module of one fit comes from the same build, so they all round a distance the
same way. ``FASTKM_ISA`` caps the choice: ``baseline`` (the portable build, e.g.
to compare them), ``v3`` or ``v4`` (the best build up to that level that the CPU
runs; an ImportError if that build is missing).
"""
import importlib
import os

from fastkm._kernels.runtime import cpu_x86_level

# setup.py builds these per ISA (its HOT_MODULES)
HOT = ("lloyd", "hamerly", "elkan", "seeding", "seeding_dot", "minibatch",
       "sparse_lloyd", "sparse_bounds", "sparse_seeding", "sparse_minibatch", "scalable")
LEVELS = {"v3": 3, "v4": 4}
_BEST_FIRST = ("_v4", 4), ("_v3", 3)


def _importable(suffix):
    for name in HOT:
        importlib.import_module("fastkm._kernels." + name + suffix)


def _select():
    forced = os.environ.get("FASTKM_ISA", "").strip().lower()
    if forced in ("baseline", "v1", "sse2"):
        return ""
    if forced not in ("", "auto", "v3", "v4"):
        raise ImportError(
            f"FASTKM_ISA must be 'auto', 'baseline', 'v3' or 'v4'; got {forced!r}."
        )
    cap = LEVELS.get(forced, 4)
    level = cpu_x86_level()
    for suffix, needed in _BEST_FIRST:
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
lloyd = importlib.import_module("fastkm._kernels.lloyd" + ISA_SUFFIX)
hamerly = importlib.import_module("fastkm._kernels.hamerly" + ISA_SUFFIX)
elkan = importlib.import_module("fastkm._kernels.elkan" + ISA_SUFFIX)
seeding = importlib.import_module("fastkm._kernels.seeding" + ISA_SUFFIX)
seeding_dot = importlib.import_module("fastkm._kernels.seeding_dot" + ISA_SUFFIX)
minibatch = importlib.import_module("fastkm._kernels.minibatch" + ISA_SUFFIX)
sparse_lloyd = importlib.import_module("fastkm._kernels.sparse_lloyd" + ISA_SUFFIX)
sparse_bounds = importlib.import_module("fastkm._kernels.sparse_bounds" + ISA_SUFFIX)
sparse_seeding = importlib.import_module("fastkm._kernels.sparse_seeding" + ISA_SUFFIX)
sparse_minibatch = importlib.import_module("fastkm._kernels.sparse_minibatch" + ISA_SUFFIX)
scalable = importlib.import_module("fastkm._kernels.scalable" + ISA_SUFFIX)
