"""Helpers shared by the subcommands: argument types, logging, refusing to overwrite.

The checks themselves are :mod:`trends_ivae.workflow.checks` (typed values, shared with
the pipelines and the Nipype node); here they stop with ``parser.error``.

The option groups that several commands share, and argv -> settings, are in
:mod:`trends_ivae.cli.options`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

class HELP_FORMATTER(argparse.ArgumentDefaultsHelpFormatter):  # noqa: N801 - used as a constant
    """argparse's defaults formatter, without "(default: None)": an option without a default says so
    in its help, or has none to say.

    A flag (``store_true`` / ``store_false``) shows no "(default: ...)": the value is that of
    its destination, not of the flag, so ``--no-report`` would read "(default: True)". A flag
    whose value is its destination's default (``--nonlinear`` beside ``--linear``) says
    "(the default)".
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._StoreConstAction) and action.nargs == 0:  # noqa: SLF001
            text = action.help or ""
            if action.default == action.const and action.default is not None:
                text += " (the default)"
            return text
        if action.default is None:
            return action.help or ""
        return super()._get_help_string(action)


class Default(str):
    """A string option's default value, told apart from the same value typed by the user.

    ``parser.set_defaults(aux=Default("task+window"))``: ``isinstance(args.aux, Default)``
    then says that the user did not choose it, so the workflow may choose better for the
    data and say so (``PrepareRequest.choose_aux``); ``--help`` shows it as the plain string.
    """


def count_or_auto(text: str) -> int | str:
    """argparse type of ``--n-components`` / ``--n-dims``: a positive count or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None


def is_auto(value) -> bool:
    """True for ``auto`` (a count estimated from the data)."""
    return isinstance(value, str) and value.lower() == "auto"


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--force`` and ``-v``, as every writing subcommand has them."""
    parser.add_argument("--force", action="store_true",
                        help="replace the tool's own earlier outputs (a file it did not write is never "
                             "replaced)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more progress output (-v, -vv)")


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    """``-q``: no progress bars (they are shown only when stderr is a terminal anyway)."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars (shown only when stderr is a terminal)")


def wants_progress(args: argparse.Namespace) -> bool:
    """Progress bars: on a terminal (stderr), unless ``-q``."""
    return not args.quiet and sys.stderr.isatty()


def training_verbosity(args: argparse.Namespace) -> int:
    """The ``verbose`` the iVAE trains with: ``-v`` as given; else 1 (a bar) on a terminal, 0 otherwise."""
    if args.verbose > 0:
        return args.verbose
    return 1 if wants_progress(args) else 0


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def parser_checked(parser: argparse.ArgumentParser, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``check(*args, **kwargs)`` (one of :mod:`trends_ivae.workflow.checks`), its
    :class:`~trends_ivae.workflow.checks.OptionError` stopping with ``parser.error`` (exit code 2)."""
    from ..workflow.checks import OptionError

    try:
        return check(*args, **kwargs)
    except OptionError as exc:
        parser.error(str(exc))


def existing_file(parser: argparse.ArgumentParser, path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path, or stop with ``parser.error`` naming ``what``."""
    from ..workflow import checks

    return parser_checked(parser, checks.existing_file, path, what)


def existing_dir(parser: argparse.ArgumentParser, path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path, or stop with ``parser.error`` naming ``what``."""
    from ..workflow import checks

    return parser_checked(parser, checks.existing_dir, path, what)


def check_writable(parser: argparse.ArgumentParser, folder: str | Path, what: str) -> None:
    """Stop with ``parser.error`` unless files can be created in ``folder`` (or where it will be made;
    :func:`trends_ivae.workflow.checks.check_writable`)."""
    from ..workflow import checks

    parser_checked(parser, checks.check_writable, folder, what)


def refuse_foreign_files(parser: argparse.ArgumentParser, out_dir: Path,
                         within: list[str] | None = None) -> None:
    """Stop (``parser.error``) when ``--force`` would replace a folder holding files the tool did
    not write: they are named, and nothing is deleted (``within``: only these parts of it)."""
    from ..workflow import checks

    parser_checked(parser, checks.check_foreign_files, out_dir, within)
