"""The public API's docstrings: the Examples run (as doctests) and every public
class, function and method documents its parameters and what it returns."""
import doctest
import importlib
import inspect

import pytest

import fastkm

MODULES = ["fastkm", "fastkm._config", "fastkm.kmeans._estimator", "fastkm.kmeans._seeding",
           "fastkm.kmeans._minibatch",
           "fastkm.image._quantize_fn", "fastkm.image._palette", "fastkm.image._result"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name, tmp_path, monkeypatch):
    if name != "fastkm._config":
        pytest.importorskip("PIL")
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def _public_api():
    for name in fastkm.__all__:
        if name.startswith("_"):
            continue
        obj = getattr(fastkm, name)
        if inspect.isclass(obj):
            yield name, obj
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (inspect.isfunction(member)
                                                or isinstance(member, (classmethod, property))):
                    continue
                yield f"{name}.{attr}", member
        elif callable(obj):
            yield name, obj


def _doc(obj):
    if isinstance(obj, classmethod):
        obj = obj.__func__
    if isinstance(obj, property):
        obj = obj.fget
    return inspect.getdoc(obj) or "", obj


@pytest.mark.parametrize("qualname,obj", list(_public_api()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_public_docstrings_are_complete(qualname, obj):
    doc, func = _doc(obj)
    assert doc, f"{qualname} has no docstring"
    if inspect.isclass(func):
        params = [p for p in inspect.signature(func.__init__).parameters if p != "self"]
        if "not\nconstructed directly" in doc or "not constructed directly" in doc:
            params = []  # a result class: its constructor is internal
        assert not params or "Parameters\n----------" in doc, qualname
        for p in params:
            assert f"{p} :" in doc or f"{p}," in doc, f"{qualname}: parameter {p} undocumented"
        assert "Examples\n--------" in doc, f"{qualname}: no Examples"
        return
    if isinstance(obj, property):
        return  # a one-line docstring says what the property is
    params = [p for p in inspect.signature(func).parameters if p not in ("self", "cls")]
    if params:
        assert "Parameters\n----------" in doc, f"{qualname}: no Parameters section"
        for p in params:
            if p in ("params",):  # **params passed through to Pillow
                continue
            assert f"{p} :" in doc or f"{p}," in doc or f", {p}" in doc, \
                f"{qualname}: parameter {p} undocumented"
    if func.__name__ not in ("__init__",) and "return" in inspect.getsource(func):
        assert "Returns\n-------" in doc or "Yields" in doc, f"{qualname}: no Returns section"


def test_fitted_attributes_are_documented():
    doc = inspect.getdoc(fastkm.KMeans)
    section = doc.split("Attributes\n----------", 1)[1].split("See Also", 1)[0]
    for attr in ("cluster_centers_", "labels_", "inertia_", "n_iter_", "algorithm_",
                 "n_features_in_", "feature_names_in_"):
        line = next(ln for ln in section.splitlines() if ln.startswith(attr))
        following = section.split(line, 1)[1].lstrip("\n")
        assert following.startswith("    "), f"{attr} has no description"
