"""Stage resolution and its interlocks, for every combination of facts and flags."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from flags.stages import Flags, ReadPath, Stage, TenantFacts, resolve

facts = st.builds(TenantFacts, st.booleans(), st.booleans(), st.booleans(), st.booleans())
all_flags = st.builds(Flags, st.booleans(), st.booleans(), st.booleans())


@given(facts, all_flags)
def test_the_table_is_read_only_when_verified_and_kept_in_step_or_when_complete(
    tenant: TenantFacts, flags: Flags
) -> None:
    resolution = resolve(tenant, flags)
    if resolution.read_path is ReadPath.TABLE:
        assert tenant.is_contracted or (
            tenant.has_table and tenant.is_verified and flags.read_table and flags.dual_write
        )


@given(facts, all_flags)
def test_a_refused_read_table_says_why_and_stays_on_jsonb(
    tenant: TenantFacts, flags: Flags
) -> None:
    resolution = resolve(tenant, flags)
    if resolution.refusal is not None:
        assert flags.read_table
        assert resolution.read_path is ReadPath.JSONB
        assert "refused" in resolution.refusal


@given(facts, all_flags)
def test_nothing_is_written_to_a_representation_that_does_not_exist(
    tenant: TenantFacts, flags: Flags
) -> None:
    resolution = resolve(tenant, flags)
    if tenant.is_contracted:
        assert not resolution.writes_jsonb and resolution.writes_table
    else:
        assert resolution.writes_jsonb
        assert resolution.writes_table == (tenant.has_table and flags.dual_write)


def test_the_walk_of_one_tenant_through_the_stages() -> None:
    walk = [
        (TenantFacts(False, False, False, False), Flags(), Stage.LEGACY),
        (TenantFacts(True, False, False, False), Flags(), Stage.DUAL_WRITE),
        (TenantFacts(True, False, True, False), Flags(), Stage.BACKFILLED),
        (TenantFacts(True, False, True, True), Flags(), Stage.VERIFIED),
        (TenantFacts(True, False, True, True), Flags(shadow_compare=True), Stage.SHADOW),
        (TenantFacts(True, False, True, True), Flags(read_table=True), Stage.LIVE),
        (TenantFacts(True, True, True, True), Flags(), Stage.COMPLETE),
    ]
    assert [resolve(tenant, flags).stage for tenant, flags, _ in walk] == [s for *_, s in walk]


def test_read_table_for_an_unverified_tenant_is_refused() -> None:
    resolution = resolve(TenantFacts(True, False, True, False), Flags(read_table=True))
    assert resolution.read_path is ReadPath.JSONB
    assert resolution.stage is Stage.BACKFILLED
    assert resolution.refusal is not None and "not verified" in resolution.refusal


def test_the_toggle_file_defines_the_four_toggles_with_safe_defaults() -> None:
    definitions = json.loads((Path(__file__).parents[2] / "flags" / "toggles.json").read_text())
    by_name = {feature["name"]: feature for feature in definitions["features"]}
    assert set(by_name) == {
        "product-images.dual-write",
        "product-images.read-table",
        "product-images.shadow-compare",
        "product-images.backfill-pause",
    }
    assert by_name["product-images.dual-write"]["enabled"] is True
    assert by_name["product-images.backfill-pause"]["enabled"] is False
    for name in ("product-images.read-table", "product-images.shadow-compare"):
        [strategy] = by_name[name]["strategies"]
        assert strategy["name"] == "flexibleRollout"
        assert strategy["constraints"] == [
            {"contextName": "userId", "operator": "IN", "values": []}
        ], "per-tenant targeting, nobody by default"
