"""Command-line entry point: ``cornernet-saccade <command> ...``.

Each command lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` to a callable ``(args) -> int`` (the exit code). This module only
collects them; the work happens in the library.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules of this package that define a command, in the order ``--help`` lists them.
COMMAND_MODULES = [
    "detect",
    "make_shapes",
    "make_trees",
    "check_data",
    "convert",
    "train",
    "evaluate",
    "analyze",
    "export_onnx",
    "export_weights",
]


def _version() -> str:
    """The installed distribution's version, else the package's ``__version__``."""
    from importlib import metadata

    try:
        return metadata.version("cornernet-saccade")
    except metadata.PackageNotFoundError:
        from cornernet_saccade import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cornernet-saccade",
        description="CornerNet-Saccade object detection: detect, train, evaluate, export.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from cornernet_saccade.errors import CornerNetSaccadeError

    try:
        return int(args.func(args) or 0)
    except CornerNetSaccadeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
