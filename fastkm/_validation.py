"""Input checking for the Python layer. Kernels never validate; everything they
receive has been checked and converted here. Caller arrays are never written:
conversions copy, and kernels take read-only views."""
import numbers

import numpy as np

from fastkm._kernels.stats import all_finite
from fastkm._threads import resolve as effective_n_threads
from fastkm._threads import threads_for

__all__ = [
    "check_array",
    "check_float",
    "check_int",
    "check_random_state",
    "check_sample_weight",
    "effective_n_threads",
    "feature_names",
]


def plain(value):
    """``value`` as plain Python for a message: NumPy scalars become Python
    numbers or strings (so a message says ``-1.0``, not ``np.float64(-1.0)``)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _first_non_number(arr):
    """(index, value) of the first element of an object/str array that float()
    rejects, or None."""
    for index in np.ndindex(arr.shape):
        v = arr[index]
        try:
            float(v)
        except (TypeError, ValueError):
            return tuple(int(i) for i in index), plain(v)
    return None


def check_random_state(seed):
    """Return a ``numpy.random.RandomState`` for None, an int or a RandomState."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(
        f"random_state must be None, an int or a numpy.random.RandomState instance; got {seed!r}."
    )


def _is_sparse(X):
    return hasattr(X, "tocsr") and hasattr(X, "nnz")


def is_sparse(X):
    """True for scipy.sparse input (checked without importing scipy)."""
    return _is_sparse(X)


def check_init_result(centers, n_clusters, n_features, dtype):
    """The centers an ``init`` callable returned, as a validated dense
    (n_clusters, n_features) array of ``dtype`` (a sparse result is densified:
    centers are dense)."""
    if _is_sparse(centers):
        centers = centers.toarray()
    centers = check_array(centers, dtype=dtype, name="init(...) result")
    if centers.shape != (n_clusters, n_features):
        raise ValueError(f"The init callable returned centers of shape {centers.shape}; "
                         f"expected ({n_clusters}, {n_features}).")
    return centers


def feature_names(X):
    """Column names of a DataFrame-like X (all strings), else None."""
    cols = getattr(X, "columns", None)
    if cols is None or isinstance(X, np.ndarray):
        return None
    names = np.asarray(list(cols), dtype=object)
    if names.size == 0:
        return None
    is_str = [isinstance(n, str) for n in names]
    if all(is_str):
        return names
    if any(is_str):
        raise TypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {sorted({type(n).__name__ for n in names})} as feature name "
            "types. Convert all feature names to strings to fit or predict."
        )
    return None


def check_array(X, *, dtype=None, name="X", estimator="KMeans", min_samples=1, n_threads=1,
                accept_sparse=False):
    """Validate a 2-D numeric array and return a C-contiguous float32/float64 copy or view.

    ``n_threads`` threads scan it for NaN and infinity (no temporary of X's size).

    float32 input stays float32 (unless ``dtype`` says otherwise); every other
    numeric dtype becomes float64. Never returns an array that aliases writable
    caller memory in a way the kernels could modify (kernels take const views).

    ``accept_sparse``: scipy.sparse input becomes a validated
    ``fastkm.kmeans._csr.SparseX`` (``check_csr``); otherwise it is an error.
    """
    if _is_sparse(X):
        if accept_sparse:
            from fastkm.kmeans._csr import check_csr

            return check_csr(X, dtype=dtype, name=name, estimator=estimator,
                             min_samples=min_samples, n_threads=n_threads)
        raise TypeError(
            f"{estimator} does not take a sparse {name} (got {type(X).__name__}). "
            f"Convert it with {name}.toarray()."
        )
    if type(X).__module__.split(".")[0] == "dask":
        # np.asarray would compute the whole collection into this process's memory
        raise TypeError(
            f"{estimator} got a dask {type(X).__name__} as {name}: fit it with "
            f"fastkm.dask.KMeans, or load it into memory first with {name}.compute()."
        )
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):
        X = X.to_numpy()
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from None
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported; {name} has dtype {arr.dtype}.")
    if arr.dtype.kind not in "biuf":
        if arr.dtype.kind in "OUS":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:
                bad = _first_non_number(arr)
                where = (f"; {bad[1]!r} at index {bad[0]} is not a number" if bad is not None
                         else f": {exc}")
                if isinstance(exc, TypeError) and bad is not None:
                    where += f" ({exc})"  # NumPy's own words: "argument must be a string..."
                raise type(exc)(
                    f"{name} must contain numbers only{where}. Convert or drop the "
                    "non-numeric columns first."
                ) from None
        else:
            raise TypeError(f"{name} must be numeric; got an array of dtype {arr.dtype}.")
    if arr.ndim == 0:
        raise ValueError(f"Expected a 2D array for {name}, got a scalar: {X!r}.")
    if arr.ndim == 1:
        raise ValueError(
            f"Expected a 2D array for {name}, got a 1D array of shape {arr.shape} instead. "
            "Reshape your data either using array.reshape(-1, 1) if your data has a single "
            "feature or array.reshape(1, -1) if it contains a single sample."
        )
    if arr.ndim > 2:
        raise ValueError(
            f"Found array with dim {arr.ndim} for {name}; {estimator} expected <= 2 "
            f"(a 2D array of shape (n_samples, n_features)); got shape {arr.shape}."
        )
    n, d = arr.shape
    if n < min_samples:
        raise ValueError(
            f"Found array with {n} sample(s) (shape={arr.shape}) while a minimum of "
            f"{min_samples} is required by {estimator}."
        )
    if d < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is "
            f"required by {estimator}."
        )
    if dtype is None:
        dtype = np.float32 if (arr.dtype.kind == "f" and arr.dtype.itemsize == 4) else np.float64
    out = np.ascontiguousarray(arr, dtype=dtype)  # native byte order, C order
    if out.dtype in (np.float32, np.float64):
        finite = all_finite(out, threads_for("finite", out.size, n_threads))
    else:
        finite = bool(np.isfinite(out).all())
    if not finite:
        if np.isnan(out).any():
            raise ValueError(
                f"Input {name} contains NaN. {estimator} does not accept missing values: "
                "drop those rows or impute them (e.g. sklearn.impute.SimpleImputer).")
        raise ValueError(f"Input {name} contains infinity or a value too large for "
                         f"{out.dtype}; drop or clip those values.")
    return out


def check_sample_weight(sample_weight, n_samples, dtype):
    """Return a validated, finite, non-negative weight vector of the given dtype."""
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype)
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        sw = np.full(n_samples, sample_weight, dtype=dtype)
    else:
        try:
            sw = np.asarray(sample_weight)
        except Exception as exc:
            raise ValueError(f"sample_weight could not be converted to an array: {exc}") from None
        if sw.dtype.kind not in "biuf":
            raise TypeError(f"sample_weight must be numeric; got dtype {sw.dtype}.")
        if sw.ndim != 1:
            raise ValueError(
                f"sample_weight must be 1D array or scalar; got an array of shape {sw.shape}."
            )
        if sw.shape[0] != n_samples:
            raise ValueError(
                f"sample_weight.shape == {sw.shape}, expected ({n_samples},): one weight per "
                "sample."
            )
        sw = np.ascontiguousarray(sw, dtype=dtype)
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight contains NaN or infinity.")
    if (sw < 0).any():
        raise ValueError(
            f"sample_weight must be non-negative; got {int((sw < 0).sum())} negative value(s) "
            f"(the smallest is {float(sw.min())!r})."
        )
    if not sw.any():
        raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
    return sw


def check_int(value, name, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {plain(value)!r} of type "
                        f"{type(value).__name__}.")
    if value < minimum or (maximum is not None and value > maximum):
        rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {rng}; got {value}.")
    return int(value)


def check_float(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {plain(value)!r} of type "
                        f"{type(value).__name__}.")
    if not np.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}; got {value}.")
    return float(value)
