"""The error of the prepare stage, in a module without imports so that anything may raise it."""
from __future__ import annotations

__all__ = ["PrepareError"]


class PrepareError(ValueError):
    """Bad input to the prepare stage; the message names the file (or the option) and the problem."""
