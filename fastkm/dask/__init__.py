"""fastkm on Dask: ``fastkm.dask.KMeans`` fits a dask array or DataFrame with
fastkm's exact algorithms, one task per chunk, on the current
``dask.distributed`` Client (or dask's local scheduler), with results that do
not depend on the number of workers, the scheduling or the chunking.

Needs dask (``pip install fastkm[dask]``); ``import fastkm`` never imports it.
"""
try:
    import dask.array  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("fastkm.dask needs dask[array]: pip install 'fastkm[dask]'") from e

from fastkm.dask._estimator import KMeans
from fastkm.kmeans._tree import block_rows

__all__ = ["KMeans", "block_rows"]
