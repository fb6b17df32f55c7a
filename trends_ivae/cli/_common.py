"""Helpers shared by the subcommands: argument types, logging, refusing to overwrite."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP_FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--force`` and ``-v``, as every writing subcommand has them."""
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more progress output (-v, -vv)")


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def existing_file(parser: argparse.ArgumentParser, path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path, or stop with ``parser.error`` naming ``what``."""
    p = Path(path)
    if not p.is_file():
        parser.error(f"{what} {str(p)!r} does not exist or is not a file")
    return p


def existing_dir(parser: argparse.ArgumentParser, path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        parser.error(f"{what} {str(p)!r} does not exist or is not a directory")
    return p
