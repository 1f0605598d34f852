"""The package's structure stays consistent: the build and the dispatcher agree
on the per-ISA modules, every compiled module is built, and importing fastkm
(or quantizing an image, or asking the CLI for help) never imports
scikit-learn, scipy or dask."""
import ast
import glob
import os
import subprocess
import sys

import pytest

import fastkm
from fastkm import _dispatch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastkm.__file__)))


def _setup_list(name):
    with open(os.path.join(ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in setup.py")


def test_setup_and_dispatch_list_the_same_hot_modules():
    assert tuple(_setup_list("HOT_MODULES")) == _dispatch.HOT


def test_every_pyx_is_built():
    modules = set(_setup_list("MODULES"))
    found = {os.path.relpath(p, ROOT)[:-4].replace(os.sep, "/")
             for p in glob.glob(os.path.join(ROOT, "fastkm", "**", "*.pyx"), recursive=True)}
    assert found == modules
    for name in _dispatch.HOT:
        assert f"fastkm/_kernels/{name}" in modules


def _run(code):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


HEAVY = ("sklearn", "scipy", "dask", "distributed", "pandas", "matplotlib")


def test_import_fastkm_is_light():
    out = _run("import sys, fastkm; print(sorted(m for m in sys.modules "
               f"if m.split('.')[0] in {HEAVY!r}))")
    assert out.strip() == "[]"


def test_quantize_and_dense_fits_never_import_scikit_learn():
    pytest.importorskip("PIL")
    code = (
        "import sys, numpy as np, fastkm\n"
        "img = (np.random.RandomState(0).rand(60, 80, 3) * 255).astype(np.uint8)\n"
        "q = fastkm.quantize(img, 16); q.psnr\n"
        "fastkm.Palette.fit([img], 8).quantize(img, dither=True)\n"
        "fastkm.kmeans_plusplus(np.random.rand(500, 3), 4, random_state=0)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    assert _run(code).strip() == "[]"


def test_cli_help_never_imports_scikit_learn():
    code = ("import sys, contextlib, io\nfrom fastkm import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        cli.main(['--help'])\n    except SystemExit:\n        pass\n"
            "    try:\n        cli.main(['quantize', '--help'])\n    except SystemExit:\n"
            "        pass\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n")
    assert _run(code).strip() == "[]"


def test_kmeans_is_a_scikit_learn_estimator_when_it_is_installed():
    sklearn_base = pytest.importorskip("sklearn.base")
    from fastkm import KMeans

    assert isinstance(KMeans(), sklearn_base.BaseEstimator)
    assert "KMeans" in dir(fastkm) and fastkm.k_means is not None
