"""fastkm: fast exact K-Means for Python on CPUs, and K-Means color quantization.

>>> import numpy as np
>>> from fastkm import KMeans
>>> X = np.array([[1.0, 2.0], [1.0, 4.0], [10.0, 2.0], [10.0, 4.0]])
>>> KMeans(n_clusters=2, random_state=0).fit(X).cluster_centers_
array([[10.,  3.],
       [ 1.,  3.]])

``KMeans``, ``k_means`` and ``MiniBatchKMeans`` are loaded on first use (they subclass
scikit-learn's ``BaseEstimator`` when it is installed, which is slow to
import); ``import fastkm``, ``quantize`` and the command line never import
scikit-learn.
"""
from fastkm._config import show_config
from fastkm.image import Palette, QuantizedImage, quantize
from fastkm.kmeans._seeding import kmeans_plusplus

__version__ = "0.1.0"

__all__ = [
    "KMeans",
    "MiniBatchKMeans",
    "Palette",
    "QuantizedImage",
    "__version__",
    "k_means",
    "kmeans_plusplus",
    "quantize",
    "show_config",
]


def __getattr__(name):
    if name in ("KMeans", "k_means"):
        from fastkm.kmeans import _estimator

        return getattr(_estimator, name)
    if name == "MiniBatchKMeans":
        from fastkm.kmeans import _minibatch

        return _minibatch.MiniBatchKMeans
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"KMeans", "k_means", "MiniBatchKMeans"})
