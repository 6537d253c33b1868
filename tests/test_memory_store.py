"""The memory store (SQLite + FTS5), recall into the prompt, dataset cards from a
recorded notebook, and the ``kernelagent memory`` commands in their own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from kernelagent.errors import InvalidRequestError
from kernelagent.memory import MemoryNotFoundError, MemoryStore
from kernelagent.memory.cards import dataset_cards, finding_text, read_of
from kernelagent.memory.prompt import CHARS_PER_TOKEN, recall_section

SALES_SHA = "a" * 64
OTHER_SHA = "b" * 64


def test_same_dataset_first_then_full_text(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path, user="ann")
    unit = store.remember(
        "revenue in sales.csv is in cents", dataset_sha256=SALES_SHA, dataset_name="sales.csv"
    )
    weather = store.remember("temperatures in weather.csv are Fahrenheit")
    store.remember("the region column has trailing spaces", dataset_sha256=OTHER_SHA)
    found = store.search("what are the temperatures", datasets=[SALES_SHA])
    assert [m.id for m in found] == [unit.id, weather.id]
    assert store.search("nothing relevant here", datasets=[]) == []
    assert [m.id for m in store.search("Fahrenheit temperature")] == [weather.id]  # stemmed


def test_users_and_projects_are_separate(tmp_path: Path) -> None:
    MemoryStore(tmp_path, user="ann").remember("ann's revenue note")
    MemoryStore(tmp_path, user="ann", project="p1").remember("p1 revenue note")
    assert MemoryStore(tmp_path, user="bob").search("revenue") == []
    assert len(MemoryStore(tmp_path, user="ann").search("revenue")) == 1
    assert len(MemoryStore(tmp_path, user="ann", project="p1").search("revenue")) == 2
    assert len(MemoryStore(tmp_path, user="ann", project="p2").search("revenue")) == 1


def test_a_key_replaces_and_forget_removes(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path, user="ann")
    first = store.remember("card v1 revenue", "dataset", key="dataset:x")
    second = store.remember("card v2 revenue", "dataset", key="dataset:x")
    assert second.id == first.id and [m.text for m in store.list()] == ["card v2 revenue"]
    assert store.get(first.id[:6]).text == "card v2 revenue"
    store.forget(first.id)
    assert store.list() == [] and store.search("revenue") == []
    with pytest.raises(MemoryNotFoundError) as error:
        store.forget(first.id)
    assert "kernelagent memory list" in error.value.hint
    with pytest.raises(InvalidRequestError):
        store.remember("   ")


def test_recall_section_keeps_to_its_budget(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path, user="ann")
    memories = [store.remember(f"note {n} about revenue " + "x" * 900) for n in range(20)]
    section, shown = recall_section(memories, budget_tokens=1_500)
    assert 0 < len(shown) < 20 and len(section) <= 1_500 * CHARS_PER_TOKEN
    assert all(f"[{m.id}]" in section for m in shown)
    assert recall_section([]) == ("", [])


def test_dataset_card_from_the_recorded_cells(tmp_path: Path) -> None:
    notebook = new_notebook(metadata={"kernelagent": {}})
    notebook.metadata.kernelagent = {
        "task": "Monthly revenue?",
        "answer": "1234",
        "inputs": [{"name": "sales.csv", "size": 99, "sha256": SALES_SHA}],
    }
    failed = new_code_cell("df = pd.read_csv('sales.csv', sep=';')")
    failed.metadata.kernelagent = {"status": "error"}
    ok = new_code_cell("import pandas as pd\ndf = pd.read_csv('sales.csv', parse_dates=['date'])")
    ok.metadata.kernelagent = {
        "status": "ok",
        "manifest": [
            {"name": "df", "shape": [3, 2], "columns": [["date", "datetime64[ns]"], ["n", "int64"]]}
        ],
    }
    notebook.cells = [ok, failed]
    (card,) = dataset_cards(notebook)
    assert card.read_call == "pd.read_csv('sales.csv', parse_dates=['date'])"
    assert card.shape == [3, 2] and card.cell_id == ok.id
    text = card.text()
    assert "3 rows x 2 columns" in text and "date datetime64[ns]" in text and "sha256 aaaa" in text
    assert finding_text(notebook) == "Task: Monthly revenue? (data: sales.csv). Answer: 1234"
    assert read_of("x = open('sales.csv')", "sales.csv") is None


def test_a_card_without_a_read_has_the_header(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    notebook = nbformat.from_dict(
        {
            "metadata": {"kernelagent": {"inputs": [{"name": "t.csv", "sha256": OTHER_SHA}]}},
            "cells": [],
        }
    )
    (card,) = dataset_cards(notebook, tmp_path)
    assert card.columns == [("a", ""), ("b", "")] and "columns: a, b" in card.text()


def memory_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", "memory", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KERNELAGENT_HOME": str(home), "KERNELAGENT_USER": "ann"},
    )


def test_memory_commands(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path, user="ann")
    kept = store.remember("revenue is in cents", dataset_name="sales.csv")
    gone = store.remember("the weather file uses Fahrenheit")
    listed = memory_cli(tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {m["id"] for m in json.loads(listed.stdout)} == {kept.id, gone.id}
    searched = memory_cli(tmp_path, "search", "revenue", "--json")
    assert [m["id"] for m in json.loads(searched.stdout)] == [kept.id]
    shown = memory_cli(tmp_path, "show", kept.id)
    assert "revenue is in cents" in shown.stdout
    assert memory_cli(tmp_path, "forget", gone.id).returncode == 0
    exported = json.loads(memory_cli(tmp_path, "export", "--json").stdout)
    assert [m["id"] for m in exported] == [kept.id] and exported[0]["text"] == kept.text
    missing = memory_cli(tmp_path, "forget", "nope1234")
    assert missing.returncode != 0 and "kernelagent memory list" in missing.stderr


def test_the_toolbox_remembers_about_the_input_and_recalls_with_ids(tmp_path: Path) -> None:
    from kernelagent.memory.toolbox import MemoryToolbox

    store = MemoryStore(tmp_path, user="ann")
    toolbox = MemoryToolbox(store, "s1", [{"name": "sales.csv", "sha256": SALES_SHA}])
    saved = toolbox.remember({"text": "revenue is in cents"})
    memory = store.get(saved.metadata["memory_id"])
    assert memory.dataset_sha256 == SALES_SHA and memory.session_id == "s1"
    assert "about sales.csv" in saved.text
    other = MemoryToolbox(store, "s2", [{"name": "sales.csv", "sha256": SALES_SHA}])
    found = other.recall({"query": "units"})  # no word matches: the same data does
    assert f"[{memory.id}]" in found.text and "from session s1" in found.text
    with pytest.raises(InvalidRequestError):
        toolbox.remember({"text": "x", "kind": "dataset"})
    with pytest.raises(InvalidRequestError):
        toolbox.recall({})
