"""The task benchmark's scorer and suite: fast, no model, no Docker."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.benchmarks.scoring import (
    check_png,
    clean_answer,
    parse_list,
    parse_number,
    score,
    score_task,
)
from tests.benchmarks.tasks.datasets import FILES, generate
from tests.benchmarks.tasks.suite import BY_ID, REPRESENTATIVE, TASKS, select


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        ("42", 42.0),
        ("FINAL ANSWER: 1,007,910.55", 1007910.55),
        ("final answer: $1,234.50", 1234.5),
        ("**29.4%**", 29.4),
        ("`-0.836`", -0.836),
        ("\u22120.5", -0.5),
        ("The total revenue is 1007910.55", 1007910.55),
        ("In 2023 the total was 287,324.74 USD", 287324.74),
        ("12.5% (rounded to 1 decimal)", 12.5),
        ("np.float64(22.19)", 22.19),
        ("1_000", 1000.0),
        ("2226.25 per year", 2226.25),
        ("1.5e3", 1500.0),
        ("136.", 136.0),
        (np.float64(3.25), 3.25),
        (7, 7.0),
        ("'15'", 15.0),
    ],
)
def test_parse_number(answer: object, value: float) -> None:
    assert parse_number(answer) == pytest.approx(value)


@pytest.mark.parametrize("answer", ["", "none", "West", None, "nan", True])
def test_parse_number_without_a_number(answer: object) -> None:
    assert parse_number(answer) is None


def test_clean_answer_strips_prefixes_and_markdown() -> None:
    assert clean_answer("FINAL ANSWER: **West**") == "West"
    assert clean_answer('  `"Friday"` ') == "Friday"
    assert clean_answer("Answer: \\boxed{12}") == "12"


def test_number_tolerances() -> None:
    assert score("22.19", "number", 22.19, abs_tol=0.01).passed
    assert score("22.2", "number", 22.19, abs_tol=0.01).passed  # one unit in the last place
    assert not score("22.21", "number", 22.19, abs_tol=0.01).passed
    assert score("0.1 + 0.2 = 0.30000000000000004", "number", 0.3).passed
    assert not score("197", "number", 196.0).passed
    assert score("1000", "number", 1010, rel_tol=0.01).passed
    failed = score("197", "number", 196.0)
    assert failed.parsed == 197.0 and "197 != 196" in failed.reason
    assert score(None, "number", 1).reason == "no answer"
    assert score("n/a", "number", 1).reason == "no number in the answer"


@pytest.mark.parametrize(
    "answer", ["West", "west", " WEST. ", "**West**", "FINAL ANSWER: 'West'", "Region: West"]
)
def test_string_matches(answer: str) -> None:
    assert score(answer, "string", "West").passed


@pytest.mark.parametrize("answer", ["East", "West region", "Westfield", ""])
def test_string_mismatches(answer: str) -> None:
    assert not score(answer, "string", "West").passed


def test_string_whitespace_and_aliases() -> None:
    assert score("small   business", "string", "Small Business").passed
    assert score("Dec", "string", ("December", "Dec")).passed


@pytest.mark.parametrize(
    "answer",
    [
        "Widget, Gadget, Doohickey",
        "['Widget', 'Gadget', 'Doohickey']",
        "Widget; Gadget; Doohickey",
        "1. Widget\n2. Gadget\n3. Doohickey",
        "- widget\n- gadget\n- doohickey",
        "Widget, Gadget and Doohickey",
        ["Widget", "Gadget", "Doohickey"],
    ],
)
def test_list_forms(answer: object) -> None:
    assert parse_list(answer) == ["widget", "gadget", "doohickey"]
    assert score(answer, "list", ["Widget", "Gadget", "Doohickey"], ordered=True).passed


def test_list_order_and_sets() -> None:
    expected = ["Widget", "Gadget", "Doohickey"]
    assert not score("Gadget, Widget, Doohickey", "list", expected, ordered=True).passed
    assert score("Gadget, Widget, Doohickey", "list", expected, ordered=False).passed
    missing = score("Widget, Gadget", "list", expected, ordered=False)
    assert not missing.passed and "doohickey" in missing.reason
    assert not score("Widget, Gadget, Doohickey, Gizmo", "list", expected, ordered=False).passed
    assert not score("Widget, Widget, Gadget, Doohickey", "list", expected, ordered=False).passed


def _png(width: int, height: int, payload: int = 5000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", bytes(payload))
        + chunk(b"IEND", b"")
    )


def test_check_png(tmp_path: Path) -> None:
    assert not check_png(tmp_path / "plot.png").ok
    (tmp_path / "plot.png").write_bytes(b"not a png" * 1000)
    assert "not a PNG" in check_png(tmp_path / "plot.png").reason
    (tmp_path / "plot.png").write_bytes(_png(20, 20, payload=10))
    assert "too small" in check_png(tmp_path / "plot.png").reason
    (tmp_path / "plot.png").write_bytes(_png(640, 480))
    good = check_png(tmp_path / "plot.png")
    assert good.ok and (good.width, good.height) == (640, 480)


def test_score_task_needs_the_artifact(tmp_path: Path) -> None:
    task = BY_ID["plot_region_bars"]
    assert not score_task(task, "4", 4.0, tmp_path).passed
    (tmp_path / "plot.png").write_bytes(_png(640, 480))
    assert score_task(task, "4", 4.0, tmp_path).passed
    assert not score_task(task, "5", 4.0, tmp_path).passed


# --- the suite ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("task-data")
    generate(directory)
    return directory


def test_data_is_deterministic_and_small(data_dir: Path, tmp_path: Path) -> None:
    generate(tmp_path)
    total = 0
    for name in FILES:
        first, second = (data_dir / name).read_bytes(), (tmp_path / name).read_bytes()
        assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest(), name
        total += len(first)
    assert total < 5 * 1024 * 1024


def test_suite_shape(data_dir: Path) -> None:
    assert len(TASKS) >= 30
    categories = {task.category for task in TASKS}
    assert {
        "aggregation",
        "filtering",
        "join",
        "dates",
        "missing",
        "correlation",
        "regression",
        "plot",
        "multi-step",
    } <= categories
    assert set(REPRESENTATIVE) <= set(BY_ID)
    for task in TASKS:
        assert all((data_dir / name).is_file() for name in task.files), task.id
        assert all(name in task.question for name in task.files), (
            f"{task.id}: the question names its files"
        )
        expected = task.expected(data_dir)
        assert expected is not None and expected == task.expected(data_dir), task.id
        if task.kind == "number":
            assert np.isfinite(float(expected)), task.id
        elif task.kind == "list":
            assert isinstance(expected, list) and expected, task.id
        # the expected answer, as an agent would write it, passes its own task
        answer = ", ".join(expected) if task.kind == "list" else str(expected)
        assert score(
            answer,
            task.kind,
            expected,
            abs_tol=task.abs_tol,
            rel_tol=task.rel_tol,
            ordered=task.ordered,
        ).passed, task.id


def test_select() -> None:
    assert [t.id for t in select("top_region,total_revenue")] == ["top_region", "total_revenue"]
    assert [t.id for t in select(representative=True)] == list(REPRESENTATIVE)
    assert len(select(limit=3)) == 3
    with pytest.raises(KeyError):
        select("nope")
