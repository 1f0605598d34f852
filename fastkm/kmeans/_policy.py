"""Which algorithm and which data preparation a fit uses: every threshold and
memory cap of the K-Means side, in one place. The numbers behind the rules
come from ``bench/algorithms.py``; the rules, not the numbers, live here."""
import warnings

from fastkm._kernels.layout import BALL, FEW_FEATURES

ALGORITHMS = ("auto", "lloyd", "elkan", "hamerly", "exponion")

# Deduplication of repeated rows (image colors): worth trying from this many rows,
# on a sample of this many rows first; given up when more than this fraction of
# the rows are distinct.
DEDUP_MIN_SAMPLES = 1 << 12
DEDUP_SAMPLE = 4096
DEDUP_MAX_FRACTION = 0.8

# Spatial order + box-pruned Lloyd tiles: up to this many features, from this many
# rows and clusters.
PRUNE_MAX_FEATURES = FEW_FEATURES
PRUNE_MIN_SAMPLES = DEDUP_MIN_SAMPLES
PRUNE_MIN_CLUSTERS = 8

# k-means++ with many features: test rows for exact pruning while the last test
# left fewer than this fraction of them to evaluate, and every this many steps.
SEED_PRUNE_BELOW = 0.3
SEED_RETEST = 8

# Memory caps of the bounded algorithms.
ELKAN_MAX_BYTES = 1 << 30   # Elkan's n x k lower bounds beyond this: Hamerly instead
BALL_MAX_BYTES = 32 << 20   # Exponion's packed ball lists (k x 16 x d) beyond this: Hamerly

# Centring the data (many features): the dot-product kernels lose precision far
# from the origin.
CENTRE_ABOVE_FEATURES = FEW_FEATURES


def choose_algorithm(algorithm, n_samples, n_features, n_clusters, itemsize=8, sorted_rows=False):
    """Resolve 'auto', and keep 'elkan' and 'exponion' within memory.

    'auto': Lloyd with one cluster, at d = 3, and up to d = 4 when the rows are
    in spatial order (``sorted_rows``: Lloyd's tiles then skip the centers
    their bounding box rules out); Exponion everywhere else, or Hamerly when
    Exponion's ball lists would pass ``BALL_MAX_BYTES``. It never picks Elkan,
    the slowest from d = 6 up in ``bench/algorithms.py``, which also needs
    n x k bounds: those are used only below ``ELKAN_MAX_BYTES``; above it,
    Hamerly gives the same labels in O(n) memory, with a warning.
    """
    ball_bytes = n_clusters * BALL * n_features * itemsize
    if algorithm == "auto":
        if n_clusters == 1 or n_features == 3 or (sorted_rows and n_features <= 4):
            return "lloyd"
        return "exponion" if ball_bytes <= BALL_MAX_BYTES else "hamerly"
    if algorithm == "elkan":
        need = n_samples * n_clusters * itemsize
        if need > ELKAN_MAX_BYTES:
            warnings.warn(
                f"algorithm='elkan' needs {need / 2**30:.1f} GiB of distance bounds "
                f"(n_samples x n_clusters); using 'hamerly' instead, which gives the same "
                "labels with two bounds per sample.",
                RuntimeWarning,
                stacklevel=4,
            )
            return "hamerly"
    if algorithm == "exponion" and ball_bytes > BALL_MAX_BYTES:
        warnings.warn(
            f"algorithm='exponion' needs {ball_bytes / 2**20:.0f} MiB of packed center lists "
            f"(n_clusters x {BALL} x n_features); using 'hamerly' instead, which gives the "
            "same labels without them.",
            RuntimeWarning,
            stacklevel=4,
        )
        return "hamerly"
    return algorithm


# ---------------------------------------------------------------------------- sparse input

# The bounded algorithms' center-center distances on sparse input (a k x k x d
# Gram matrix) are computed again only once some center has moved more than
# this fraction of the median center distance since the last time.
SPARSE_STALE_DISTANCES = 0.05

# k-means++ on sparse input keeps each step's candidates' D^2 (n_samples x
# n_local_trials float64) up to this size, instead of a second pass for the
# chosen one.
SPARSE_SEED_KEEP_BYTES = 256 << 20

# 'auto' on sparse input runs Lloyd below this much work per iteration
# (nonzeros x clusters multiply-adds): the bounds' fixed costs do not pay there.
SPARSE_BOUNDS_MIN_WORK = 50_000_000


def choose_sparse_algorithm(algorithm, n_samples, n_features, n_clusters, nnz, itemsize=8):
    """Resolve 'auto' for sparse (CSR) input, and keep 'elkan' within memory.

    'auto': Lloyd for one cluster and for small problems (``nnz * n_clusters``
    below ``SPARSE_BOUNDS_MIN_WORK``); Elkan otherwise, whose per-center bounds
    are the ones that prune in high dimensions (text), or Hamerly when Elkan's
    n x k bounds would pass ``ELKAN_MAX_BYTES`` (``bench/sparse_algorithms.py``
    has the measurements). 'elkan' above that cap runs Hamerly instead, with a
    warning, as for dense input.
    """
    elkan_fits = n_samples * n_clusters * itemsize <= ELKAN_MAX_BYTES
    if algorithm == "auto":
        if n_clusters == 1 or nnz * n_clusters < SPARSE_BOUNDS_MIN_WORK:
            return "lloyd"
        return "elkan" if elkan_fits else "hamerly"
    if algorithm == "elkan" and not elkan_fits:
        return choose_algorithm(algorithm, n_samples, n_features, n_clusters, itemsize)
    return algorithm
