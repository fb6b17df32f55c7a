"""Import the training's libraries in a background thread while the data are prepared.

``trends-ivae fit`` on runs spends its first seconds reading and cleaning them (numpy,
zlib and nibabel, which release the interpreter's lock for most of that work) and
would then spend one to two more seconds importing torch, and as much again on the
first optimiser step (torch's optimisers import ``torch._dynamo`` when first used). A
thread started before the preparation imports them on the second core meanwhile
(``docs/benchmarks.md``, "fit speed and the flow on fMRI"). Only torch's own modules
are imported there, none that the preparation imports, so the two threads do not wait
on each other's import locks. The thread never raises: a failed import fails again,
with its message, where the fit imports the module itself.
"""
from __future__ import annotations

import importlib
import threading

__all__ = ["TRAINING_MODULES", "preload"]

#: what the training imports that the preparation does not (torch, and what its
#: optimisers import on their first step)
TRAINING_MODULES = ("torch", "torch.optim", "torch._dynamo")


def _import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the fit's own import reports it
            return


def preload(modules: tuple[str, ...] = TRAINING_MODULES) -> threading.Thread:
    """Start importing ``modules`` in a daemon thread; join it before using them.

    Parameters
    ----------
    modules : tuple of str
        Module names, imported in this order.

    Returns
    -------
    threading.Thread
        The started thread.
    """
    thread = threading.Thread(target=_import_all, args=(tuple(modules),), name="trends-ivae-preload", daemon=True)
    thread.start()
    return thread
