"""Build and runtime facts, for bug reports and benchmark tables (``show_config``)."""
import platform
import sys

import numpy as np

from fastkm import _threads
from fastkm._dispatch import ISA
from fastkm._kernels.runtime import OPENMP_ENABLED, openmp_max_threads


def config():
    """Return a dict: version, OpenMP, the default thread count and its source,
    the kernel build in use, Python, NumPy and the platform."""
    from fastkm import __version__

    threads, source = _threads.default_threads()
    return {
        "fastkm": __version__,
        "openmp": bool(OPENMP_ENABLED),
        "openmp_max_threads": int(openmp_max_threads()),
        "threads": threads,
        "threads_from": source,
        "kernels": ISA,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def show_config(file=None):
    """Print fastkm's version, whether OpenMP is compiled in, how many threads
    ``n_threads=None`` uses and why, and which kernel build runs.

    Parameters
    ----------
    file : file-like, default=None
        Where to print (None: standard output).

    Examples
    --------
    >>> import fastkm
    >>> fastkm.show_config()                  # doctest: +ELLIPSIS
    fastkm             : ...
    openmp             : ...
    threads            : ...
    """
    cfg = config()
    width = max(map(len, cfg))
    for key, value in cfg.items():
        print(f"{key:<{width}} : {value}", file=file or sys.stdout)
