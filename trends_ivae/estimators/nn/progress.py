"""Training progress on stderr: a tqdm bar on a terminal, plain lines in logs."""
from __future__ import annotations

import sys

__all__ = ["Progress"]


class Progress:
    """Training progress on stderr, off when ``verbose`` is 0 or less.

    On a terminal a tqdm bar (epochs, with the ELBOs); elsewhere (logs) plain lines: the
    last epoch of each restart, every epoch with ``verbose > 1``, and the outcome.
    """

    def __init__(self, verbose: int, desc: str, total: int, offset: float = 0.0) -> None:
        # offset: added to every ELBO shown, so that it reads in the data's units (per volume)
        self.verbose, self.desc, self.total, self.offset = verbose, desc, total, offset
        self.tty = sys.stderr.isatty()
        self.bar = None
        if self.verbose > 0 and self.tty:
            import shutil

            from tqdm import tqdm

            cols, rows = shutil.get_terminal_size()   # 80 x 24 where a terminal reports 0 x 0
            self.bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, leave=True,
                            ncols=cols, nrows=rows)

    def update(self, epoch: int, train: float, val: float) -> None:
        if self.verbose <= 0:
            return
        elbo = f"ELBO per volume train {train + self.offset:.3f} val {val + self.offset:.3f}"
        if self.bar is not None:
            self.bar.set_postfix_str(elbo, refresh=False)
            self.bar.update(epoch - self.bar.n)
        elif self.verbose > 1 or epoch == self.total:
            sys.stderr.write(f"{self.desc} epoch {epoch}/{self.total} {elbo}\n")
            sys.stderr.flush()

    def close(self, message: str = "") -> None:
        if self.verbose <= 0:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.close()
        else:
            sys.stderr.write(f"{self.desc} {message}\n")
            sys.stderr.flush()
