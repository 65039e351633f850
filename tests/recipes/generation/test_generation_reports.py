"""What ``generation table|evaluate`` write besides printing: the table JSON (as printed) and the
cards as JSON Lines, both atomic; an unknown table is refused before any data is read."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from beyondvis.recipes.generation import TABLES, generation_table, write_cards, write_table


def test_write_table_is_the_printed_object(tmp_path):
    rows = [{"model": "ff_bce", "iou": 0.25}, {"model": "tf_set", "iou": 0.5}]
    out = tmp_path / "sub" / "table.json"
    write_table(rows, out)
    text = out.read_text()
    assert text.endswith("}\n") and json.loads(text) == {
        "format": "beyondvis.generation.table/1",
        "rows": rows,
    }
    assert list(tmp_path.joinpath("sub").iterdir()) == [out]  # no temporary file left behind


def test_unknown_table_is_refused_before_the_data(tmp_path):
    assert TABLES == ("ingredients", "fusions", "retrieval")
    with pytest.raises(ValueError, match="unknown table 'perplexity'; choose from ingredients"):
        generation_table(None, "perplexity")  # no config needed: nothing is read


@dataclass
class _Card:
    title: str
    ingredients: list[str]


def test_write_cards_one_json_line_per_card(tmp_path):
    path = tmp_path / "cards.jsonl"
    write_cards([_Card("Crème brûlée", ["cream", "sugar"]), _Card("Toast", [])], path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"title": "Crème brûlée", "ingredients": ["cream", "sugar"]},
        {"title": "Toast", "ingredients": []},
    ]
    assert "Crème" in lines[0]  # written as UTF-8, not \\u escapes


def test_table_command_dispatches_and_writes_what_it_prints(tmp_path, monkeypatch, capsys):
    """``generation table WHICH`` -> the one library call; the data and the tables are
    stand-ins here (the real ones train models), the dispatch and the outputs are not."""
    from beyondvis.cli.main import main
    from beyondvis.recipes.generation import INGREDIENT_MODELS, PACKAGE_BUNDLE, experiment, tables

    calls = []
    monkeypatch.setattr(experiment, "load_data", lambda cfg: "DATA")
    monkeypatch.setattr(
        tables, "ingredient_table", lambda cfg, data, models: calls.append(models) or [{"m": 1}]
    )
    monkeypatch.setattr(
        tables, "fusion_table", lambda cfg, data, only: calls.append(only) or [{"f": 2}]
    )
    monkeypatch.setattr(
        tables, "retrieval_table", lambda data, bundle: calls.append(bundle) or {"r": 3}
    )
    base = ["generation", "table", "--config", "generation/tables", "--threads", "1"]
    out = tmp_path / "t.json"
    assert main([*base[:2], "ingredients", *base[2:], "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed
        == json.loads(out.read_text())
        == {
            "format": "beyondvis.generation.table/1",
            "rows": [{"m": 1}],
        }
    )
    assert main([*base[:2], "fusions", *base[2:], "--models", "I2R,L2R"]) == 0
    assert main([*base[:2], "retrieval", *base[2:]]) == 0
    assert calls == [INGREDIENT_MODELS, ("I2R", "L2R"), PACKAGE_BUNDLE]
