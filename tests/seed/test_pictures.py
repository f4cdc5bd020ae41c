"""The picture pool: real files, deterministic, in the mix of formats and sizes the brief asks."""

from __future__ import annotations

import io
from collections import Counter

from PIL import Image

from app.seed.pictures import pool_specs, render


def test_the_pool_is_real_varied_pictures_and_the_same_seed_gives_the_same_bytes() -> None:
    photos, labels = pool_specs(5)
    assert len(photos) == 60 and len(labels) == 12
    rendered = [render(spec) for spec in (*photos, *labels)]
    assert [render(spec).data for spec in photos[:6]] == [p.data for p in rendered[:6]]
    assert render(pool_specs(6)[0][0]).data != rendered[0].data
    for picture in rendered:
        with Image.open(io.BytesIO(picture.data)) as image:
            assert image.size == (picture.spec.width, picture.spec.height)
            assert Image.MIME[image.format or ""] == picture.spec.mime_type
        assert len(picture.data) < 400_000
    longest = [max(spec.width, spec.height) for spec in photos]
    assert any(side < 500 for side in longest)
    assert sum(600 <= side <= 1600 for side in longest) > len(photos) * 0.7
    assert {spec.width > spec.height for spec in photos} == {True, False}
    assert set(Counter(spec.extension for spec in (*photos, *labels))) == {"jpg", "png", "webp"}
    assert {spec.kind for spec in photos} == {"garment", "shoe", "bag"}
    assert all(spec.is_label for spec in labels) and not any(spec.is_label for spec in photos)
