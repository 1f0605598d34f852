"""The ``fastkm`` command line (``python -m fastkm``) and its ``demo`` subcommand."""
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

from fastkm import cli, demo

TIMEOUT = 300


def run_cli(*args, cwd=None, code=None):
    """Run ``python -m fastkm ARGS`` (or ``python -c CODE ARGS``) with this interpreter
    and the caller's environment (PYTHONPATH unchanged)."""
    cmd = [sys.executable] + (["-c", code] if code else ["-m", "fastkm"]) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def assert_one_line_error(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fastkm: error: "), proc.stderr
    assert "Traceback" not in proc.stderr


def leftovers(directory):
    """Files the demo may have left in ``directory`` (the PNG or its temporary file)."""
    return sorted(n for n in os.listdir(directory) if n.endswith((".png", ".tmp")))


# --------------------------------------------------------------------------- usage

def test_help():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: fastkm")
    assert "demo" in proc.stdout


def test_demo_help(capsys):
    assert cli.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastkm demo")
    for option in ("--output", "--threads", "--seed"):
        assert option in out


def test_no_arguments_prints_usage_and_fails():
    proc = run_cli()
    assert proc.returncode != 0
    assert "usage: fastkm" in proc.stderr
    assert "fastkm: error:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_version(capsys):
    import fastkm

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fastkm {fastkm.__version__}"


@pytest.mark.parametrize("args", [
    ["nosuchcommand"],
    ["demo", "--threads", "0"],
    ["demo", "--threads", "two"],
    ["demo", "--seed", "-1"],
    ["demo", "--bogus"],
])
def test_bad_arguments(args, capsys):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: fastkm")
    assert lines[-1].startswith("fastkm: error: ")


def test_main_returns_zero_for_help(capsys):
    assert cli.main(["--help"]) == 0
    assert "usage: fastkm" in capsys.readouterr().out


# --------------------------------------------------------------------------- the demo

@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    pytest.importorskip("threadpoolctl")
    workdir = tmp_path_factory.mktemp("demo")
    out = workdir / "tmp.png"
    proc = run_cli("demo", "-o", "tmp.png", "--threads", "2", "--seed", "0", cwd=workdir)
    return proc, out


def test_demo_writes_png(demo_run):
    Image = pytest.importorskip("PIL.Image")
    proc, out = demo_run
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.stat().st_size > 0
    with Image.open(out) as im:
        assert im.format == "PNG"
        width, height = im.size
        assert width > 0 and height > 0
        im.load()  # the whole file decodes
    assert leftovers(out.parent) == ["tmp.png"]  # no temporary file left behind


def test_demo_prints_summary(demo_run):
    proc, out = demo_run
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "fastkm" in proc.stdout and "sklearn" in proc.stdout
    assert "2 threads" in lines[0]
    header = next(ln for ln in lines if ln.startswith("step "))
    for column in ("fastkm", "sklearn", "speed-up", "inertia", "accuracy"):
        assert column in header
    for name in ("blobs k=3", "blobs k=4", "digits k=10", "china.jpg 64 colors"):
        (line,) = [ln for ln in lines if ln.startswith(name)]
        cells = line[len(name):].split()
        assert re.fullmatch(r"\d+x\d+", cells[0])           # n x d
        assert re.search(r"(\d+\.\d\dx|busy \(\d+\.\dx\))", line)  # ratio or busy
        assert " / " in line                                  # both inertias
    assert max(len(ln) for ln in lines if not ln.startswith("wrote")) < 100
    assert lines[-1] == f"wrote {out}"


# --------------------------------------------------------------------------- errors

def test_output_parent_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = run_cli("demo", "-o", str(tmp_path / "afile" / "out.png"))
    assert_one_line_error(proc)
    assert leftovers(tmp_path) == []


def assert_one_line_error_in_process(code, capsys):
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("fastkm: error: "), err


def test_output_directory_missing(tmp_path, capsys):
    code = cli.main(["demo", "-o", str(tmp_path / "missing" / "out.png")])
    assert_one_line_error_in_process(code, capsys)
    assert os.listdir(tmp_path) == []


def test_output_is_a_directory(tmp_path, capsys):
    code = cli.main(["demo", "-o", str(tmp_path)])
    assert_one_line_error_in_process(code, capsys)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="needs POSIX permissions and a non-root user")
def test_output_directory_not_writable(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code = cli.main(["demo", "-o", str(locked / "out.png")])
        assert_one_line_error_in_process(code, capsys)
        assert os.listdir(locked) == []
    finally:
        locked.chmod(stat.S_IRWXU)


@pytest.mark.parametrize("missing", ["sklearn", "matplotlib", "threadpoolctl"])
def test_missing_optional_dependency(missing, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, missing, None)  # "import <missing>" raises ImportError
    code = cli.main(["demo", "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("fastkm: error: "), err
    assert 'pip install "fastkm[demo]"' in err
    assert {"sklearn": "scikit-learn"}.get(missing, missing) in err
    assert os.listdir(tmp_path) == []


def test_missing_dependency_error_from_python(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "fastkm\[demo\]"'):
        demo.run_demo("never-written.png")
    assert not os.path.exists("never-written.png")


def test_unexpected_error_is_one_line(monkeypatch, capsys):
    def boom(**kwargs):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(demo, "run_demo", boom)
    monkeypatch.delenv("FASTKM_TRACEBACK", raising=False)
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("fastkm: error: RuntimeError: something broke")


# --------------------------------------------------------------------------- pieces

def test_atomic_output_commit_and_discard(tmp_path):
    target = tmp_path / "out.png"
    out = demo._AtomicOutput(target)
    out.file.write(b"partial")
    assert not target.exists()
    out.discard()
    assert os.listdir(tmp_path) == []

    target.write_bytes(b"old")
    out = demo._AtomicOutput(str(target))
    out.file.write(b"new")
    assert target.read_bytes() == b"old"  # untouched until commit
    out.commit()
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.png"]
    if os.name == "posix":  # created like any file: 0o666 & ~umask, not mkstemp's 0o600
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_majority_accuracy():
    labels = np.array([0, 0, 1, 1, 1, 2])
    y = np.array([5, 5, 3, 3, 4, 4])
    acc, mapping = demo._majority_accuracy(labels, y, 3)
    assert acc == pytest.approx(5 / 6)
    assert list(mapping) == [5, 3, 4]


def _summary_result(**extra):
    step = dict(n_samples=10, n_features=2, n_clusters=3, fastkm_time=0.001, sklearn_time=0.004,
                speedup=4.0, spread=1.1, busy=False, fastkm_inertia=1.5, sklearn_inertia=1.5)
    return {"versions": {"fastkm": "0", "sklearn": "1"}, "n_threads": 1, "seed": 0,
            "steps": [dict(step, name="a"), dict(step, name="bb", fastkm_accuracy=1.0,
                                                 sklearn_accuracy=0.5, **extra)]}


def test_format_summary_one_row_per_step_under_100_columns():
    lines = demo.format_summary(_summary_result()).splitlines()
    assert len(lines) == 5 and lines[1] == ""
    assert "1 thread each" in lines[0]
    assert lines[3].startswith("a ") and "4.00x" in lines[3]
    assert lines[4].startswith("bb ") and "1.000/0.500" in lines[4]
    assert max(map(len, lines)) < 100


def test_format_summary_says_the_machine_is_busy_instead_of_a_ratio():
    lines = demo.format_summary(_summary_result(busy=True, spread=3.2)).splitlines()
    assert "busy (3.2x)" in lines[4] and "4.00x" not in lines[4]
    assert lines[-2].startswith("The machine looks busy: repeated timings of bb spread")
    assert max(map(len, lines)) < 100


def test_fit_timed_keeps_the_fastest_run_and_reports_the_spread():
    import itertools

    delays = itertools.cycle([0.02, 0.002, 0.002])

    class Model:
        def fit(self, X):
            import time

            time.sleep(next(delays))
            return self

    best, spread, model = demo._fit_timed(Model, None)
    assert isinstance(model, Model)
    assert 0.002 <= best < 0.015 and spread > 1.3
