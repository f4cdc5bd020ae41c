"""Label overrides from a CSV: applied in both representations, before or after the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.services.product_image_service import ProductImageService
from backfill.overrides import (
    OverridesFileInvalid,
    apply_overrides,
    read_overrides,
)
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from tests.images_db import assert_representations_equal, insert_legacy_product, table_elements

BASE = "http://testserver/media"
PHOTOS = [{"url": f"{BASE}/{name}.jpg", "order": i} for i, name in enumerate("abc")]
SERVICE = ProductImageService(legacy_sources=["pythonApiWOO"], max_images=30, url_bases=[BASE])


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "overrides.csv"
    path.write_text("\n".join(["tenant,product_id,url,is_label", *lines]) + "\n")
    return path


def test_overrides_correct_the_rule_in_both_representations_and_verify_stays_clean(
    engine: Engine, tenant: int, tmp_path: Path
) -> None:
    wrong_rule = insert_legacy_product(engine, tenant, PHOTOS, source="pythonApiWOO")
    missed = insert_legacy_product(engine, tenant, PHOTOS, source="stoflow")
    untouched = insert_legacy_product(engine, tenant, PHOTOS, source="pythonApiWOO")
    overrides = read_overrides(
        write(
            tmp_path,
            f"{tenant},{wrong_rule},{BASE}/a.jpg,true",  # the label was first, not last
            f"{tenant},{missed},{BASE}/b.jpg,true",  # a label the rule cannot know about
            f"{tenant},{untouched},{BASE}/nope.jpg,true",  # no such image: refused
        )
    )

    outcomes = apply_overrides(engine, overrides, SERVICE)  # before the backfill
    run_tenant(engine, tenant, RunOptions())

    assert [o.applied for o in outcomes] == [True, True, False]
    assert outcomes[2].reason == "no image with this url"
    assert [r["is_label"] for r in table_elements(engine, tenant, wrong_rule)] == [
        True,
        False,
        False,
    ]
    assert [r["is_label"] for r in table_elements(engine, tenant, missed)] == [False, True, False]
    assert [r["is_label"] for r in table_elements(engine, tenant, untouched)] == [
        False,
        False,
        True,
    ]
    for product in (wrong_rule, missed):
        assert_representations_equal(engine, tenant, product)
    assert verify_tenant(engine, tenant).is_verified


def test_not_a_label_unmarks_every_copy_of_a_repeated_url(
    engine: Engine, tenant: int, tmp_path: Path
) -> None:
    # The rule labels the last copy; the operator says that file is no label.
    same = f"{BASE}/same.jpg"
    product = insert_legacy_product(
        engine, tenant, [{"url": same}, {"url": same}], source="pythonApiWOO"
    )
    run_tenant(engine, tenant, RunOptions())
    assert [r["is_label"] for r in table_elements(engine, tenant, product)] == [False, True]
    outcomes = apply_overrides(
        engine, read_overrides(write(tmp_path, f"{tenant},{product},{same},false")), SERVICE
    )
    assert [o.applied for o in outcomes] == [True]
    assert [r["is_label"] for r in table_elements(engine, tenant, product)] == [False, False]
    assert_representations_equal(engine, tenant, product)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (("1,2,http://x/a.jpg,maybe",), "is_label"),
        (("one,2,http://x/a.jpg,true",), "integers"),
        (("1,0,http://x/a.jpg,true",), "positive"),
    ],
)
def test_a_bad_line_refuses_the_whole_file(
    tmp_path: Path, lines: tuple[str, ...], message: str
) -> None:
    with pytest.raises(OverridesFileInvalid, match=message):
        read_overrides(write(tmp_path, *lines))


def test_a_wrong_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("product,url\n1,x\n")
    with pytest.raises(OverridesFileInvalid, match="header"):
        read_overrides(path)
