"""fastkm: fast exact K-Means for Python on CPUs, and K-Means color quantization.

>>> from fastkm import KMeans
>>> KMeans(n_clusters=3, random_state=0).fit(X).labels_      # doctest: +SKIP
"""
from fastkm._config import show_config
from fastkm._kmeans import KMeans, k_means, kmeans_plusplus
from fastkm.image import Palette, QuantizedImage, quantize

__version__ = "0.1.0"

__all__ = ["KMeans", "k_means", "kmeans_plusplus", "Palette", "QuantizedImage", "quantize",
           "show_config", "__version__"]
