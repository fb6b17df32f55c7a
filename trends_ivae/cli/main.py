"""``trends-ivae``: the command-line entry point.

Each subcommand lives in its own module of :mod:`trends_ivae.cli` and exposes
``add_parser(subparsers)`` and ``run(args, parser) -> int`` (the exit code). The modules
import only argparse helpers at import time; numpy, nilearn and the workflows load in
``run``, after parsing, so ``--help`` is fast. torch is imported only by the commands
that train (``fit``, ``demo``; ``fit --device`` to check the device): ``prepare``,
``simulate`` and ``report`` never load it (``tests/test_cli_imports.py``).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .._version import __version__

#: subcommand name -> module under trends_ivae.cli
SUBCOMMANDS = {
    "prepare": "prepare",
    "fit": "fit",
    "simulate": "simulate",
    "demo": "demo",
    "report": "report",
    "sample": "sample",
    "label": "label",
    "denoise": "denoise",
    "stats": "stats",
    "analyze": "analyze",
}


def _available_subcommands() -> dict:
    return {name: importlib.import_module(f"trends_ivae.cli.{module}") for name, module in SUBCOMMANDS.items()}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The ``trends-ivae`` parser, and its subcommand modules by name."""
    parser = argparse.ArgumentParser(
        prog="trends-ivae",
        description="Identifiable nonlinear ICA (iVAE) for fMRI.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = _available_subcommands()
    for module in modules.values():
        module.add_parser(subparsers)
    return parser, modules


def format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one readable line (no source excerpt) on the command line."""
    return f"trends-ivae: {category.__name__}: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trends-ivae`` with ``argv`` (``sys.argv[1:]`` when None); return the exit code."""
    import warnings

    warnings.formatwarning = format_warning
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    code = int(modules[args.command].run(args, parser) or 0)
    _exit_if_distributed(code)
    return code


def _exit_if_distributed(code: int) -> None:
    """End a torchrun rank now, skipping the interpreter's teardown.

    After a Gloo process group (``fit --distributed``), about one run in twenty aborted
    at interpreter exit, after every output was written and the group destroyed
    ("terminate called without an active exception", a native thread still joinable
    when its destructor ran), and torchrun then reported the whole job as failed. The
    outputs are complete and flushed at this point, so the process exits directly. A
    command that never imported :mod:`trends_ivae.estimators.distributed` used no group (and so
    does not load torch here).
    """
    distributed = sys.modules.get("trends_ivae.estimators.distributed")
    if distributed is not None and distributed.group_was_used():
        import logging
        import os

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
