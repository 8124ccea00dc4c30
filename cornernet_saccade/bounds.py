"""Upper bounds of size-like settings: one check (:func:`check_bounds`) for the tables each settings
class keeps beside its own validation, and one way to raise a bound on purpose (the environment
variable :data:`LIMITS_ENV`)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

#: Environment variable that raises the bounds of size-like settings on purpose: comma-separated
#: ``name=value`` pairs, e.g. ``CORNERNET_SACCADE_LIMITS=full_size=6143,batch_size=2048``.
LIMITS_ENV = "CORNERNET_SACCADE_LIMITS"
#: Most entries of a list-valued size-like setting (``init_sizes``, ``dims``, ``test_scales``, ...).
MAX_LIST_ENTRIES = 64


def _raised_bounds() -> dict[str, float]:
    """The bounds raised on purpose through :data:`LIMITS_ENV` (ValueError when malformed)."""
    raised: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in os.environ.get(LIMITS_ENV, "").split(","))):
        name, _, text = item.partition("=")
        try:
            raised[name.strip()] = float(text)
        except ValueError:
            raise ValueError(f"{LIMITS_ENV}: {item!r} is not name=number") from None
    return raised


def _numbers(value: Any) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [number for item in value for number in _numbers(item)]
    return [] if value is None else [value]


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def check_bounds(values: Mapping[str, Any], bounds: Mapping[str, float]) -> None:
    """ValueError naming the first setting of ``values`` (name -> value, e.g. a dataclass's ``vars``)
    in ``bounds`` whose value (for a list: any entry) is above its bound, or that lists more than
    :data:`MAX_LIST_ENTRIES` entries, and saying how to raise the bound. Settings call it first in
    ``__post_init__``, so a size is refused before anything is allocated for it, whether it comes from
    a file, ``--set`` or a weights file."""
    raised = _raised_bounds()
    for name, default in bounds.items():
        if name not in values:
            continue
        value = values[name]
        if isinstance(value, (list, tuple)) and len(value) > MAX_LIST_ENTRIES:
            raise ValueError(f"{name} lists {len(value)} entries, more than the {MAX_LIST_ENTRIES} allowed")
        bound = raised.get(name, default)
        largest = max(_numbers(value), default=None)
        if largest is not None and largest > bound:
            raise ValueError(
                f"{name} {_shown(largest)} is above its bound {_shown(bound)} (a guard against sizes that would exhaust "
                f"memory); to go beyond it on purpose, set the environment variable {LIMITS_ENV}={name}=N"
            )
