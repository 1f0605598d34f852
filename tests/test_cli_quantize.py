"""``fastkm quantize``: indexed PNG/GIF output, batches, shared palettes, and every
failure path (one line per problem, no traceback, no partial output)."""
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from fastkm import cli

Image = pytest.importorskip("PIL.Image")

TIMEOUT = 300


def run_cli(*args, cwd=None):
    """``python -m fastkm ARGS`` with this interpreter and the caller's environment."""
    cmd = [sys.executable, "-m", "fastkm"] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def error_lines(proc_or_err):
    err = proc_or_err if isinstance(proc_or_err, str) else proc_or_err.stderr
    assert "Traceback" not in err, err
    return [ln for ln in err.strip().splitlines() if ln]


def leftovers(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


def photo(h=60, w=80, seed=0):
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 100 * np.sin(x / 9.0), 128 + 90 * np.cos(y / 7.0),
                    128 + 80 * np.sin((x + y) / 11.0)], axis=2)
    img += rng.normal(scale=5.0, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture
def images(tmp_path):
    """Good and bad inputs in tmp_path/in."""
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(photo()).save(d / "good.png")
    Image.fromarray(photo(seed=1)).save(d / "good2.jpg", quality=90)
    rgba = np.dstack([photo(seed=2), np.full((60, 80), 255, np.uint8)])
    rgba[:20, :, 3] = 0
    Image.fromarray(rgba).save(d / "alpha.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    full = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(full[: len(full) // 2])
    (d / "notes.txt").write_text("not an image\n")
    (d / "folder.png").mkdir()
    return d


# --------------------------------------------------------------------------- success

def test_single_file_to_png(images, tmp_path):
    out = tmp_path / "out.png"
    proc = run_cli("quantize", images / "good.png", "-k", 16, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    (line,) = proc.stdout.strip().splitlines()
    assert "good.png" in line and str(out) in line
    for part in (" KB", "->", "16 colors", "PSNR", " dB", "dE2000", " ms"):
        assert part in line, line
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "P"
        assert len(im.getcolors()) <= 16
        assert im.size == (80, 60)
    assert leftovers(tmp_path) == []


def test_gif_keeps_transparency(images, tmp_path):
    out = tmp_path / "out.gif"
    proc = run_cli("quantize", images / "alpha.png", "--colors", 8, "-o", out, "--dither")
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        assert im.format == "GIF"
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
    assert np.all(alpha[:20] == 0) and np.all(alpha[20:] == 255)


def test_batch_with_bad_inputs(images, tmp_path):
    """The good files are written, each bad one gets one line naming it, exit 2."""
    out_dir = tmp_path / "out"
    names = ["good.png", "missing.png", "corrupt.png", "good2.jpg", "truncated.png",
             "notes.txt", "folder.png", "alpha.png"]
    proc = run_cli("quantize", *[images / n for n in names], "-k", 8, "--out-dir", out_dir,
                   "--report")
    assert proc.returncode == 2
    lines = error_lines(proc)
    bad = {"missing.png": "no such file", "corrupt.png": "", "truncated.png": "",
           "notes.txt": "not an image", "folder.png": "is a directory"}
    assert len(lines) == len(bad), proc.stderr
    for name, why in bad.items():
        (line,) = [ln for ln in lines if name in ln]
        assert line.startswith("fastkm: error: ") and why in line, line
    assert sorted(os.listdir(out_dir)) == ["alpha.png", "good.png", "good2.png"]
    ok = [ln for ln in proc.stdout.splitlines() if " -> " in ln and "PSNR" in ln]
    assert len(ok) == 3
    assert "| **3 written, 5 failed** |" in proc.stdout
    assert leftovers(out_dir) == []


def test_shared_palette(images, tmp_path):
    out_dir = tmp_path / "out"
    proc = run_cli("quantize", images / "good.png", images / "good2.jpg", "-k", 12,
                   "--out-dir", out_dir, "--shared-palette", "--format", "gif")
    assert proc.returncode == 0, proc.stderr
    assert "shared palette: 12 colors from 2 images" in proc.stdout
    palettes = []
    for name in ("good.gif", "good2.gif"):
        with Image.open(out_dir / name) as im:
            palettes.append(im.convert("RGB").getcolors())
    colors = [{c for _, c in p} for p in palettes]
    assert len(colors[0] | colors[1]) <= 12


def test_same_bytes_for_any_thread_count(images, tmp_path):
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"out{threads}.png"
        proc = run_cli("quantize", images / "good2.jpg", "-k", 32, "-o", out, "-j", threads,
                       "--color-space", "oklab", "--dither", "--seed", 3)
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


# --------------------------------------------------------------------------- failures

@pytest.mark.parametrize("k", [0, 257])
def test_colors_out_of_range(images, tmp_path, k):
    proc = run_cli("quantize", images / "good.png", "-k", k, "-o", tmp_path / "out.png")
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert line.startswith("fastkm: error: ") and "1..256" in line and str(k) in line
    assert not (tmp_path / "out.png").exists()


def test_unwritable_output(images, tmp_path):
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "out.png"
    proc = run_cli("quantize", images / "good.png", "-k", 8, "-o", target)
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert "cannot write" in line and "out.png" in line
    proc = run_cli("quantize", images / "good.png", "-k", 8, "--out-dir", tmp_path / "afile")
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert "afile" in line and "not a directory" in line
    assert sorted(os.listdir(tmp_path)) == ["afile", "in"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="needs POSIX permissions and a non-root user")
def test_unreadable_input_and_unwritable_directory(images, tmp_path):
    locked_in = images / "good.png"
    locked_in.chmod(0)
    locked_out = tmp_path / "locked"
    locked_out.mkdir()
    locked_out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        proc = run_cli("quantize", locked_in, images / "good2.jpg", "-k", 8,
                       "--out-dir", locked_out)
        assert proc.returncode == 2
        lines = error_lines(proc)
        assert len(lines) == 2
        assert any("good.png" in ln and "permission denied" in ln for ln in lines)
        assert any("good2.jpg" in ln and "cannot write" in ln for ln in lines)
        assert os.listdir(locked_out) == []
    finally:
        locked_in.chmod(stat.S_IRUSR | stat.S_IWUSR)
        locked_out.chmod(stat.S_IRWXU)


# --------------------------------------------------------------------------- in process

def one_error(code, capsys):
    assert code == 2
    out, err = capsys.readouterr()
    (line,) = error_lines(err)
    assert line.startswith("fastkm: error: ")
    return line


def test_output_needs_one_input(images, tmp_path, capsys):
    line = one_error(cli.main(["quantize", str(images / "good.png"), str(images / "good2.jpg"),
                               "-k", "4", "-o", str(tmp_path / "o.png")]), capsys)
    assert "exactly one INPUT" in line


def test_unsupported_output_extension(images, tmp_path, capsys):
    line = one_error(cli.main(["quantize", str(images / "good.png"), "-k", "4", "-o",
                               str(tmp_path / "o.jpg")]), capsys)
    assert "o.jpg" in line and ".png or .gif" in line
    assert os.listdir(tmp_path) == ["in"]


def test_never_overwrites_an_input(images, capsys):
    before = (images / "good.png").read_bytes()
    line = one_error(cli.main(["quantize", str(images / "good.png"), "-k", "4",
                               "--out-dir", str(images)]), capsys)
    assert "overwrite the input" in line
    assert (images / "good.png").read_bytes() == before


def test_duplicate_output_names(images, tmp_path, capsys):
    Image.fromarray(photo()).save(images / "good.gif")
    code = cli.main(["quantize", str(images / "good.png"), str(images / "good.gif"), "-k", "4",
                     "--out-dir", str(tmp_path / "out")])
    line = one_error(code, capsys)
    assert "good.gif" in line and "would overwrite the output" in line
    assert os.listdir(tmp_path / "out") == ["good.png"]


def test_missing_output_option(images, capsys):
    assert cli.main(["quantize", str(images / "good.png"), "-k", "4"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("fastkm: error: ")


def test_help_lists_quantize(capsys):
    assert cli.main(["--help"]) == 0
    assert "quantize" in capsys.readouterr().out
    assert cli.main(["quantize", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--colors", "--out-dir", "--dither", "--color-space", "--shared-palette",
                   "--report", "--preset"):
        assert option in out


@pytest.mark.parametrize("have_tqdm", [True, False])
def test_progress_bar_optional(images, tmp_path, monkeypatch, capsys, have_tqdm):
    if have_tqdm:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # "from tqdm import tqdm" fails
    code = cli.main(["quantize", str(images / "good.png"), str(images / "good2.jpg"), "-k", "4",
                     "--out-dir", str(tmp_path / "out"), "--preset", "fast"])
    assert code == 0
    out, err = capsys.readouterr()
    assert len([ln for ln in out.splitlines() if "PSNR" in ln]) == 2
    assert "Traceback" not in err
