"""The auxiliary variable u: one value per volume, from events, windows or labels.

Factors (joined with ``+`` in a spec such as ``"task+window"``)
---------------------------------------------------------------
``task``
    BIDS events (``onset``, ``duration``, ``trial_type``) to one label per volume,
    see :func:`task_labels` for the exact rule.
``window``
    Sliding-window segments of ``window`` volumes every ``step`` volumes, numbered
    per subject and run (a segment never spans two runs or two subjects), see
    :func:`window_labels`.
``subject``
    The subject label (``sub-01``, ...).
``run``
    The run label (``run-1``, ...), shared across subjects: ``run`` alone says "first
    run of anyone"; ``subject+run`` says "this run of this subject".
any other word
    A column of ``participants.tsv`` (e.g. ``group``, ``site``); its values are labels.

Combining factors
-----------------
``combine="concat"`` (default) concatenates the factors' one-hot columns into a
continuous ``(n, sum K_i)`` float32 u with column names such as ``"task=face"``; the
prior λ(u) is then an MLP of those columns, which shares what it learns across
combinations. ``combine="product"`` makes one discrete label per combination that
occurs, re-indexed ``0..K-1`` (lexicographic in the factors' level order), with level
names such as ``"face|sub-01_run-1_w003"``; the prior is then a free table row per
combination, which needs many volumes per combination (task × 20-volume windows leave
~8, and the iVAE recovers far less: ``docs/benchmarks.md``, issue 5). A single factor
is always discrete labels, whatever ``combine`` says.

u is an :class:`~trends_ivae.aux_variable.AuxVariable`. Discrete u holds int64 labels
``0..K-1`` with ``names[k]`` the level name. Several factors combined by ``concat``
are the kind ``"factors"``: their codes only; the one-hot columns are built when asked
for (:meth:`~trends_ivae.aux_variable.AuxVariable.dense`), and the prepared store keeps
only the codes (``u_factors``). The estimators take that u as it is and hold it as
(n, n_factors) indices into the one-hot columns; the result is the model of the dense
columns.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..aux_variable import AuxVariable
from .errors import PrepareError
from .settings import AuxSpec, parse_aux_spec

__all__ = [
    "AuxVariable",
    "RunMeta",
    "read_events",
    "task_labels",
    "window_labels",
    "build_aux",
    "aux_for_runs",
    "parse_aux_spec",
    "without_task",
    "REST",
]

#: the label of volumes no event covers
REST = "rest"
_BUILTIN = ("task", "window", "subject", "run")


def without_task(spec: str) -> str:
    """The u spec ``spec`` without its ``task`` factor, for runs without events
    (``"task+window"`` becomes ``"window"``; ``"task"`` alone becomes ``"window"``)."""
    return "+".join(f for f in str(spec).split("+") if f != "task") or "window"


@dataclass
class RunMeta:
    """What the u builders need to know about one run (no voxel data)."""

    name: str
    subject: str
    run: str
    n_volumes: int
    tr: float
    events: object = None
    participant: dict = field(default_factory=dict)


#: the condition of every event in an events table without ``trial_type``
NO_TRIAL_TYPE = "event"


def read_events(events, name: str = "<events>") -> pd.DataFrame:
    """Read and check a BIDS events table (path or DataFrame).

    Returns a DataFrame with float ``onset``, float ``duration`` (``n/a`` read as 0)
    and str ``trial_type``. Without a ``trial_type`` column every event is taken as one
    condition, ``"event"``, with a warning naming the file.

    Raises
    ------
    PrepareError
        When the file is unreadable or lacks numeric ``onset`` / ``duration``.
    """
    if isinstance(events, pd.DataFrame):
        df = events.copy()
    else:
        name = str(events)
        if not Path(events).is_file():
            raise PrepareError(f"events file {name!r} does not exist")
        try:
            df = pd.read_csv(events, sep="\t", na_values=["n/a", "N/A", ""], keep_default_na=False)
        except Exception as exc:
            raise PrepareError(f"events file {name!r} cannot be read: {exc}") from exc
    for col in ("onset", "duration"):
        if col not in df.columns:
            raise PrepareError(f"events file {name!r} has no {col!r} column (columns: {list(df.columns)})")
        try:
            df[col] = pd.to_numeric(df[col]).astype(float)
        except (ValueError, TypeError) as exc:
            raise PrepareError(f"events file {name!r}: column {col!r} is not numeric ({exc})") from exc
    if df["onset"].isna().any():
        raise PrepareError(f"events file {name!r} has a missing onset")
    df["duration"] = df["duration"].fillna(0.0)
    if (df["duration"] < 0).any():
        raise PrepareError(f"events file {name!r} has a negative duration")
    if "trial_type" in df.columns:
        df["trial_type"] = df["trial_type"].astype(str)
    else:
        warnings.warn(f"events file {name!r} has no 'trial_type' column: all its {len(df)} event(s) "
                      f"are taken as one condition, {NO_TRIAL_TYPE!r} (add a trial_type column to "
                      "tell conditions apart)", UserWarning, stacklevel=2)
        df["trial_type"] = NO_TRIAL_TYPE
    return df[["onset", "duration", "trial_type"]].reset_index(drop=True)


def task_labels(
    events,
    n_volumes: int,
    tr: float,
    *,
    hrf_delay: float = 0.0,
    min_duration: float | None = None,
    name: str = "<events>",
) -> np.ndarray:
    """One task label (a string) per volume, from BIDS events.

    The rule. Volume ``t`` is acquired over ``[t*TR, (t+1)*TR)``. Each event covers
    ``[onset + hrf_delay, onset + hrf_delay + duration)``.

    1. A volume gets the trial type that covers the largest part of it, with the
       uncovered part counting for ``"rest"``; a trial type wins a tie with rest (a
       volume half covered by a block is labelled with the block), and between trial
       types a tie goes to the one whose event starts first.
    2. Zero-duration events (when ``min_duration`` is None) label the volume that
       contains their (delayed) onset, if rule 1 left that volume as rest; several in
       one volume: the earliest wins. With ``min_duration`` set, every event shorter
       than ``min_duration`` seconds is lengthened to it and rule 1 applies.
    3. Events starting at or after the end of the scan (``n_volumes * TR``) are
       dropped and events running past it are clipped, with a warning naming the file;
       the same for events before 0 after the delay.

    Parameters
    ----------
    events : path or DataFrame
        BIDS events table.
    n_volumes : int
        Volumes in the run.
    tr : float
        Repetition time, seconds.
    hrf_delay : float, default=0.0
        Seconds added to every onset (labels shift later, following the BOLD lag).
    min_duration : float, optional
        See rule 2.
    name : str
        Used in messages when ``events`` is a DataFrame.

    Returns
    -------
    ndarray of str, shape (n_volumes,)
    """
    if isinstance(events, (str, Path)):
        name = str(events)
    df = read_events(events, name)
    end = n_volumes * tr
    onset = df["onset"].to_numpy() + float(hrf_delay)
    duration = df["duration"].to_numpy().copy()
    if min_duration is not None:
        duration = np.maximum(duration, float(min_duration))
    types = df["trial_type"].to_numpy()
    beyond = onset >= end
    clipped = (~beyond) & (onset + duration > end + 1e-9)
    before = onset + np.maximum(duration, 0) <= 0
    before &= ~((duration == 0) & (onset == 0))
    if beyond.any() or clipped.any():
        warnings.warn(
            f"events file {name!r}: {int(beyond.sum())} event(s) start after the end of the "
            f"scan ({n_volumes} volumes x TR {tr:g} s = {end:g} s) and are dropped, "
            f"{int(clipped.sum())} run past it and are clipped",
            UserWarning, stacklevel=2,
        )
    if before.any() or (onset < 0).any():
        warnings.warn(
            f"events file {name!r}: {int((onset < 0).sum())} event(s) start before the scan "
            "(after the hemodynamic delay); they are clipped at 0",
            UserWarning, stacklevel=2,
        )
    keep = ~beyond & ~before
    onset, duration, types = onset[keep], duration[keep], types[keep]
    start = np.maximum(onset, 0.0)
    stop = np.minimum(onset + duration, end)

    levels = sorted(set(types))
    index = {lv: i for i, lv in enumerate(levels)}
    cover = np.zeros((n_volumes, len(levels)))
    first = np.full((n_volumes, len(levels)), np.inf)
    point = np.full(n_volumes, -1, dtype=int)
    point_onset = np.full(n_volumes, np.inf)
    for a, b, ty, on in zip(start, stop, types, onset):
        k = index[ty]
        if b - a <= 0:  # a zero-duration event: the volume containing its onset
            t = min(int(np.floor(a / tr + 1e-9)), n_volumes - 1)
            if on < point_onset[t]:
                point[t], point_onset[t] = k, on
            continue
        t0 = int(np.floor(a / tr + 1e-9))
        t1 = min(int(np.ceil(b / tr - 1e-9)), n_volumes)
        for t in range(t0, t1):
            overlap = min(b, (t + 1) * tr) - max(a, t * tr)
            if overlap > 1e-9:
                cover[t, k] += overlap
                first[t, k] = min(first[t, k], a)
    labels = np.full(n_volumes, REST, dtype=object)
    if levels:
        covered = cover.sum(axis=1)
        rest_cover = np.maximum(tr - covered, 0.0)
        # argmax coverage, ties -> earliest start
        best = np.empty(n_volumes, dtype=int)
        for t in range(n_volumes):
            row = np.round(cover[t], 9)
            cands = np.flatnonzero(row == row.max())
            best[t] = cands[np.argmin(first[t, cands])]
        best_cover = cover[np.arange(n_volumes), best]
        is_event = (best_cover > 0) & (best_cover + 1e-9 >= rest_cover)
        labels[is_event] = np.asarray(levels, dtype=object)[best[is_event]]
        use_point = (~is_event) & (point >= 0)
        labels[use_point] = np.asarray(levels, dtype=object)[point[use_point]]
    return labels.astype(str)


def window_labels(n_volumes: int, window: int, step: int | None = None, *, name: str = "<run>") -> np.ndarray:
    """Segment index (0, 1, ...) of each volume of one run.

    Windows start at volumes ``0, step, 2*step, ...`` and keep only those that fit
    (``start + window <= n_volumes``). Every volume belongs to exactly one segment: the
    window whose centre ``start + (window - 1) / 2`` is nearest, ties to the earlier
    window. With ``step == window`` (the default) that is plain ``t // window``, with a
    final partial block folded into the last window; with overlapping windows
    (``step < window``) each volume goes to the window it is most central in; with
    gaps (``step > window``) the gap volumes go to the nearest window.

    Raises
    ------
    PrepareError
        When ``window`` is longer than the run, or ``window``/``step`` < 1.
    """
    step = window if step is None else int(step)
    window = int(window)
    if window < 1 or step < 1:
        raise PrepareError(f"window ({window}) and step ({step}) must be at least 1 volume")
    if window > n_volumes:
        raise PrepareError(
            f"window of {window} volumes is longer than run {name!r} ({n_volumes} volumes)"
        )
    n_windows = (n_volumes - window) // step + 1
    t = np.arange(n_volumes)
    pos = (t - (window - 1) / 2.0) / step
    k = np.ceil(pos - 0.5 - 1e-9).astype(int)  # nearest centre, ties to the earlier
    return np.clip(k, 0, n_windows - 1).astype(np.int64)


def _run_sort_key(value: str) -> tuple:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def build_aux(
    spec: AuxSpec | str | Sequence[str],
    runs: Sequence[RunMeta],
    *,
    window: int | None = None,
    step: int | None = None,
    hrf_delay: float = 0.0,
    min_duration: float | None = None,
    combine: str = "concat",
) -> AuxVariable:
    """Build u for all runs (concatenated in the order given).

    Parameters
    ----------
    spec : AuxSpec, or str or list of str
        The whole :class:`~trends_ivae.data.settings.AuxSpec`, or its factors joined with
        ``+`` (``task``, ``window``, ``subject``, ``run`` or a participants column; see
        the module docstring) with the other fields as the keywords below.
    runs : list of RunMeta
        Metadata of each run (no voxel data).
    window, step, hrf_delay, combine
        As in :class:`~trends_ivae.data.settings.AuxSpec`; only with a spec string.
    min_duration : float, optional
        ``AuxSpec.min_event_duration``; only with a spec string.

    Returns
    -------
    AuxVariable
        Discrete labels (one factor, or the product of several), or for several
        factors combined by ``concat`` the factors (:class:`~trends_ivae.aux_variable.AuxVariable`
        of kind ``"factors"``: their codes; the one-hot columns are built only when asked for).

    Raises
    ------
    PrepareError
        A factor that needs what a run lacks (events, a window length, a participants
        column), or keywords given with an ``AuxSpec``.
    """
    flat = dict(window=window, step=step, hrf_delay=hrf_delay, min_event_duration=min_duration, combine=combine)
    if isinstance(spec, AuxSpec):
        if flat != dict(window=None, step=None, hrf_delay=0.0, min_event_duration=None, combine="concat"):
            raise PrepareError("build_aux: give window, step, ... in the AuxSpec or with a spec string, not both")
        aux = spec
    else:
        aux = AuxSpec(spec, **flat)
    window, step, hrf_delay, min_duration = aux.window, aux.step, aux.hrf_delay, aux.min_event_duration
    combine = aux.combine
    factors = aux.factors
    spec_str = aux.spec
    per_factor_strings: list[list[np.ndarray]] = []
    level_orders: list[list[str]] = []
    for factor in factors:
        per_run = []
        if factor == "task":
            for r in runs:
                if r.events is None:
                    raise PrepareError(
                        f"aux 'task' needs events, but run {r.name!r} has no events file "
                        "(BIDS *_events.tsv next to the run, or --events); for resting-state "
                        "data use --aux window --window N (sliding windows of N volumes)"
                    )
                per_run.append(task_labels(r.events, r.n_volumes, r.tr, hrf_delay=hrf_delay,
                                           min_duration=min_duration, name=r.name))
            others = sorted({lv for arr in per_run for lv in arr} - {REST})
            order = [REST] + others
        elif factor == "window":
            if window is None:
                raise PrepareError("aux 'window' needs a window length in volumes (window=..., --window)")
            order = []
            for r in runs:
                seg = window_labels(r.n_volumes, window, step, name=r.name)
                names = np.array([f"sub-{r.subject}_run-{r.run}_w{k:03d}" for k in range(seg.max() + 1)])
                per_run.append(names[seg])
                order.extend(names)
        elif factor == "subject":
            order = list(dict.fromkeys(f"sub-{r.subject}" for r in runs))
            per_run = [np.full(r.n_volumes, f"sub-{r.subject}", dtype=object).astype(str) for r in runs]
        elif factor == "run":
            labels = sorted({r.run for r in runs}, key=_run_sort_key)
            order = [f"run-{v}" for v in labels]
            per_run = [np.full(r.n_volumes, f"run-{r.run}", dtype=object).astype(str) for r in runs]
        else:
            values = []
            for r in runs:
                if factor not in r.participant:
                    raise PrepareError(
                        f"aux factor {factor!r} is neither task/window/subject/run nor a column of "
                        f"participants.tsv for subject {r.subject!r} (run {r.name!r}; known columns: "
                        f"{sorted(r.participant)})"
                    )
                value = str(r.participant[factor])
                if value in ("", "n/a", "nan"):
                    warnings.warn(f"participants.tsv: subject {r.subject!r} has no value for "
                                  f"{factor!r}; labelled 'n/a'", UserWarning, stacklevel=2)
                    value = "n/a"
                values.append(value)
                per_run.append(np.full(r.n_volumes, value, dtype=object).astype(str))
            order = sorted(set(values))
        per_factor_strings.append(per_run)
        level_orders.append(order)

    n_total = sum(r.n_volumes for r in runs)
    codes = np.empty((n_total, len(factors)), dtype=np.int64)
    for j, (per_run, order) in enumerate(zip(per_factor_strings, level_orders)):
        lookup = {lv: i for i, lv in enumerate(order)}
        allv = np.concatenate(per_run) if per_run else np.empty(0, dtype=str)
        codes[:, j] = [lookup[v] for v in allv]
    factor_info = [{"name": f, "levels": list(map(str, o))} for f, o in zip(factors, level_orders)]

    if combine == "concat" and len(factors) > 1:   # the one-hot columns are built when asked for
        return AuxVariable.from_factors(codes, factor_info, spec=spec_str)

    combos, labels = np.unique(codes, axis=0, return_inverse=True)
    labels = labels.reshape(-1).astype(np.int64)
    names = ["|".join(level_orders[j][c] for j, c in enumerate(row)) for row in combos]
    return AuxVariable.discrete(labels, names, factors=factor_info, factor_codes=codes, spec=spec_str)


def aux_for_runs(prepared: Any, runs: Sequence[Any], n_volumes: Sequence[int], *, tr: float | None = None,
                 hrf_delay: float = 0.0, min_event_duration: float | None = None,
                 combine: str = "concat") -> list[AuxVariable]:
    """u of new runs (RunSpecs) in the layout of ``prepared``'s u, for a fitted model.

    Built as during prepare (``prepared.aux``'s spec, window and step; the given HRF
    delay, minimum event duration and combination).

    Raises
    ------
    ValueError
        A run has u levels that ``prepared`` lacks (the message names the run).
    """
    us = []
    for i, (r, n) in enumerate(zip(runs, n_volumes)):
        meta = RunMeta(name=r.name, subject=r.subject, run=str(r.entities.get("run", i + 1)),
                       n_volumes=int(n), tr=tr or r.tr or prepared.tr, events=r.events,
                       participant=r.participant)
        aux = build_aux(prepared.aux["spec"], [meta], window=prepared.aux.get("window"),
                        step=prepared.aux.get("step"), hrf_delay=hrf_delay, min_duration=min_event_duration,
                        combine=combine)
        missing = aux.unknown_levels(prepared.u)
        if missing:
            raise ValueError(f"{r.name}: u levels {missing[:5]} were not seen during fit, so u "
                             "cannot be built for this run (an encoder q(z|x), the GroupIVAE "
                             "default, transforms any run; scoring always needs known levels)")
        us.append(aux.aligned_to(prepared.u))
    return us
