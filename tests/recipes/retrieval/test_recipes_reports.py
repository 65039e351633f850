"""``beyondvis.recipes`` retrieval reports (what ``recipes table|search|arithmetic`` print): the
thesis table from run folders, ranked results as the documented objects, and their text."""

from __future__ import annotations

import json

import pytest

from beyondvis.recipes import (
    RecipeRunError,
    arithmetic_lines,
    format_metrics,
    open_searcher,
    recipe_arithmetic,
    results_table,
    search_lines,
    search_recipes,
)


def _metrics(medr: float, r1: float) -> dict:
    side = {"medR": medr, "R@1": r1, "R@5": min(1.0, 2 * r1), "R@10": min(1.0, 3 * r1)}
    return {"protocol": {"pairs": 12, "n_subsets": 2, "subset_size": 10},
            "im2recipe": side, "recipe2im": dict(side, medR=medr + 1)}  # fmt: skip


def test_results_table_rows_from_baselines_and_runs(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    run.mkdir()
    with pytest.raises(RecipeRunError, match="nothing to tabulate"):
        results_table(data)
    with pytest.raises(RecipeRunError, match=r"results.json missing: train that run first"):
        results_table(data, [("joint", run)])
    (run / "results.json").write_text(json.dumps({"test": _metrics(3, 0.25)}))
    baselines = {"random": {"test": _metrics(6, 0.1)}, "cca": {"test": _metrics(4, 0.2)}}
    (data / "baselines.json").write_text(json.dumps(baselines))
    lines = results_table(data, [("joint", run)]).split("\n")
    assert lines[0] == "Test pairs: 12 (mean of 2 subsets of 10)" and lines[1] == ""
    assert lines[2].startswith("| method | im2recipe medR |") and lines[3].startswith("|---|")
    assert (
        lines[4] == "| random ranking | 6.0 | 0.100 | 0.200 | 0.300 | 7.0 | 0.100 | 0.200 | 0.300 |"
    )
    assert lines[5].startswith("| CCA (w2v + skip-instr. + image) | 4.0 | 0.200 |")
    assert lines[6] == "| joint | 3.0 | 0.250 | 0.500 | 0.750 | 4.0 | 0.250 | 0.500 | 0.750 |"
    assert format_metrics(_metrics(3, 0.25)).split("\n") == [
        "test pairs 12, 2 subsets of 10",
        "im2recipe: medR 3.0 R@1 0.250 R@5 0.500 R@10 0.750",
        "recipe2im: medR 4.0 R@1 0.250 R@5 0.500 R@10 0.750",
    ]


class _Searcher:
    """The RecipeSearcher calls the reports make, answering from a fixed ranking."""

    hits = [(0.91234, {"id": "r1", "title": "apple pie", "image": "p1.jpg"}),
            (0.5, {"id": "r2", "title": "pear tart"})]  # fmt: skip

    def search_image(self, path, top):
        return self.hits[:top]

    def search_text(self, text, top):
        return self.hits[:top], ["apple"]

    def arithmetic(self, plus, minus, top, space):
        assert space == "images"
        return self.hits[:top]


def test_search_objects_and_lines(tmp_path):
    photo = tmp_path / "dish.jpg"
    photo.write_bytes(b"")
    out = search_recipes(_Searcher(), image=str(photo), top=2)
    assert out["query"] == {"image": str(photo)}
    assert out["results"][0] == {"rank": 1, "score": 0.9123, "id": "r1", "title": "apple pie",
                                 "image": "p1.jpg"}  # fmt: skip
    assert search_lines(out) == ["1. 0.912  apple pie  [p1.jpg]", "2. 0.500  pear tart  [r2]"]
    text = search_recipes(_Searcher(), text="apple pie", top=1)
    assert text["query"] == {"text": "apple pie", "ingredients_found": ["apple"]}
    assert search_lines(text) == ["ingredients recognised: apple", "1. 0.912  apple pie  [p1.jpg]"]
    with pytest.raises(RecipeRunError, match="no such file"):
        search_recipes(_Searcher(), image=str(tmp_path / "none.jpg"))
    with pytest.raises(RecipeRunError, match="exactly one"):
        search_recipes(_Searcher(), image=str(photo), text="pie")
    arith = recipe_arithmetic(_Searcher(), ["chicken pizza", "salad"], ["pizza"], 1, "images")
    assert list(arith) == ["plus", "minus", "results"] and len(arith["results"]) == 1
    assert arithmetic_lines(arith) == ["chicken pizza + salad - pizza", "1. 0.912  apple pie"]
    with pytest.raises(RecipeRunError, match="not a search bundle"):
        open_searcher(tmp_path)
