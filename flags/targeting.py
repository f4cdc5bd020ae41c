"""Per-tenant targeting inside an Unleash strategy (pure): `flexibleRollout` at 100 with a
`userId IN [...]` constraint, the shape both the toggle file and the Admin API carry."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

Strategy = dict[str, Any]


def tenant_strategy(toggle: str, tenants: Iterable[int] = ()) -> Strategy:
    """A fresh strategy that enables the toggle for exactly these tenants."""
    return {
        "name": "flexibleRollout",
        "parameters": {"rollout": "100", "stickiness": "default", "groupId": toggle},
        "constraints": [
            {
                "contextName": "userId",
                "operator": "IN",
                "values": [str(t) for t in sorted(set(tenants))],
                "caseInsensitive": False,
                "inverted": False,
            }
        ],
    }


def tenant_constraint(strategy: Strategy) -> dict[str, Any] | None:
    """The strategy's `userId IN [...]` constraint, if it targets tenants that way."""
    if strategy.get("name") != "flexibleRollout" or strategy.get("disabled"):
        return None
    for constraint in strategy.get("constraints") or []:
        if (
            constraint.get("contextName") == "userId"
            and constraint.get("operator") == "IN"
            and not constraint.get("inverted")
        ):
            return dict(constraint)
    return None


def targeted(strategy: Strategy) -> list[int]:
    """The tenants the strategy targets (values that are not tenant ids are ignored)."""
    constraint = tenant_constraint(strategy)
    if constraint is None:
        return []
    return sorted(
        {int(v) for v in constraint.get("values", []) if str(v).isascii() and str(v).isdigit()}
    )


def retarget(
    strategy: Strategy, *, add: Iterable[int] = (), remove: Iterable[int] = ()
) -> Strategy:
    """A copy of the strategy targeting its tenants plus `add`, minus `remove` (values that
    are not tenant ids, put there by hand, are kept as they are)."""
    changed = copy.deepcopy(strategy)
    removed = {str(t) for t in remove}
    for constraint in changed.get("constraints") or []:
        if tenant_constraint({**changed, "constraints": [constraint]}) is None:
            continue
        values = [str(v) for v in constraint.get("values", [])]
        kept = [v for v in values if v not in removed]
        extra = [str(t) for t in sorted(set(add)) if str(t) not in kept and str(t) not in removed]
        numeric = sorted({v for v in kept + extra if v.isascii() and v.isdigit()}, key=int)
        constraint["values"] = numeric + [v for v in kept if not (v.isascii() and v.isdigit())]
        return changed
    raise ValueError("the strategy has no userId IN [...] constraint")
