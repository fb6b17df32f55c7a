#!/usr/bin/env python
"""Group iVAE analysis driven by one TOML file -- a readable GIFT batch file.

Usage::

    python pipelines/group_ivae.py pipelines/configs/task_study.toml
    python pipelines/group_ivae.py study.toml --out results/ --force --set model.n_components=12

The TOML file has these sections (every key optional unless marked; paths are relative
to the TOML file; see ``pipelines/configs/`` and ``docs/pipelines.md``)::

    [input]      bids = "DIR" (+ task, session, runs, participant_label, space)
                 | func = ["glob", ...] (+ events, confounds_files: globs, sorted like func;
                   subjects = [...]; participants = "participants.tsv")
    [mask]       file = "brain.nii.gz"
    [cleaning]   tr, confounds = [...], detrend, standardize, high_pass, low_pass, smoothing_fwhm
    [u]          aux = "task+window", combine = "concat"|"product", window, step,
                 hrf_delay, min_event_duration
    [reduction]  n_dims, whiten, n_keep, subject_dims, n_jobs
    [model]      n_components, prior, n_init, seed, max_epochs, batch_size
    [compute]    device = "auto"|"cpu"|"cuda"
    [output]     dir (required here or by --out), layout = "bids"|"melodic"|"gift", force, keep_prepared, report

An unknown section or key is an error naming it and the nearest valid one. Each key is
an option of ``trends-ivae fit`` (``--dry-run`` prints that command): the configuration
becomes a :class:`trends_ivae.workflow.FitOptions`, checked as the command checks its
options, so every option has the meaning and the checks documented in ``docs/cli.md``;
the fit then runs in-process through :func:`trends_ivae.workflow.fit_to_folder`.
"""
from __future__ import annotations

import argparse
import difflib
import glob
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

#: section -> key -> (fit option or None, kind); kind: "path", "paths", "glob", "list", "flag", "value"
SCHEMA: dict[str, dict[str, tuple[str | None, str]]] = {
    "input": {"bids": ("--bids", "path"), "task": ("--task", "value"), "session": ("--session", "value"),
              "runs": ("--run", "list"), "participant_label": ("--participant-label", "list"),
              "space": ("--space", "value"), "func": ("--func", "glob"), "events": ("--events", "glob"),
              "confounds_files": ("--confounds-file", "glob"), "subjects": ("--subject", "list"),
              "participants": ("--participants", "path")},
    "mask": {"file": ("--mask", "path")},
    "cleaning": {"tr": ("--tr", "value"), "confounds": ("--confounds", "list"),
                 "detrend": ("--detrend", "bool"), "standardize": ("--standardize", "flag"),
                 "high_pass": ("--high-pass", "value"), "low_pass": ("--low-pass", "value"),
                 "smoothing_fwhm": ("--smoothing-fwhm", "value")},
    "u": {"aux": ("--aux", "value"), "combine": ("--aux-combine", "value"), "window": ("--window", "value"),
          "step": ("--step", "value"), "hrf_delay": ("--hrf-delay", "value"),
          "min_event_duration": ("--min-event-duration", "value")},
    "reduction": {"n_dims": ("--n-dims", "value"), "whiten": ("--whiten", "flag"),
                  "n_keep": ("--n-keep", "value"), "subject_dims": ("--subject-dims", "value"),
                  "n_jobs": ("--n-jobs", "value")},
    "model": {"n_components": ("--n-components", "value"), "prior": ("--prior", "value"),
              "n_init": ("--n-init", "value"), "seed": ("--seed", "value"),
              "max_epochs": ("--max-epochs", "value"), "batch_size": ("--batch-size", "value")},
    "compute": {"device": ("--device", "value")},
    "output": {"dir": ("--out", "path"), "layout": ("--layout", "value"), "force": ("--force", "flag"),
               "keep_prepared": ("--no-keep-prepared", "negflag"), "report": ("--no-report", "negflag")},
}


class ConfigError(ValueError):
    """A bad configuration file; the message names the file, the key and the fix."""


def _nearest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(sorted(choices))}"


def check_config(config: dict, source: str = "<config>") -> None:
    """Raise :class:`ConfigError` for unknown sections/keys (naming the nearest valid one) or wrong types."""
    for section, table in config.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}]{_nearest(section, SCHEMA)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {section} must be a [{section}] table")
        for key, value in table.items():
            if key not in SCHEMA[section]:
                everywhere = [f"{s}.{k}" for s in SCHEMA for k in SCHEMA[s]]
                hint = _nearest(key, SCHEMA[section])
                if "did you mean" not in hint:
                    hint = _nearest(f"{section}.{key}", everywhere)
                raise ConfigError(f"{source}: unknown key {section}.{key}{hint}")
            kind = SCHEMA[section][key][1]
            if kind in ("glob", "list") and not isinstance(value, (list, str, int)):
                raise ConfigError(f"{source}: {section}.{key} must be a list of strings")
            if kind in ("flag", "negflag", "bool") and not isinstance(value, bool):
                raise ConfigError(f"{source}: {section}.{key} must be true or false")


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict:
    """Read and check a TOML configuration; ``overrides`` are ``section.key=TOML value`` strings."""
    path = Path(path)
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc}") from exc
    for item in overrides:
        name, sep, value = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: use section.key=value (e.g. model.n_components=12)")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        config.setdefault(section, {})[key] = parsed
    check_config(config, str(path))
    return config


def _expand(patterns: Any, base: Path, what: str) -> list[str]:
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files: list[str] = []
    for pat in patterns:
        full = pat if Path(pat).is_absolute() else str(base / pat)
        found = sorted(glob.glob(full))
        if not found:
            raise ConfigError(f"{what}: {pat!r} matches no file (relative to {base})")
        files += found
    return files


def _dest(option: str, kind: str) -> str:
    """The name of a fit option's value (``--no-keep-prepared`` -> ``keep_prepared``)."""
    name = option[2:].replace("-", "_")
    return name[3:] if kind == "negflag" else name


def _resolved(config: dict, base: Path) -> list[tuple[str, str, Any]]:
    """(fit option, kind, value) of each key of a checked configuration, paths resolved
    against ``base`` and globs expanded."""
    items = []
    for section, table in config.items():
        for key, value in table.items():
            option, kind = SCHEMA[section][key]
            where = f"{section}.{key}"
            if kind == "path":
                value = str(value if Path(value).is_absolute() else base / value)
            elif kind == "glob":
                value = _expand(value, base, where)
            elif kind == "list":
                value = [str(v) for v in ([value] if isinstance(value, (str, int)) else value)]
            items.append((option, kind, value))
    if not any(option == "--out" for option, _, _ in items):
        raise ConfigError("no output folder: set [output] dir or pass --out")
    return items


def config_to_options(config: dict, base: Path, **values: Any):
    """The :class:`~trends_ivae.workflow.FitOptions` of a checked configuration (paths resolved
    against ``base``; ``values``: further options, e.g. ``verbose``).

    Raises
    ------
    ConfigError
        No output folder, or a glob that matches no file.
    trends_ivae.workflow.OptionError
        A value of the wrong type for its option.
    """
    from trends_ivae.workflow.fit_options import OPTION_TYPES, FitOptions

    for option, kind, value in _resolved(config, base):
        name = _dest(option, kind)
        if kind == "value" and name not in OPTION_TYPES:
            value = str(value)   # as the command line reads it
        values[name] = value
    return FitOptions.from_values(**values)


def config_to_argv(config: dict, base: Path) -> list[str]:
    """The ``trends-ivae fit`` command line of a checked configuration (what ``--dry-run`` prints)."""
    argv = ["fit"]
    for option, kind, value in _resolved(config, base):
        if kind == "path":
            argv += [option, value]
        elif kind in ("glob", "list"):
            argv += [option, *value]
        elif kind == "flag":
            argv += [option] if value else []
        elif kind == "negflag":
            argv += [] if value else [option]
        elif kind == "bool":
            argv += [option if value else "--no-" + option[2:]]
        elif value is not None:
            argv += [option, str(value)]
    return argv


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="group_ivae.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Group iVAE analysis from one TOML file (see pipelines/configs/).")
    p.add_argument("config", help="the TOML configuration")
    p.add_argument("--out", metavar="DIR", help="output folder (overrides [output] dir; relative to the cwd)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a configuration value (TOML syntax), repeatable")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    p.add_argument("--dry-run", action="store_true", help="print the trends-ivae fit command and stop")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more progress output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; returns the exit code (2 for a bad configuration, nothing written)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    cfg_path = Path(args.config)
    if not cfg_path.is_file():
        parser.error(f"configuration {args.config!r} does not exist")
    from trends_ivae.workflow import OptionError  # heavy imports after parsing

    try:
        config = load_config(cfg_path, args.overrides)
        if args.out:
            config.setdefault("output", {})["dir"] = str(Path(args.out).resolve())
        if args.force:
            config.setdefault("output", {})["force"] = True
        if args.dry_run:
            fit_argv = config_to_argv(config, cfg_path.resolve().parent) + ["-v"] * args.verbose
            print("trends-ivae " + " ".join(shlex.quote(a) for a in fit_argv))
            return 0
        options = config_to_options(config, cfg_path.resolve().parent, verbose=args.verbose)
        n_dims = options.check()
    except (ConfigError, OptionError) as exc:
        parser.error(str(exc))
    return run_fit(options, n_dims)


def run_fit(options, n_dims: int | str, prog: str = "group_ivae.py") -> int:
    """Run the fit workflow (:func:`trends_ivae.workflow.fit_to_folder`) on checked
    :class:`~trends_ivae.workflow.FitOptions` (``n_dims`` from their ``check()``); the exit code."""
    from trends_ivae.cli.options import notifier, print_fit_result
    from trends_ivae.data.errors import PrepareError
    from trends_ivae import workflow

    try:
        job = options.job(n_dims)
        result = workflow.fit_to_folder(job.data, job.out, fit=job.fit, output=job.output,
                                        checkpoint_dir=job.checkpoint_dir, stream_rows=job.stream_rows,
                                        notify=notifier("trends-ivae fit"), arguments=job.arguments,
                                        source=job.source)
    except (PrepareError, workflow.WorkflowError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print_fit_result(result, prog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
