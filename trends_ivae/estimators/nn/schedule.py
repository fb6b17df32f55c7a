"""The learning-rate schedule both trainers share: a linear warm-up, then a cosine decay.

:func:`lr_lambda` is the multiplier of the peak learning rate at each optimiser step,
for ``torch.optim.lr_scheduler.LambdaLR`` (the VAE's :mod:`.train` and the flow's
:mod:`.flow_train`).
"""
from __future__ import annotations

import math
from typing import Callable

__all__ = ["lr_lambda"]


def lr_lambda(total_steps: int, final_ratio: float, warm: int) -> Callable[[int], float]:
    """The learning-rate multiplier at each step.

    Parameters
    ----------
    total_steps : int
        Steps of the whole schedule.
    final_ratio : float
        The multiplier at the last step (the cosine decays from 1 to it).
    warm : int
        Steps of the linear warm-up from ``1 / warm`` to 1 (at least 1).

    Returns
    -------
    callable
        ``f(step) -> float``.
    """
    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total_steps - warm))
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return f
