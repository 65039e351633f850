"""The JSON API through Starlette's TestClient: cook card, bad and oversize uploads, search with
a box and paging, and no way to read a file by path."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
from _webdata import COLLECTION, food_photo, jpeg_bytes
from PIL import Image

from beyondvis.web.limits import BodyLimitMiddleware, sniff_image


def food_jpeg() -> bytes:

    im = food_photo()
    im.thumbnail((320, 320))
    return jpeg_bytes(im)


def test_cook_answers_the_cook_json_card(client):
    r = client.post("/api/cook", files={"photo": ("dinner.jpg", food_jpeg(), "image/jpeg")})
    assert r.status_code == 200, r.text
    card = r.json()
    assert card["format"] == 1 and card["photo"] == "dinner.jpg"
    assert card["decode"] == "greedy" and card["runtime"] == "torch"
    assert isinstance(card["title"], str) and card["title"]
    assert card["ingredients"] and card["instructions"]
    for ing in card["ingredients"]:
        assert {"name", "prob", "staple"} <= set(ing) and 0.0 <= ing["prob"] <= 1.0
    assert all(isinstance(s, str) and s for s in card["instructions"])
    assert card["retrieved"] and {"id", "title", "score"} <= set(card["retrieved"][0])
    assert "cook;dur=" in r.headers["server-timing"]


def test_one_warm_model_serves_every_request(client, cook_service):
    before = cook_service.cards
    model = cook_service.model
    r = client.post(
        "/api/cook",
        files={"photo": ("x.png", _png(food=True), "application/octet-stream")},
        data={"decode": "sample", "seed": "7"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["decode"] == "sample"
    assert cook_service.cards == before + 1 and cook_service.model is model
    assert client.get("/api/health").json()["cook"]["cards"] == cook_service.cards


def _png(food: bool = False) -> bytes:
    if food:
        im = food_photo().resize((160, 120))
    else:
        im = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_bad_uploads_are_refused_with_a_message(client):
    # HTML named .jpg and sent as image/jpeg: the bytes decide, not the name or the header
    r = client.post("/api/cook", files={"photo": ("cat.jpg", b"<html>hi</html>", "image/jpeg")})
    assert r.status_code == 415
    assert "not a photo" in r.json()["error"]
    # a JPEG header on garbage: sniffed as JPEG, then refused by the decoder
    r = client.post(
        "/api/cook", files={"photo": ("a.jpg", b"\xff\xd8\xff" + b"\0" * 50, "image/jpeg")}
    )
    assert r.status_code == 422 and "cannot be read" in r.json()["error"]
    r = client.post("/api/cook", files={"photo": ("e.jpg", b"", "image/jpeg")})
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = client.post("/api/cook", data={"nothing": "here"})
    assert r.status_code == 400 and "'photo'" in r.json()["error"]
    r = client.post("/api/cook", content=b"raw", headers={"content-type": "image/jpeg"})
    assert r.status_code == 415 and "multipart" in r.json()["error"]
    r = client.post("/api/cook", files={"photo": ("x.jpg", food_jpeg())}, data={"decode": "x"})
    assert r.status_code == 400 and "unknown decoding" in r.json()["error"]


def test_pixel_cap_applies_before_decoding(client):
    big = Image.new("RGB", (7000, 6000), (200, 180, 90))  # 42 MP > 40 MP, a small PNG
    buf = io.BytesIO()
    big.save(buf, "PNG", optimize=False, compress_level=9)
    assert len(buf.getvalue()) < 2_000_000
    r = client.post("/api/cook", files={"photo": ("big.png", buf.getvalue(), "image/png")})
    assert r.status_code == 422 and "exceeds the limit" in r.json()["error"]


def test_oversize_upload_is_refused(client):
    payload = b"\xff\xd8\xff" + bytes(2_100_000)
    r = client.post("/api/cook", files={"photo": ("big.jpg", payload, "image/jpeg")})
    assert r.status_code == 413
    assert "too large" in r.json()["error"] and "2.0 MB" in r.json()["error"]


def test_a_body_without_length_is_counted_while_it_streams():
    """Chunked uploads (no Content-Length) are cut off at the cap, not read whole."""
    seen = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    chunks = [{"type": "http.request", "body": bytes(400), "more_body": True}] * 10

    async def receive():
        return chunks.pop(0)

    sent = []

    async def send(message):
        sent.append(message)

    mw = BodyLimitMiddleware(app, max_bytes=1000)
    asyncio.run(mw({"type": "http", "headers": []}, receive, send))
    assert sent[0]["status"] == 413 and sum(seen) <= 800
    assert "too large" in json.loads(sent[1]["body"])["error"]


def test_sniffing_by_magic_bytes():
    assert sniff_image(jpeg_bytes(Image.new("RGB", (4, 4)))) == "jpeg"
    assert sniff_image(_png()) == "png"
    assert sniff_image(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff_image(b"GIF89a...") == "gif"
    assert sniff_image(b"%PDF-1.4") is None and sniff_image(b"") is None


def test_no_path_traversal(client, index_dir):
    secret = (index_dir / "manifest.json").read_text()
    attempts = [
        "/api/image/..%2F..%2Fetc%2Fpasswd",
        "/api/image/../../etc/passwd",
        "/api/image/%2e%2e%2fmanifest.json",
        "/api/image/-1",
        f"/api/image/{COLLECTION}",
        "/api/image/1e3",
        "/static/..%2Fapp.py",
        "/static/../app.py",
        "/static/%2e%2e/services.py",
        "/static/cook.html",
        "/static//etc/passwd",
    ]
    for url in attempts:
        r = client.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert "root:" not in r.text and "import" not in r.text and secret not in r.text
    r = client.post("/api/search", data={"id": "../manifest.json"})
    assert r.status_code == 400 and "whole number" in r.json()["error"]
    r = client.post("/api/search", data={"token": "../../etc/passwd"})
    assert r.status_code == 400


def test_collection_images_are_served_by_id_only(client):
    listing = client.get("/api/collection", params={"per_page": 4}).json()
    assert listing["total"] == COLLECTION and listing["pages"] == 3 and len(listing["photos"]) == 4
    assert "/" not in listing["photos"][0]["name"]  # file names, never server paths
    r = client.get(listing["photos"][0]["url"], params={"size": 64})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(r.content)).size) <= 64


def test_search_with_a_box_localises_and_pages(client):
    listing = client.get("/api/collection").json()
    w, h = listing["photos"][0]["width"], listing["photos"][0]["height"]
    box = f"{w * 0.1:.0f},{h * 0.1:.0f},{w * 0.6:.0f},{h * 0.6:.0f}"
    r = client.post("/api/search", data={"id": "0", "box": box, "per_page": "3"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["format"] == "beyondvis-web-search" and out["query"]["id"] == 0
    assert out["query"]["box"] is not None and out["total"] >= 3 and out["page"] == 1
    top = out["results"]
    assert [x["rank"] for x in top] == [1, 2, 3]
    scores = [x["score"] for x in top]
    assert scores == sorted(scores, reverse=True)
    # the dish's own views rank above the colour fields, with a box inside each hit
    assert {x["id"] for x in top} <= {0, 1, 2, 3, 4}
    for x in top:
        assert x["box"] is not None
        assert 0 <= x["box"][0] < x["box"][2] <= x["width"] + 1
        assert 0 <= x["box"][1] < x["box"][3] <= x["height"] + 1
    page2 = client.post("/api/search", data={"id": "0", "box": box, "per_page": "3", "page": "2"})
    assert page2.json()["page"] == 2 and page2.json()["results"][0]["rank"] == 4
    assert page2.json()["seconds"] < out["seconds"] + 1  # served from the cached ranking


def test_search_with_an_uploaded_photo_and_its_token(client):

    im = food_photo()
    im.thumbnail((240, 240))
    r = client.post("/api/search", files={"photo": ("q.jpg", jpeg_bytes(im), "image/jpeg")})
    assert r.status_code == 200, r.text
    token = r.json()["query"]["token"]
    assert r.json()["results"][0]["id"] in {0, 3, 4}
    again = client.post("/api/search", data={"token": token, "page": "2", "per_page": "2"})
    assert again.status_code == 200 and again.json()["page"] == 2
    gone = client.post("/api/search", data={"token": "0" * 20})
    assert gone.status_code == 410 and "upload it again" in gone.json()["error"]


def test_search_errors_are_messages(client):
    r = client.post("/api/search", data={"id": str(COLLECTION)})
    assert r.status_code == 400 and "0..9" in r.json()["error"]
    r = client.post("/api/search", data={"id": "0", "box": "5,5,1,1"})
    assert r.status_code == 400 and "x0 < x1" in r.json()["error"]
    r = client.post("/api/search", data={"id": "0", "box": "5000,5000,6000,6000"})
    assert r.status_code == 400 and "outside" in r.json()["error"]
    r = client.post("/api/search", data={})
    assert r.status_code == 400 and "pick a query photo" in r.json()["error"]
    r = client.get("/api/nothing")
    assert r.status_code == 404 and "no such API route" in r.json()["error"]


def test_pages_render(client):
    cook = client.get("/cook")
    assert cook.status_code == 200 and "Photo to recipe" in cook.text
    search = client.get("/search")
    assert search.status_code == 200 and f"<b>{COLLECTION}</b> photos" in search.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/cook"
    assert client.get("/nowhere").status_code == 404
    assert client.get("/static/search.js").headers["content-type"].startswith("text/javascript")


def test_server_without_index_explains_how_to_get_one(cook_service):
    from starlette.testclient import TestClient

    from beyondvis.web import create_app

    with TestClient(create_app(None, None)) as c:
        r = c.post("/api/search", data={"id": "0"})
        assert r.status_code == 503 and "--index" in r.json()["error"]
        r = c.post("/api/cook", files={"photo": ("x.jpg", food_jpeg(), "image/jpeg")})
        assert r.status_code == 503
        assert 'data-enabled="0"' in c.get("/search").text


def test_model_pool_answers_busy_and_gives_up_late_requests():
    import threading

    import pytest

    from beyondvis.web.services import ComputePool, ServiceError

    gate = threading.Event()
    pool = ComputePool(workers=1, max_queue=1, timeout=0.3)

    async def go():
        running = asyncio.ensure_future(pool.run(lambda: gate.wait(10)))
        queued = asyncio.ensure_future(pool.run(lambda: 1))
        await asyncio.sleep(0.05)
        with pytest.raises(ServiceError) as busy:
            await pool.run(lambda: 2)
        assert busy.value.status == 503 and "busy" in str(busy.value)
        for task in (running, queued):
            with pytest.raises(ServiceError) as late:
                await task
            assert late.value.status == 504 and "longer than" in str(late.value)

    try:
        asyncio.run(go())
        assert pool.pending == 1  # the queued one was dropped, the running one goes on alone
    finally:
        gate.set()
        pool.close()
