"""The BLCF thesis tables on an Oxford-format benchmark as one call: :func:`evaluate_blcf`.

It fits the bag of words (a codebook fitted on the database, the thesis protocol, or a shipped
one), runs the asked tables (pooling baselines, pipeline stages, localisation of the reranked
positives) and returns the ``beyondvis-blcf-evaluation`` object (docs/formats.md). ``report``
receives each piece of text (the benchmark's summary, then each table in Markdown) as soon as it
is ready, so a caller printing them shows progress over a run that can take hours.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import Any

from beyondvis.utils import markdown_table
from beyondvis.validation import ValidationError

EVALUATION_FORMAT = "beyondvis-blcf-evaluation"
EVALUATION_FORMAT_VERSION = 1
# table name -> (title, columns), in the order they run and appear in the JSON object
TABLES: dict[str, tuple[str, list[str]]] = {
    "pooling": ("BoW vs pooling (mAP)", ["method", "mode", "map"]),
    "stages": ("Pipeline stages (mAP)", ["stage", "map", "map_qaug"]),
    "localisation": (
        "Localisation of reranked positives",
        ["stage", "positives_reranked", "mean_iou", "iou_ge_0.3", "iou_ge_0.5"],
    ),
}


def check_tables(tables: Iterable[str]) -> set[str]:
    """The set of table names, refusing unknown ones (:class:`ValidationError`)."""
    names = {t.strip() for t in tables if t.strip()}
    if not names <= set(TABLES):
        raise ValidationError(f"unknown table(s) {sorted(names - set(TABLES))}")
    return names


def table_text(name: str, rows: list[dict]) -> str:
    """A table of :func:`evaluate_blcf` as its title and a Markdown table."""
    title, columns = TABLES[name]
    return f"\n{title}\n" + markdown_table(rows, columns)


def evaluate_blcf(
    dataset: str | os.PathLike,
    config: Any,
    cache: str | os.PathLike,
    device: str = "cpu",
    tables: Iterable[str] = ("stages", "pooling"),
    codebook: str = "fitted",
    rerank: Any = None,
    qe_top: int = 10,
    stages: Sequence[str] | None = None,
    max_words: int | None = 100,
    report: Callable[[str], Any] | None = None,
    extractor: Any = None,
) -> dict:
    """The thesis tables of a BLCF index with ``config`` (an IndexConfig) on ``dataset``.

    ``codebook`` is ``"fitted"`` (PCA + k-means on the database) or a shipped codebook's name
    (``"generic"``); ``rerank`` the reranking's :class:`~beyondvis.retrieval.RerankConfig`;
    ``stages`` the stage rows to run (default all); ``extractor`` replaces the backbone (tests).
    Local features are cached under ``cache`` and reused by the next run.
    """
    from beyondvis.retrieval.benchmark import (
        InstanceBenchmark,
        localisation_table,
        pooling_table,
        stage_table,
    )
    from beyondvis.retrieval.index import shipped_model
    from beyondvis.retrieval.rerank import RerankConfig

    names = check_tables(tables)
    say = report or (lambda text: None)
    rerank = rerank or RerankConfig()
    t0 = time.perf_counter()
    bench = InstanceBenchmark(dataset, config, cache, device)
    if extractor is not None:
        bench._extractor = extractor
    model = None if codebook == "fitted" else shipped_model(codebook)
    bench.fit_bow(model)
    out: dict[str, Any] = {
        "format": EVALUATION_FORMAT,
        "format_version": EVALUATION_FORMAT_VERSION,
        "config": asdict(bench.model.config),
        "codebook": codebook,
        "database_images": len(bench.names),
        "queries": len(bench.gt),
    }
    say(
        f"{len(bench.names)} database images, {len(bench.gt)} queries, {codebook} codebook "
        f"of {bench.model.codebook.size} words "
        f"(features + codebook {time.perf_counter() - t0:.0f}s)"
    )
    runners = {
        "pooling": lambda: pooling_table(bench),
        "stages": lambda: stage_table(
            bench, rerank, qe_top, list(stages) if stages else None, max_words
        ),
        "localisation": lambda: localisation_table(bench, rerank),
    }
    for name in TABLES:
        if name in names:
            out[name] = runners[name]()
            say(table_text(name, out[name]))
    return out
