"""Build and runtime facts, for bug reports and benchmark tables."""
import platform
import sys

import numpy as np

from fastkm._dispatch import ISA
from fastkm._openmp_helpers import OPENMP_ENABLED, openmp_max_threads


def config():
    """Return a dict: version, OpenMP compiled in, OpenMP threads now, platform."""
    from fastkm import __version__

    return {
        "fastkm": __version__,
        "openmp": bool(OPENMP_ENABLED),
        "openmp_max_threads": int(openmp_max_threads()),
        "kernels": ISA,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def show_config(file=None):
    """Print fastkm's version, whether OpenMP is compiled in and how many threads it uses."""
    cfg = config()
    width = max(map(len, cfg))
    for key, value in cfg.items():
        print(f"{key:<{width}} : {value}", file=file or sys.stdout)
