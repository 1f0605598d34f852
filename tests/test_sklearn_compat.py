"""fastkm.KMeans as a scikit-learn estimator, and fastkm without scikit-learn."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastkm import KMeans

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

# Checks fastkm fails on purpose, with the reason.
EXPECTED_FAILED_CHECKS = {
    "KMeans": {
        # As for scikit-learn's own KMeans: weighted seeding draws different random
        # points than seeding on repeated rows, so the two runs are only equal in
        # distribution. (Exact weight equivalence from a fixed init is tested in
        # test_kmeans.py::test_weighted_fit_equals_repeated_samples.)
        "check_sample_weight_equivalence_on_dense_data": (
            "k-means++ consumes random numbers differently with weights than with repeats"
        ),
        "check_sample_weight_equivalence_on_sparse_data": (
            "k-means++ consumes random numbers differently with weights than with repeats"
        ),
    }
}


def _expected_failed_checks(est):
    return EXPECTED_FAILED_CHECKS.get(type(est).__name__, {})


@parametrize_with_checks(
    [KMeans(n_clusters=2, random_state=0, n_init=2), KMeans(n_clusters=3, init="random")],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_clone_pipeline_gridsearch():
    X = np.random.RandomState(0).normal(size=(200, 4))
    X[:100] += 5
    km = KMeans(3, random_state=0, n_threads=1)
    c = clone(km)
    assert c.get_params() == km.get_params() and c is not km
    pipe = make_pipeline(StandardScaler(), KMeans(2, random_state=0)).fit(X)
    assert pipe.predict(X).shape == (200,)
    assert pipe.transform(X).shape == (200, 2)
    gs = GridSearchCV(KMeans(random_state=0), {"n_clusters": [2, 3, 4]}, cv=3).fit(X)
    # score = -inertia on held-out folds: more clusters always scores higher
    assert gs.best_params_["n_clusters"] == 4
    assert "n_clusters=3" in repr(KMeans(3))


def test_sklearn_and_fastkm_have_the_same_parameters():
    from inspect import signature

    from sklearn.cluster import KMeans as SKKMeans

    ours = set(signature(KMeans).parameters) - {"n_threads"}
    assert ours == set(signature(SKKMeans).parameters)
    for name, p in signature(SKKMeans).parameters.items():
        if name == "algorithm":  # ours defaults to 'auto', which picks an exact variant
            assert signature(KMeans).parameters[name].default == "auto"
            continue
        assert signature(KMeans).parameters[name].default == p.default, name


def test_works_without_sklearn(tmp_path):
    """Hide scikit-learn from the import system: import, fit, predict still work."""
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "sklearn" or name.startswith("sklearn."):
                    raise ImportError("sklearn hidden for this test")
        sys.meta_path.insert(0, Block())
        import numpy as np
        import fastkm
        from fastkm._compat import SKLEARN_INSTALLED
        assert not SKLEARN_INSTALLED
        X = np.random.RandomState(0).normal(size=(300, 3))
        km = fastkm.KMeans(4, random_state=0).fit(X)
        assert (km.predict(X) == km.labels_).all()
        assert "n_clusters=4" in repr(km)
        km.set_params(n_clusters=5)
        assert km.get_params()["n_clusters"] == 5
        try:
            fastkm.KMeans(2).predict(X)
        except fastkm._compat.NotFittedError as e:
            assert isinstance(e, ValueError)
        try:
            km.set_params(bogus=1)
        except ValueError as e:
            assert "bogus" in str(e)
        assert "sklearn" not in sys.modules
        print("ok")
        """
    )
    import fastkm

    env = os.environ.copy()
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastkm.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
