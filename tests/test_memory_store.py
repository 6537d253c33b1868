"""The memory store on both databases of the session store (SQLite + FTS5, PostgreSQL
full-text), the import of an older ``memory.db``, recall into the prompt, dataset cards
from a recorded notebook, and the ``kernelagent memory`` commands in their own process."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from kernelagent.database.backend import StoreUnavailableError
from kernelagent.errors import InvalidRequestError
from kernelagent.memory import MemoryNotFoundError, MemoryStore, open_memory_store
from kernelagent.memory.cards import dataset_cards, finding_text, read_of
from kernelagent.memory.prompt import CHARS_PER_TOKEN, recall_section

SALES_SHA = "a" * 64
OTHER_SHA = "b" * 64


def opened(home: Path, url: str, user: str = "ann", project: str | None = None) -> MemoryStore:
    return open_memory_store(home, url, user=user, project=project)


def test_same_dataset_first_then_full_text(store_url: str, tmp_path: Path) -> None:
    store = opened(tmp_path, store_url, "ann")
    unit = store.remember(
        "revenue in sales.csv is in cents", dataset_sha256=SALES_SHA, dataset_name="sales.csv"
    )
    weather = store.remember("temperatures in weather.csv are Fahrenheit")
    store.remember("the region column has trailing spaces", dataset_sha256=OTHER_SHA)
    found = store.search("what are the temperatures", datasets=[SALES_SHA])
    assert [m.id for m in found] == [unit.id, weather.id]
    assert store.search("nothing relevant here", datasets=[]) == []
    assert [m.id for m in store.search("Fahrenheit temperature")] == [weather.id]  # stemmed


def test_users_and_projects_are_separate(store_url: str, tmp_path: Path) -> None:
    opened(tmp_path, store_url, "ann").remember("ann's revenue note")
    opened(tmp_path, store_url, "ann", "p1").remember("p1 revenue note")
    assert opened(tmp_path, store_url, "bob").search("revenue") == []
    assert len(opened(tmp_path, store_url, "ann").search("revenue")) == 1
    assert len(opened(tmp_path, store_url, "ann", "p1").search("revenue")) == 2
    assert len(opened(tmp_path, store_url, "ann", "p2").search("revenue")) == 1


def test_a_key_replaces_and_forget_removes(store_url: str, tmp_path: Path) -> None:
    store = opened(tmp_path, store_url, "ann")
    first = store.remember("card alpha revenue", "dataset", key="dataset:x")
    second = store.remember("card omega revenue", "dataset", key="dataset:x")
    assert second.id == first.id and [m.text for m in store.list()] == ["card omega revenue"]
    assert store.search("alpha") == [] and store.search("omega") == [second]  # reindexed
    assert store.get(first.id[:6]).text == "card omega revenue"
    store.forget(first.id)
    assert store.list() == [] and store.search("revenue") == []
    with pytest.raises(MemoryNotFoundError) as error:
        store.forget(first.id)
    assert "kernelagent memory list" in error.value.hint
    with pytest.raises(InvalidRequestError):
        store.remember("   ")


def test_kinds_filter_and_shown_memories_rank_higher(store_url: str, tmp_path: Path) -> None:
    store = opened(tmp_path, store_url)
    older = store.remember("revenue is net of returns")
    newer = store.remember("revenue excludes tax", "finding")
    assert [m.id for m in store.list()] == [newer.id, older.id]
    assert [m.id for m in store.search("revenue", kinds=["finding"])] == [newer.id]
    store.mark_shown([older])
    store.backend.bump([older.id], by=2.9)  # score 1.0 -> 4.0: outranks a shorter match
    assert [m.id for m in store.search("revenue")] == [older.id, newer.id]
    assert store.get(older.id).score == pytest.approx(4.0)
    assert store.search("revenue", limit=1) == [store.get(older.id)]


def write_same_key(url: str, home: str, text: str) -> str:
    memory = open_memory_store(Path(home), url, user="ann").remember(
        text, "dataset", key="dataset:same"
    )
    return memory.id


def test_writers_of_one_key_in_many_processes_leave_one_memory(
    store_url: str, tmp_path: Path
) -> None:
    opened(tmp_path, store_url)  # the tables exist before the writers start
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.starmap(
            write_same_key, [(store_url, str(tmp_path), f"card {n} revenue") for n in range(8)]
        )
    (memory,) = opened(tmp_path, store_url).list()
    assert set(ids) == {memory.id} and memory.key == "dataset:same"


LEGACY_SCHEMA = """CREATE TABLE memories (
    id TEXT PRIMARY KEY, user TEXT NOT NULL, project TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL, text TEXT NOT NULL, session_id TEXT, cell_id TEXT, notebook TEXT,
    dataset_sha256 TEXT, dataset_name TEXT, score REAL NOT NULL DEFAULT 1.0, key TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
)"""


def test_a_memory_db_of_older_versions_is_imported_once(store_url: str, tmp_path: Path) -> None:
    """Before memory moved into the session store it had <home>/memory.db of its own."""
    legacy = tmp_path / "memory.db"
    db = sqlite3.connect(legacy)
    db.execute(LEGACY_SCHEMA)
    rows = [
        ("m0123456789a", "ann", "", "dataset", "card of sales.csv: revenue in cents", "s1",
         "c1", "/nb.ipynb", SALES_SHA, "sales.csv", 2.5, "dataset:x", 100.0, 200.0),
        ("m0123456789b", "bob", "p1", "fact", "bob's note on weather", None, None, None,
         None, None, 1.0, None, 50.0, 60.0),
    ]  # fmt: skip
    db.executemany(f"INSERT INTO memories VALUES ({', '.join('?' * 14)})", rows)
    db.commit()
    db.close()
    store = opened(tmp_path, store_url)
    (card,) = store.list()
    assert card.id == "m0123456789a" and card.score == 2.5 and card.created_at == 100.0
    assert card.session_id == "s1" and card.dataset_sha256 == SALES_SHA
    assert [m.id for m in store.search("cents")] == [card.id]
    assert [m.id for m in store.search("", datasets=[SALES_SHA])] == [card.id]
    assert [m.text for m in opened(tmp_path, store_url, "bob", "p1").list()] == [rows[1][4]]
    assert not legacy.exists() and (tmp_path / "memory.db.imported").is_file()
    assert store.remember("card v2", "dataset", key="dataset:x").id == card.id
    (tmp_path / "memory.db.imported").rename(legacy)  # imported again: nothing doubles
    assert [m.text for m in opened(tmp_path, store_url).list()] == ["card v2"]


def test_an_unreachable_postgres_is_one_clear_line(tmp_path: Path) -> None:
    url = "postgresql://kernelagent:secret@127.0.0.1:9/nowhere"  # nothing listens on port 9
    with pytest.raises(StoreUnavailableError) as error:
        open_memory_store(tmp_path, url)
    assert "KERNELAGENT_STORE_URL" in error.value.hint and "secret" not in str(error.value)
    done = subprocess.run(
        [sys.executable, "-m", "kernelagent.cli", "--store", url, "memory", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KERNELAGENT_HOME": str(tmp_path)},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    first, hint = done.stderr.strip().splitlines()
    assert first.startswith("error: cannot reach the session store postgresql://kernelagent:***@")
    assert "KERNELAGENT_STORE_URL" in hint


def test_recall_section_keeps_to_its_budget(store_url: str, tmp_path: Path) -> None:
    store = opened(tmp_path, store_url, "ann")
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
    # the code whose output showed the answer goes with it: how the data had to be read
    shown = new_code_cell("# total\ndf = df.drop_duplicates()\nprint(df['n'].sum())")
    shown.metadata.kernelagent = {"status": "ok"}
    shown.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1234\n")]
    notebook.cells.append(shown)
    assert finding_text(notebook) == (
        "Task: Monthly revenue? (data: sales.csv). Answer: 1234. "
        "Computed by: `df = df.drop_duplicates(); print(df['n'].sum())`"
    )
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


def test_memory_commands(store_url: str, tmp_path: Path) -> None:
    store = opened(tmp_path, store_url, "ann")
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


def test_the_toolbox_remembers_about_the_input_and_recalls_with_ids(
    store_url: str, tmp_path: Path
) -> None:
    from kernelagent.memory.toolbox import MemoryToolbox

    store = opened(tmp_path, store_url, "ann")
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
