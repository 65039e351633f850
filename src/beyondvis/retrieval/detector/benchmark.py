"""Thesis Tables 3.1-3.3 on an Oxford-format benchmark (e.g. ``beyondvis data make-instances``).

One detector index is built per network (off the shelf, FT_fc, FT_all) and cached under
``cache/`` with its build time; the query vectors are computed once per index, so every row of
a table is a search over stored vectors, as in :class:`~beyondvis.retrieval.InstanceBenchmark`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from beyondvis.data.oxford import read_gt_files
from beyondvis.io import iter_image_paths
from beyondvis.retrieval.detector.finetune import FinetuneConfig, queries_from_gt
from beyondvis.retrieval.detector.index import DetectorIndex, DetectorSearchConfig
from beyondvis.retrieval.detector.model import DetectorConfig
from beyondvis.retrieval.detector.pooling import KINDS, pool_box, pool_map
from beyondvis.retrieval.evaluate import mean_average_precision
from beyondvis.utils import atomic_write_json
from beyondvis.validation import ValidationError

log = logging.getLogger(__name__)
NETWORKS = ("off-the-shelf", "FT_fc", "FT_all")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


class DetectorBenchmark:
    """Indexes of a benchmark's database photos, one per network, and their query vectors."""

    def __init__(
        self,
        root: str | Path,
        config: DetectorConfig | None = None,
        cache: str | Path = ".cache/retrieval-frcnn",
        device: str = "cpu",
        finetune: FinetuneConfig | None = None,
        limit: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.config = config or DetectorConfig()
        self.device = device
        self.finetune_config = finetune or FinetuneConfig()
        self.queries = queries_from_gt(self.root)
        self.gt = {q.name: q.as_gt() for q in read_gt_files(self.root / "gt_files")}
        images = self.root / "images" if (self.root / "images").is_dir() else self.root / "jpg"
        self.photos = list(iter_image_paths(images))
        if limit is not None:  # a subset: every positive, then distractors up to ``limit``
            wanted = {n for g in self.gt.values() for n in (*g["good"], *g["ok"], *g["junk"])}
            pos = [p for p in self.photos if p.stem in wanted]
            rest = [p for p in self.photos if p.stem not in wanted]
            self.photos = pos + rest[: max(0, limit - len(pos))]
        key = json.dumps(
            {"config": self.config.to_dict(), "ft": vars(self.finetune_config),
             "photos": [str(p) for p in self.photos]}, sort_keys=True, default=str,
        )  # fmt: skip
        self.cache = Path(cache) / hashlib.sha256(key.encode()).hexdigest()[:12]
        self.indexes: dict[str, DetectorIndex] = {}
        self.build_seconds: dict[str, float] = {}
        self._qvecs: dict[str, list] = {}

    def index(self, network: str) -> DetectorIndex:
        """The index of ``network`` (built, or loaded from the cache)."""
        if network in self.indexes:
            return self.indexes[network]
        if network not in NETWORKS:
            raise ValueError(f"unknown network {network!r}; choose from {NETWORKS}")
        folder = self.cache / network
        meta = folder / "build.json"
        if meta.exists() and (folder / "manifest.json").exists():
            index = DetectorIndex.load(folder, device=self.device)
            self.build_seconds[network] = json.loads(meta.read_text())["seconds"]
        else:
            mode = {"FT_fc": "fc", "FT_all": "all"}.get(network)
            t0 = time.perf_counter()
            index = DetectorIndex(replace(self.config, classes=[]), device=self.device)
            ft = None if mode is None else replace(self.finetune_config, mode=mode)
            index.train(self.photos, self.queries, ft, work_dir=folder / "work", progress=True)
            index.add(self.photos, progress=True)
            seconds = time.perf_counter() - t0
            index.save(folder)
            atomic_write_json(meta, {"seconds": seconds, "photos": len(index)})
            self.build_seconds[network] = seconds
        self.indexes[network] = index
        return index

    def query_vectors(self, network: str) -> list:
        """(name, {ipa kind: vec}, {rpa kind: vec}, class id) per query, encoded once."""
        if network not in self._qvecs:
            index = self.index(network)
            out = []
            for q in self.queries:
                enc = index.encode(q.image)
                fmap = enc.fmap.astype(np.float32)
                ipa = {k: index.post[f"ipa.{k}"](pool_map(fmap, k)) for k in KINDS}
                rpa = {k: index.post[f"rpa.{k}"](pool_box(fmap, q.box, enc.size, k)) for k in KINDS}
                cls = index.classes.index(q.name) + 1 if q.name in index.classes else None
                out.append((q.name, ipa, rpa, cls))
            self._qvecs[network] = out
        return self._qvecs[network]

    def run(self, network: str, search: DetectorSearchConfig) -> float:
        """mAP of one search configuration (the whole ranking of every query)."""
        index = self.index(network)
        rankings = {}
        for name, ipa, rpa, cls in self.query_vectors(network):
            hits = index.search_vectors(ipa[search.ipa], rpa[search.rpa], search, cls, k=0)
            rankings[name] = [Path(h.image).stem for h in hits]
        return mean_average_precision(rankings, self.gt)

    def latency(self, network: str, search: DetectorSearchConfig, repeats: int = 1) -> float:
        """Median seconds of ``index.search`` (query photo decoded and encoded included)."""
        index = self.index(network)
        times = []
        for _ in range(repeats):
            for q in self.queries:
                t0 = time.perf_counter()
                index.search(q.image, q.box, k=20, config=search, query_class=q.name
                             if search.rerank == "cs" else None)  # fmt: skip
                times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def bytes_per_image(self, network: str) -> float:
        """Bytes the index spends per photo (vectors, maps, proposals, paths), the network
        and whitening (``model_bytes``) left out: they do not grow with the collection."""
        folder = self.cache / network
        n = max(len(self.index(network)), 1)
        return sum((folder / f).stat().st_size for f in ("vectors.npz", "images.json")) / n

    def model_bytes(self, network: str) -> int:
        folder = self.cache / network
        self.index(network)
        return sum((folder / f).stat().st_size for f in ("detector.pt", "model.npz"))


def pooling_rows(bench: DetectorBenchmark, qe_top: int = 5) -> list[dict]:
    """Table 3.1: IPA sum / max filtering, then no reranking or CA-SR with RPA sum / max."""
    rows = []
    for ipa in KINDS:
        for rerank in (None, "sum", "max"):
            cfg = DetectorSearchConfig(
                ipa=ipa, rpa=rerank or "max", rerank="ca" if rerank else None
            )
            rows.append({
                "filtering": f"IPA-{ipa}",
                "reranking": f"RPA-{rerank}" if rerank else "none",
                "map": bench.run("off-the-shelf", cfg),
            })  # fmt: skip
    return rows


def stage_rows(bench: DetectorBenchmark, networks=NETWORKS, qe_top: int = 5) -> list[dict]:
    """Tables 3.2 / 3.3: IPA-sum filtering, CA-SR (RPA-max) or CS-SR, with and without QE."""
    # "+ QE": the expanded IPA ranking reranked again (final order spatial); "then QE": the
    # expanded IPA ranking as the final order
    stages = [("filtering", None, 0, True), ("filtering + QE", None, qe_top, True),
              ("CA-SR", "ca", 0, True), ("CA-SR + QE", "ca", qe_top, True),
              ("CA-SR then QE", "ca", qe_top, False),
              ("CS-SR", "cs", 0, True), ("CS-SR + QE", "cs", qe_top, True),
              ("CS-SR then QE", "cs", qe_top, False)]  # fmt: skip
    rows = []
    for label, rerank, qe, again in stages:
        row = {"stage": label}
        for net in networks:
            if rerank == "cs" and net == "off-the-shelf":
                row[net] = None  # no query classes without fine-tuning
                continue
            cfg = DetectorSearchConfig(rerank=rerank, qe_top=qe, qe_rerank=again)
            row[net] = bench.run(net, cfg)
        rows.append(row)
    return rows


def cost_rows(bench: DetectorBenchmark, networks=NETWORKS, qe_top: int = 5) -> list[dict]:
    """mAP of the thesis' final pipeline per network, index bytes per photo, median query
    latency and build time (fine-tuning included)."""
    rows = []
    for net in networks:
        rerank = "ca" if net == "off-the-shelf" else "cs"
        cfg = DetectorSearchConfig(rerank=rerank, qe_top=qe_top)
        rows.append({
            "method": f"frcnn {net} ({'CA' if rerank == 'ca' else 'CS'}-SR + QE)",
            "map": bench.run(net, cfg),
            "bytes_per_image": bench.bytes_per_image(net),
            "model_bytes": bench.model_bytes(net),
            "query_seconds": bench.latency(net, cfg),
            "build_seconds": bench.build_seconds[net],
        })  # fmt: skip
    return rows


def detector_tables(
    bench: DetectorBenchmark, tables=("pooling", "stages", "cost"), networks=NETWORKS
) -> dict[str, list[dict]]:
    out = {}
    if "pooling" in tables:
        out["pooling"] = pooling_rows(bench)
    if "stages" in tables:
        out["stages"] = stage_rows(bench, networks)
    if "cost" in tables:
        out["cost"] = cost_rows(bench, networks)
    return out


EVALUATION_FORMAT = "beyondvis-frcnn-evaluation"
EVALUATION_FORMAT_VERSION = 1
TABLE_NAMES = ("pooling", "stages", "cost")
COST_COLUMNS = ["method", "map", "bytes_per_image", "model_bytes", "query_seconds",
                "build_seconds"]  # fmt: skip


def detector_table_text(name: str, rows: list[dict], networks: Sequence[str] = NETWORKS) -> str:
    """A table of :func:`evaluate_detector` as its title and a Markdown table."""
    from beyondvis.utils import markdown_table

    if name == "pooling":
        title, columns = (
            "Sum vs max pooling, off the shelf (mAP)",
            ["filtering", "reranking", "map"],
        )
    elif name == "stages":
        title = "Reranking and query expansion (mAP; IPA-sum filtering, CA-SR with RPA-max)"
        columns = ["stage", *networks]
    else:
        title, columns = "Cost", COST_COLUMNS
    return f"\n{title}\n" + markdown_table(rows, columns)


def evaluate_detector(
    dataset: str | Path,
    config: DetectorConfig | None = None,
    cache: str | Path = ".cache/retrieval",
    device: str = "cpu",
    finetune: FinetuneConfig | None = None,
    tables: Iterable[str] = TABLE_NAMES,
    networks: Sequence[str] = NETWORKS,
    report: Callable[[str], Any] | None = None,
) -> dict:
    """Thesis Tables 3.1-3.3 of the detector index on ``dataset``: the
    ``beyondvis-frcnn-evaluation`` object (docs/formats.md).

    ``tables`` not among ``pooling``/``stages``/``cost`` are ignored (none left: all three);
    the pooling table needs the off-the-shelf network. Indexes are cached under
    ``cache/frcnn``. ``report`` receives the summary line, then each table's text.
    """
    networks = tuple(n.strip() for n in networks if n.strip())
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        raise ValidationError(f"unknown network(s) {unknown}; choose from {', '.join(NETWORKS)}")
    names = {t.strip() for t in tables} & set(TABLE_NAMES)
    if not names:
        names = set(TABLE_NAMES)
    bench = DetectorBenchmark(dataset, config, Path(cache) / "frcnn", device, finetune)
    if "off-the-shelf" not in networks:
        names.discard("pooling")
    out = detector_tables(bench, names, networks)
    if report is not None:
        report(f"{len(bench.photos)} database images, {len(bench.queries)} queries")
        for name in TABLE_NAMES:
            if name in out:
                report(detector_table_text(name, out[name], networks))
    return {
        "format": EVALUATION_FORMAT,
        "format_version": EVALUATION_FORMAT_VERSION,
        "config": bench.config.to_dict(),
        "database_images": len(bench.photos),
        "queries": len(bench.queries),
        **out,
    }
