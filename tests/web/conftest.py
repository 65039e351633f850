"""One warm app for the web tests: the shipped cook model (loaded once for the whole session,
as `beyondvis serve` does) and a small real BLCF index of photos the tests make themselves."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from _webdata import make_collection


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory) -> Path:
    """A real index (EfficientNet-Lite0 local features, a 32-word codebook fitted here)."""
    import torch

    from beyondvis.retrieval.features import FeatureConfig
    from beyondvis.retrieval.index import BLCFIndex, IndexConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("web")
    photos = make_collection(root / "photos")
    cfg = IndexConfig(features=FeatureConfig(max_side=256), codebook_size=32, chunk_size=16)
    index = BLCFIndex(cfg, device="cpu")
    index.train(photos, workers=0)
    index.add(photos, workers=0)
    index.save(root / "index")
    return root / "index"


@pytest.fixture(scope="session")
def cook_service():
    from beyondvis.web import CookService

    # greedy keeps the tests quick; the server's default is the bundle's own choice (beam)
    return CookService(device="cpu", decode="greedy")


@pytest.fixture(scope="session")
def app(cook_service, index_dir):
    from beyondvis.web import SearchService, WebConfig, create_app

    config = WebConfig(max_upload_bytes=2_000_000, request_timeout=300)
    return create_app(cook_service, SearchService(index_dir), config)


@pytest.fixture(scope="session")
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def live_server(app):
    """The same app served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
