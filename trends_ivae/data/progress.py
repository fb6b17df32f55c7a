"""Progress bars for the steps that take a while (tqdm), shown only where someone watches.

The command line turns them on when stderr is a terminal and ``-q`` is not given
(:func:`trends_ivae.cli._common.wants_progress`); the Python functions take
``progress=False`` by default, so scripts and logs stay quiet.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], *, enabled: bool, desc: str, total: int | None = None,
             unit: str = "it") -> Iterator[T]:
    """``iterable``, with a tqdm bar on stderr when ``enabled`` (else untouched).

    Parameters
    ----------
    iterable : iterable
    enabled : bool
        Show the bar. False returns ``iterable`` itself (tqdm is not imported).
    desc : str
        The bar's label (``"prepare: clean and reduce"``).
    total : int, optional
        Number of items, when ``iterable`` has no ``len``.
    unit : str
        What one item is (``"subject"``, ``"run"``).
    """
    if not enabled:
        return iter(iterable)
    import shutil

    from tqdm import tqdm

    cols, rows = shutil.get_terminal_size()   # 80 x 24 where a terminal reports 0 x 0 (tqdm then hides)
    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, leave=True,
                     ncols=cols, nrows=rows))
