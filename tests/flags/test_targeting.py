"""Per-tenant targeting in an Unleash strategy, as set arithmetic (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flags import targeting

tenant_sets = st.sets(st.integers(1, 10**9), max_size=20)


@given(tenant_sets, tenant_sets, tenant_sets)
def test_retarget_is_set_arithmetic_and_keeps_hand_written_values(
    start: set[int], added: set[int], removed: set[int]
) -> None:
    strategy = targeting.tenant_strategy("t", start)
    strategy["constraints"][0]["values"].append("qa-team")  # put there by hand in the UI
    changed = targeting.retarget(strategy, add=added, remove=removed)
    assert targeting.targeted(changed) == sorted((start | added) - removed)
    assert "qa-team" in changed["constraints"][0]["values"]
    assert targeting.targeted(strategy) == sorted(start), "the input is not mutated"


def test_only_a_plain_userid_in_constraint_counts_as_targeting() -> None:
    inverted = targeting.tenant_strategy("t", [1])
    inverted["constraints"][0]["inverted"] = True
    assert targeting.tenant_constraint(inverted) is None
    assert targeting.targeted(inverted) == []
    other = {"name": "default", "parameters": {}}
    assert targeting.tenant_constraint(other) is None
    with pytest.raises(ValueError, match="userId IN"):
        targeting.retarget(other, add=[1])
