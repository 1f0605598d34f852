"""K-Means: the estimator and the functions of the public API.

- ``_estimator``  ``KMeans``, ``k_means``: parameters, checks, learned attributes
- ``_core``       one whole fit without the estimator class (the quantizer uses it)
- ``_prepare``    ``FitData``: distinct rows, spatial order, tiles, centring
- ``_seeding``    k-means++ and the other initialisations
- ``_solver``     the iteration loop and one step class per exact algorithm
- ``_policy``     which algorithm and preparation a fit uses; every threshold
- ``_csr``        sparse input: ``check_csr`` and the validated ``SparseX``
- ``_sparse_core``, ``_sparse_solver``, ``_sparse_seeding``  the same fit on CSR rows
- ``_minibatch``  ``MiniBatchKMeans``: parameters, checks, learned attributes
- ``_minibatch_core``  the mini-batch loop: sampling, steps, reassignment, early stopping
- ``_scalable``   init='k-means||' over a source of rows (memory, windows, Dask)
- ``_tree``       canonical row blocks and the reduction tree fixed by block index
- ``_pieces``     a fit in pieces (windows, chunks): per-block partials, the loop
- ``_outofcore``  memory-mapped X: windows, and the estimator's methods on it
- ``_windowed``   solver steps and seeding window by window

``KMeans``, ``k_means`` and ``MiniBatchKMeans`` are loaded on first use: they subclass
scikit-learn's ``BaseEstimator`` when scikit-learn is installed, and
importing it is slow.
"""
from fastkm.kmeans._seeding import kmeans_plusplus

__all__ = ["KMeans", "MiniBatchKMeans", "k_means", "kmeans_plusplus"]


def __getattr__(name):
    if name in ("KMeans", "k_means"):
        from fastkm.kmeans import _estimator

        return getattr(_estimator, name)
    if name == "MiniBatchKMeans":
        from fastkm.kmeans import _minibatch

        return _minibatch.MiniBatchKMeans
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
