"""Query preparation and results (beyondvis.retrieval.query): a box clamped to the photo, a mask
of the photo's size marking something, results as lines and the documented JSON object."""

from __future__ import annotations

import numpy as np
import pytest
from _fake_features import PatchFeatures
from PIL import Image
from test_blcf_index import _config, _photos

from beyondvis.errors import BeyondvisError
from beyondvis.retrieval import (
    BLCFIndex,
    QueryRegionError,
    QueryResult,
    clamp_box,
    region_mask,
    search_photo,
)


def test_clamp_box_clips_to_the_photo_and_refuses_one_outside():
    assert clamp_box((-5, 10, 50, 500), (40, 30)) == (0, 10, 40, 30)
    assert clamp_box((1, 2, 3, 4), (40, 30)) == (1, 2, 3, 4)
    with pytest.raises(QueryRegionError, match="--box lies outside the 40x30 query image"):
        clamp_box((50, 0, 60, 10), (40, 30))
    assert issubclass(QueryRegionError, BeyondvisError)


def test_region_mask_needs_the_query_size_and_a_marked_pixel():
    a = np.zeros((30, 40), np.uint8)
    a[5:10, 6:9] = 255
    mask = region_mask(Image.fromarray(a), (40, 30))
    assert mask.dtype == bool and mask.sum() == 15 and mask[5, 6] and not mask[0, 0]
    with pytest.raises(QueryRegionError, match=r"mask is \(40, 30\), query is \(41, 30\)"):
        region_mask(Image.fromarray(a), (41, 30))
    with pytest.raises(QueryRegionError, match="mask m.png is empty"):
        region_mask(Image.fromarray(np.zeros((30, 40), np.uint8)), (40, 30), "m.png")


def test_search_photo_finds_the_query_and_defaults_the_mode(tmp_path):
    photos = _photos(tmp_path / "photos", 8)
    index = BLCFIndex(_config(), extractor=PatchFeatures())
    index.train(photos)
    index.add(photos)
    whole = search_photo(index, photos[3], k=3, rerank=False)
    assert whole.results[0]["image"] == str(photos[3]) and len(whole.results) <= 3
    assert whole.query_box is None  # gs: the whole photo
    # a box makes an ls query, clamped to the 96x72 photo, that the page draws
    boxed = search_photo(index, photos[3], box=(-10, -10, 60, 50), k=0, rerank=False)
    assert boxed.query_box is not None and boxed.query_box[0] >= 0
    assert boxed.query_box[2] <= 60 and boxed.query_box[3] <= 50
    a = np.zeros((72, 96), np.uint8)
    a[10:40, 20:60] = 1
    Image.fromarray(a).save(tmp_path / "mask.png")
    masked = search_photo(index, photos[3], mask=tmp_path / "mask.png", k=2, rerank=False)
    assert masked.results and masked.query_box is not None
    with pytest.raises(QueryRegionError, match="outside"):
        search_photo(index, photos[3], box=(200, 200, 300, 300))
    with pytest.raises(ValueError, match="unknown search mode"):
        search_photo(index, photos[3], mode="xs")


def test_query_result_lines_and_json():
    hits = [{"rank": 1, "score": 0.51234, "image": "a.jpg", "box": [1.2, 2, 30.6, 40]},
            {"rank": 2, "score": 0.25, "image": "b.jpg", "box": None}]  # fmt: skip
    r = QueryResult("q.jpg", None, hits)
    assert r.lines() == ["  1  0.5123  a.jpg  box 1,2,31,40", "  2  0.2500  b.jpg"]
    assert r.to_json() == {"format": "beyondvis-blcf-results", "format_version": 1,
                           "results": hits}  # fmt: skip
    empty = QueryResult("q.jpg", None, [], format="beyondvis-frcnn-results", empty_note="none")
    assert empty.lines() == ["none"] and empty.to_json()["format"] == "beyondvis-frcnn-results"
    assert QueryResult("q.jpg", None, []).lines() == []
