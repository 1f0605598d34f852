"""The ``fastkm`` command line (also ``python -m fastkm``).

    fastkm demo [-o OUT.png] [--threads N] [--seed S]
    fastkm quantize INPUT... -k N (-o OUTPUT | --out-dir DIR) [--dither]
                    [--color-space {rgb,oklab,lab}] [--preset {default,fast,converged}]
                    [--shared-palette] [--report] [--format {png,gif}] [--threads N] [--seed S]

Each subcommand is one ``_Command``: a name, a one-line help, a function that
adds its arguments to its sub-parser and a function that runs it and returns an
exit code. Adding a subcommand (e.g. ``quantize``) means writing those two
functions and listing the command in ``COMMANDS``.

Errors the user can act on (a missing optional dependency, an output path that
cannot be written, a bad argument) are reported as one line on stderr,
``fastkm: error: ...``, with exit code 2 and no traceback.
"""
import argparse
import os
import sys
from typing import Callable, NamedTuple

PROG = "fastkm"
EXIT_OK = 0
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """An error reported as ``fastkm: error: <message>`` with exit code 2."""


class _Command(NamedTuple):
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but every usage error ends in ``fastkm: error: ...`` (not
    ``fastkm demo: error: ...``), like the other errors of the command line."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{PROG}: error: {_one_line(message)}\n")


# --------------------------------------------------------------------------- argument types

def _threads(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive int or -1; got {text!r}") from None
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be a positive int or -1; got {value}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an int in [0, 2**32 - 1]; got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an int in [0, 2**32 - 1]; got {value}")
    return value


def _add_threads_option(parser):
    parser.add_argument(
        "--threads", "-j", type=_threads, default=None, metavar="N",
        help="threads for fastkm and for scikit-learn (default: OMP_NUM_THREADS, or the "
             "CPUs this process may use capped by its cgroup quota; -1: all CPUs)",
    )


# --------------------------------------------------------------------------- demo

def _demo_arguments(parser):
    parser.add_argument(
        "-o", "--output", default="fastkm-demo.png", metavar="OUT.png",
        help="where to write the figure (default: %(default)s)",
    )
    _add_threads_option(parser)
    parser.add_argument("--seed", type=_seed, default=0, metavar="S",
                        help="random_state of every fit (default: %(default)s)")


def _demo_run(args):
    from fastkm import demo

    try:
        result = demo.run_demo(out_path=args.output, n_threads=args.threads, seed=args.seed)
    except demo.DemoError as e:
        raise CLIError(str(e)) from e
    print(result["summary"])
    print(f"wrote {result['out_path']}")
    return EXIT_OK


# --------------------------------------------------------------------------- quantize

MAX_INDEXED_COLORS = 256  # PNG and GIF palettes
OUTPUT_FORMATS = {".png": "PNG", ".gif": "GIF"}


def _quantize_arguments(parser):
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files (any format and mode Pillow reads)")
    parser.add_argument("-k", "--colors", type=int, required=True, metavar="N",
                        help=f"palette size, 1..{MAX_INDEXED_COLORS}")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", metavar="OUTPUT",
                       help="output file (one INPUT); .png or .gif")
    where.add_argument("--out-dir", metavar="DIR",
                       help="output directory (created if missing); files keep their "
                            "name with the --format extension")
    parser.add_argument("--format", choices=("png", "gif"), default="png",
                        help="format of the files written to --out-dir (default: %(default)s)")
    parser.add_argument("--dither", action="store_true",
                        help="Floyd-Steinberg error diffusion")
    parser.add_argument("--color-space", choices=("rgb", "oklab", "lab"), default="rgb",
                        help="space of the clustering (default: %(default)s)")
    parser.add_argument("--preset", choices=("default", "fast", "converged"), default="default",
                        help="speed/quality trade-off (default: %(default)s)")
    parser.add_argument("--shared-palette", action="store_true",
                        help="one palette for all inputs (animations, sprite sheets, batches)")
    parser.add_argument("--report", action="store_true",
                        help="end with a table of every file and the totals")
    parser.add_argument("--threads", "-j", type=_threads, default=None, metavar="N",
                        help="threads (default: OMP_NUM_THREADS, or the CPUs this process may "
                             "use capped by its cgroup quota; -1: all CPUs)")
    parser.add_argument("--seed", type=_seed, default=0, metavar="S",
                        help="random_state of k-means++ (default: %(default)s)")


def _fmt_size(n):
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024**2:.2f} MB"


def _input_error(path, e):
    """A short description of why an input image cannot be used."""
    from PIL import Image

    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, Image.UnidentifiedImageError):
        return "not an image Pillow can read (corrupt or unsupported format)"
    if isinstance(e, Image.DecompressionBombError):
        return f"refused: {e}"
    if isinstance(e, (OSError, SyntaxError, EOFError)):  # Pillow decoders: truncated, corrupt
        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        return f"corrupt or unreadable image: {_one_line(why)}"
    return _one_line(e)


def _plan_outputs(args):
    """(input, output, format) for every input; raises CLIError for an unusable
    output (before any work is done)."""
    if args.output is not None:
        if len(args.inputs) != 1:
            raise CLIError(f"-o/--output takes exactly one INPUT (got {len(args.inputs)}); "
                           "use --out-dir for several")
        out = os.path.abspath(args.output)
        ext = os.path.splitext(out)[1].lower()
        if ext not in OUTPUT_FORMATS:
            raise CLIError(f"{args.output}: unsupported output format "
                           f"{ext or '(no extension)'!r}; use .png or .gif")
        if os.path.isdir(out):
            raise CLIError(f"cannot write {args.output}: it is a directory")
        parent = os.path.dirname(out)
        if not os.path.isdir(parent):
            why = "is not a directory" if os.path.exists(parent) else "does not exist"
            raise CLIError(f"cannot write {args.output}: {parent} {why}")
        return [(args.inputs[0], out, OUTPUT_FORMATS[ext])]
    out_dir = os.path.abspath(args.out_dir)
    if not os.path.isdir(out_dir):
        if os.path.exists(out_dir):
            raise CLIError(f"cannot write to {args.out_dir}: it is not a directory")
        try:
            os.makedirs(out_dir)
        except OSError as e:
            raise CLIError(f"cannot create {args.out_dir}: {e.strerror or e}") from e
    ext = "." + args.format
    return [(src, os.path.join(out_dir, os.path.splitext(os.path.basename(src))[0] + ext),
             OUTPUT_FORMATS[ext]) for src in args.inputs]


def _shown(path):
    """``path`` relative to the working directory when it lies below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


class _Progress:
    """A tqdm bar on stderr for batches when tqdm is installed (and stderr is a
    terminal); otherwise plain printing."""

    def __init__(self, total, desc):
        self.bar = None
        if total > 1:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, unit="file", file=sys.stderr,
                                disable=None, leave=False, dynamic_ncols=True)

    def write(self, line, file=None):
        file = file or sys.stdout
        if self.bar is not None:
            self.bar.write(line, file=file)
        else:
            print(line, file=file, flush=True)

    def update(self):
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _quantize_run(args):
    import time

    from fastkm import image as fq

    if not 1 <= args.colors <= MAX_INDEXED_COLORS:
        raise CLIError(f"-k/--colors must be in 1..{MAX_INDEXED_COLORS} for PNG and GIF "
                       f"output; got {args.colors}")
    jobs = _plan_outputs(args)
    failures = 0
    rows = []
    progress = _Progress(len(jobs), "quantize")
    seen = {}

    def fail(message):
        nonlocal failures
        failures += 1
        progress.write(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)

    def load(src):
        t0 = time.perf_counter()
        try:
            pixels = fq.open_image(src)
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            fail(f"{src}: {_input_error(src, e)}")
            return None, 0.0
        return pixels, time.perf_counter() - t0

    try:
        palette = None
        loaded = {}
        if args.shared_palette:
            good = []
            for src, _, _ in jobs:
                pixels, t_load = load(src)
                if pixels is not None:
                    loaded[src] = (pixels, t_load)
                    good.append(pixels)
            if good:
                t0 = time.perf_counter()
                palette = fq.Palette.fit(good, args.colors, color_space=args.color_space,
                                         preset=args.preset, random_state=args.seed,
                                         n_threads=args.threads)
                progress.write(f"shared palette: {len(palette)} colors from {len(good)} "
                               f"image{'s' if len(good) != 1 else ''} in "
                               f"{(time.perf_counter() - t0) * 1e3:.0f} ms")
            del good
        for src, out, fmt in jobs:
            try:
                if out in seen:
                    fail(f"{src}: output {out} would overwrite the output of {seen[out]}")
                    continue
                if os.path.exists(src) and os.path.exists(out) and os.path.samefile(src, out):
                    fail(f"{src}: the output would overwrite the input")
                    continue
                seen[out] = src
                if args.shared_palette:
                    if src not in loaded:
                        continue  # already reported
                    pixels, t_load = loaded.pop(src)
                else:
                    pixels, t_load = load(src)
                    if pixels is None:
                        continue
                t0 = time.perf_counter()
                if palette is not None:
                    result = palette.quantize(pixels, dither=args.dither, n_threads=args.threads)
                else:
                    result = fq.quantize(pixels, args.colors, color_space=args.color_space,
                                         dither=args.dither, preset=args.preset,
                                         random_state=args.seed, n_threads=args.threads)
                t_quantize = time.perf_counter() - t0
                del pixels
                t0 = time.perf_counter()
                try:
                    result.save(out, format=fmt)
                except OSError as e:
                    fail(f"{src}: cannot write {out}: {e.strerror or e}")
                    continue
                t_save = time.perf_counter() - t0
                size_in, size_out = os.path.getsize(src), os.path.getsize(out)
                row = {
                    "input": src, "output": out, "size_in": size_in, "size_out": size_out,
                    "colors": result.n_colors, "psnr": result.psnr, "delta_e": result.delta_e,
                    "t_load": t_load, "t_quantize": t_quantize, "t_save": t_save,
                }
                rows.append(row)
                progress.write(
                    f"{src} -> {_shown(out)}: {_fmt_size(size_in)} -> {_fmt_size(size_out)} "
                    f"({100.0 * size_out / max(size_in, 1):.0f}%), {result.n_colors} colors, "
                    f"PSNR {row['psnr']:.2f} dB, dE2000 {row['delta_e']:.2f}, "
                    f"{t_quantize * 1e3:.0f} ms")
            finally:
                progress.update()
    finally:
        progress.close()
    if args.report and rows:
        print(_quantize_report(rows, failures))
    return EXIT_ERROR if failures else EXIT_OK


def _quantize_report(rows, failures):
    lines = [
        "",
        "| input | output | size before | size after | ratio | colors | PSNR (dB) | "
        "mean dE2000 | load | quantize | save |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['input']} | {os.path.basename(r['output'])} | {_fmt_size(r['size_in'])} | "
            f"{_fmt_size(r['size_out'])} | {100.0 * r['size_out'] / max(r['size_in'], 1):.0f}% | "
            f"{r['colors']} | {r['psnr']:.2f} | {r['delta_e']:.2f} | {r['t_load'] * 1e3:.0f} ms | "
            f"{r['t_quantize'] * 1e3:.0f} ms | {r['t_save'] * 1e3:.0f} ms |")
    total_in = sum(r["size_in"] for r in rows)
    total_out = sum(r["size_out"] for r in rows)
    finite = [r["psnr"] for r in rows if r["psnr"] != float("inf")]
    mean_psnr = f"{sum(finite) / len(finite):.2f}" if finite else "inf"
    lines.append(
        f"| **{len(rows)} written, {failures} failed** | | {_fmt_size(total_in)} | "
        f"{_fmt_size(total_out)} | {100.0 * total_out / max(total_in, 1):.0f}% | | {mean_psnr} | "
        f"{sum(r['delta_e'] for r in rows) / len(rows):.2f} | "
        f"{sum(r['t_load'] for r in rows) * 1e3:.0f} ms | "
        f"{sum(r['t_quantize'] for r in rows) * 1e3:.0f} ms | "
        f"{sum(r['t_save'] for r in rows) * 1e3:.0f} ms |")
    return "\n".join(lines)


# To add a subcommand, write its _<name>_arguments / _<name>_run and list it here.
COMMANDS = (
    _Command(
        "demo",
        "cluster blobs, digits and china.jpg (the 'Color Compression using K-Means' "
        "notebook) with fastkm and scikit-learn; write a PNG and print timings",
        _demo_arguments,
        _demo_run,
    ),
    _Command(
        "quantize",
        "reduce images to at most N colors by k-means and write indexed PNG or GIF files",
        _quantize_arguments,
        _quantize_run,
    ),
)


# --------------------------------------------------------------------------- parser and main

def build_parser():
    from fastkm import __version__

    parser = _ArgumentParser(
        prog=PROG,
        description="fastkm: fast exact K-Means (Cython + OpenMP).",
    )
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def _one_line(text):
    return " ".join(str(text).split()) or "unknown error"


def _error(message):
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def _os_error_message(e):
    if e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return e.strerror or str(e)


def main(argv=None):
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors: argparse already printed
        if e.code is None:
            return EXIT_OK
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    if args.command is None:
        parser.print_usage(sys.stderr)
        names = ", ".join(cmd.name for cmd in COMMANDS)
        return _error(f"a command is required (choose from {names}; see '{PROG} --help')")
    try:
        return args._run(args)
    except CLIError as e:
        return _error(e)
    except ImportError as e:  # optional dependencies
        return _error(e)
    except OSError as e:
        return _error(_os_error_message(e))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug: still one line, but say what it was
        if os.environ.get("FASTKM_TRACEBACK"):
            raise
        return _error(f"{type(e).__name__}: {e} (set FASTKM_TRACEBACK=1 for the traceback)")
