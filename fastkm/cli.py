"""The ``fastkm`` command line (also ``python -m fastkm``).

    fastkm demo [-o OUT.png] [--threads N] [--seed S]

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
        raise argparse.ArgumentTypeError(f"must be an int in [0, 2**32 - 1]; got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an int in [0, 2**32 - 1]; got {value}")
    return value


def _add_threads_option(parser):
    parser.add_argument(
        "--threads", "-j", type=_threads, default=None, metavar="N",
        help="threads for fastkm and for scikit-learn (default: OpenMP's maximum, "
             "i.e. OMP_NUM_THREADS or all CPUs; -1: all CPUs)",
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


# To add a subcommand, write its _<name>_arguments / _<name>_run and list it here.
COMMANDS = (
    _Command(
        "demo",
        "cluster blobs, digits and china.jpg (the 'Color Compression using K-Means' "
        "notebook) with fastkm and scikit-learn; write a PNG and print timings",
        _demo_arguments,
        _demo_run,
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
