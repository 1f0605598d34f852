"""scikit-learn is optional: use its base classes when installed, small stand-ins
otherwise. Imported only by the estimator (``fastkm.kmeans._estimator``), so
that ``import fastkm`` and the quantizer never import scikit-learn."""
import inspect

try:  # pragma: no cover - exercised in both states by the test suite
    from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
    from sklearn.exceptions import ConvergenceWarning, NotFittedError

    try:
        from sklearn.utils._param_validation import InvalidParameterError
    except ImportError:  # scikit-learn < 1.2
        InvalidParameterError = None
    SKLEARN_INSTALLED = True
except ImportError:
    SKLEARN_INSTALLED = False
    InvalidParameterError = None

    class ConvergenceWarning(UserWarning):
        """Warning raised when a fit does not behave as asked (as scikit-learn's)."""

    class NotFittedError(ValueError, AttributeError):
        """Raised when an estimator is used before ``fit`` (as scikit-learn's)."""

    class BaseEstimator:
        """Parameter handling compatible with scikit-learn's ``BaseEstimator``."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(
                p.name
                for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            )

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(
                        f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                        f"Valid parameters are: {valid!r}."
                    )
                setattr(self, key, value)
            return self

        def __repr__(self):
            params = inspect.signature(type(self).__init__).parameters.values()
            defaults = {p.name: p.default for p in params}
            changed = [
                f"{k}={v!r}"
                for k, v in self.get_params().items()
                if not (k in defaults and _same(defaults[k], v))
            ]
            return f"{type(self).__name__}({', '.join(changed)})"

    class ClusterMixin:
        _estimator_type = "clusterer"

        def fit_predict(self, X, y=None, **kwargs):
            self.fit(X, **kwargs)
            return self.labels_

    class TransformerMixin:
        def fit_transform(self, X, y=None, **fit_params):
            return self.fit(X, y, **fit_params).transform(X)


def invalid_parameter(error):
    """``error`` (a ValueError or TypeError about a parameter) as scikit-learn's
    ``InvalidParameterError`` (a subclass of both) when scikit-learn has it."""
    if InvalidParameterError is None or isinstance(error, InvalidParameterError):
        return error
    return InvalidParameterError(str(error))


def _same(a, b):
    try:
        return bool(a is b or a == b)
    except Exception:
        return False
