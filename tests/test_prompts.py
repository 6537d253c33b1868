"""What the system prompt shows the model about the workspace's files."""

from __future__ import annotations

from pathlib import Path

from kernelagent.agent.prompts import date_columns, file_previews, system_prompt


def test_previews_show_the_first_lines_and_name_date_columns(tmp_path: Path) -> None:
    (tmp_path / "sales.csv").write_text(
        "sale_id,date,region\n1,2023-01-04,West\n2,2023-02-11,East\n9,2023-03-01,West\n"
    )
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    preview = file_previews(tmp_path, ["sales.csv", "notes.txt", "image.png"])
    assert "sales.csv (" in preview and "    sale_id,date,region\n    1,2023-01-04,West" in preview
    assert "9,2023-03-01" not in preview  # three lines only
    assert (
        "('date' holds dates as text: read with pd.read_csv('sales.csv', parse_dates=['date'])"
        in preview
    )
    assert "notes.txt" in preview and "image.png" not in preview


def test_only_columns_whose_every_previewed_value_is_a_date_count() -> None:
    head = [
        "id,when,mixed,stamp",
        "1,2023-01-04,2023-01-01,2023-01-04 10:00",
        "2,2023-02-11,soon,2023-02-11T11:30:00",
    ]
    assert date_columns(head, ".csv") == ["when", "stamp"]
    assert date_columns(["a\tday", "1\t2024-05-06"], ".tsv") == ["day"]
    assert date_columns(["only,a,header"], ".csv") == []


def test_the_prompt_names_the_installed_libraries_and_the_files(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,y\n1,2\n")
    prompt = system_prompt("/workspace", ["data.csv"], code_blocks=True, host_workspace=tmp_path)
    assert "scikit-learn" in prompt and "Files: data.csv." in prompt and "    x,y" in prompt
