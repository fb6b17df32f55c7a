"""Choices the workflows make for the user, said and recorded.

Two of them: u for resting-state data when u was left at a default that needs events
(:func:`resting_aux`), and the number of components for ``"auto"``
(:func:`auto_components`). Each is announced through ``notify`` (a one-line note; the
command line prints it on stderr after its name) and recorded in a ``chosen`` dict,
which ``model/config.json`` keeps under ``arguments.chosen``. No heavy imports.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..data.settings import PrepareSettings

__all__ = ["Notify", "is_auto", "resting_aux", "with_resting_aux", "auto_components"]

#: a receiver of one-line notes about choices made for the user
Notify = Callable[[str], None]


def is_auto(value: Any) -> bool:
    """True for ``"auto"`` (any case): a count estimated from the data."""
    return isinstance(value, str) and value.lower() == "auto"


def resting_aux(spec: str, has_events: Sequence[bool], window: int | None) -> tuple[str, dict | None]:
    """The u spec for data in which no run has events: ``spec`` without its ``task`` factor.

    Parameters
    ----------
    spec : str
        The default u spec (factors joined with ``+``).
    has_events : sequence of bool
        Per run, whether it has events.
    window : int or None
        The sliding-window length, named in the reason.

    Returns
    -------
    spec : str
        ``spec`` unchanged when some run has events (or there are no runs, or no ``task``
        factor); else its other factors, or ``"window"`` when ``task`` was the only one.
    chosen : dict or None
        ``{"value": spec, "reason": text}`` when the spec was changed, else None.
    """
    factors = str(spec).split("+")
    if not has_events or any(has_events) or "task" not in factors:
        return str(spec), None
    from ..data.auxiliary import without_task   # here: this module keeps no heavy imports

    value = without_task(spec)
    reason = (f"no run has events (resting state?), so u is --aux {value} instead of the default "
              f"--aux {spec}")
    if "window" in value.split("+"):
        reason += f" (sliding windows of {window} volumes)"
    return value, {"value": value, "reason": reason}


def with_resting_aux(settings: PrepareSettings, has_events: Sequence[bool], chosen: dict | None,
                     notify: Notify | None) -> PrepareSettings:
    """``settings`` with the u spec of :func:`resting_aux`, announced (``notify``) and
    recorded in ``chosen["aux"]`` when it changed."""
    value, record = resting_aux(settings.aux.spec, has_events, settings.aux.window)
    if record is None:
        return settings
    if chosen is not None:
        chosen["aux"] = record
    if notify:
        notify(f"note: {record['reason']}; pass --aux to choose u yourself")
    return dataclasses.replace(settings, aux=dataclasses.replace(settings.aux, spec=value))


def auto_components(requested: int | str, parameters: dict, n_dims: int, chosen: dict,
                    notify: Notify | None = None, subject_volumes: dict[str, int] | None = None) -> int:
    """``requested`` as a count: ``"auto"`` becomes the model order estimated from the data.

    The estimate is :data:`trends_ivae.reduction.order.DEFAULT_METHOD` (MDL after i.i.d.
    subsampling, Li et al. 2007; Minka's Laplace approximation for files prepared
    before the subsampled spectrum was recorded) on what the prepare stage recorded in
    ``parameters`` (:func:`trends_ivae.reduction.order.order_from_parameters`), capped by
    what the data support (:func:`trends_ivae.reduction.order.order_cap`: ``n_dims``,
    the smallest subject's volumes, the rank). The estimate, the method and the cap are
    announced and recorded in ``chosen["n_components"]``.

    Raises
    ------
    ValueError
        ``"auto"`` and ``parameters`` hold no spectrum; the message starts with
        ``--n-components auto:``.
    """
    if not is_auto(requested):
        return int(requested)
    from ..reduction.order import order_cap, order_from_parameters

    cap, reason = order_cap(parameters, subject_volumes or {}, n_dims)
    try:
        order = order_from_parameters(parameters, max_order=cap, cap_reason=reason)
    except ValueError as exc:
        raise ValueError(f"--n-components auto: {exc}") from None
    if notify:
        notify(f"--n-components auto: {order.describe()}")
    chosen["n_components"] = order.to_dict()
    return int(order.n_components)
