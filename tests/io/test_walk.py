"""Folder walkers and the skip-and-report dataset."""

from __future__ import annotations

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

from beyondvis.io import (
    ImageListDataset,
    collate_images,
    iter_image_paths,
    scan_images,
)


def _folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "a.jpg")
    Image.new("L", (20, 10), 5).save(tmp_path / "sub" / "b.PNG")
    Image.new("RGB", (20, 10)).save(tmp_path / ".hidden" / "c.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "readme.txt").write_text("not an image extension")
    return tmp_path


def test_iter_image_paths_filters_and_sorts(tmp_path):
    root = _folder(tmp_path)
    names = [p.relative_to(root).as_posix() for p in iter_image_paths(root)]
    assert names == ["a.jpg", "broken.jpg", "empty.png", "sub/b.PNG"]
    assert [p.name for p in iter_image_paths(root, recursive=False)] == [
        "a.jpg",
        "broken.jpg",
        "empty.png",
    ]


def test_scan_reports_bad_files(tmp_path):
    report = scan_images(_folder(tmp_path))
    assert sorted(p.name for p in report.ok) == ["a.jpg", "b.PNG"]
    bad = {b.path.split("/")[-1]: b.reason for b in report.bad}
    assert set(bad) == {"broken.jpg", "empty.png"}
    assert "empty" in bad["empty.png"]
    assert "2 image(s) readable, 2 skipped" in report.summary()


def test_dataset_and_collate_skip_bad_items(tmp_path):
    root = _folder(tmp_path)
    paths = list(iter_image_paths(root))

    def to_tensor(image):
        import torch

        return torch.from_numpy(np.asarray(image.resize((8, 8))).copy()).permute(2, 0, 1)

    loader = DataLoader(
        ImageListDataset(paths, transform=to_tensor), batch_size=3, collate_fn=collate_images
    )
    batches = list(loader)
    good = [p for b in batches for p in b.paths]
    errors = [e for b in batches for e in b.errors]
    assert sorted(p.split("/")[-1] for p in good) == ["a.jpg", "b.PNG"]
    assert sorted(e.path.split("/")[-1] for e in errors) == ["broken.jpg", "empty.png"]
    first = batches[0]
    assert first.images.shape == (len(first), 3, 8, 8)
    assert [paths[i].as_posix() for i in first.indices] == first.paths
