"""Recording cost per cell as a session grows, against a naive full ``nbformat.write``.

    python -m tests.benchmarks.bench_recorder [--sizes 10 100 500]

A cell is CellStarted + 3 CellOutput + CellFinished (about 5 KB of outputs), which is
two atomic, fsynced saves. "ours" is the p50 over the last 10 cells of a session of
N cells; the baseline is one ``nbformat.write`` of the same N-cell notebook (what a
recorder that rewrites the whole notebook once per cell would pay), p50 of 10.
"""

from __future__ import annotations

import argparse
import base64
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

from kernelagent.events import CellFinished, CellOutput, CellStarted, UserMessage
from kernelagent.notebook import NotebookRecorder
from tests.benchmarks.report import Row, ms, p50, write_table

LAST_CELLS = 10


def cell_outputs(index: int, rng: random.Random) -> list[dict[str, Any]]:
    text = "".join(f"step {index}.{line}: loss={rng.random():.6f}\n" for line in range(30))
    png = base64.b64encode(rng.randbytes(2500)).decode()
    return [
        {"output_type": "stream", "name": "stdout", "text": text},
        {
            "output_type": "display_data",
            "data": {"image/png": png, "text/plain": "<Figure>"},
            "metadata": {},
        },
        {
            "output_type": "execute_result",
            "execution_count": index + 1,
            "data": {"text/plain": repr([rng.random() for _ in range(20)])},
            "metadata": {},
        },
    ]


def record_cell(recorder: NotebookRecorder, index: int, outputs: list[dict[str, Any]]) -> None:
    cell_id = f"cell-{index}"
    started = time.time()
    recorder.handle(
        CellStarted(
            cell_id=cell_id,
            tool_call_id=f"call-{index}",
            kind="python",
            code=f"train(step={index})",
        )
    )
    for output in outputs:
        recorder.handle(CellOutput(cell_id=cell_id, output=output))
    recorder.handle(
        CellFinished(
            cell_id=cell_id,
            status="ok",
            outputs=outputs,
            execution_count=index + 1,
            started_at=started,
            finished_at=time.time(),
        )
    )


def measure(cells: int, directory: Path, durable: bool) -> tuple[float, float, int]:
    """(ours per cell over the last cells, naive write of the whole notebook, file bytes)."""
    rng = random.Random(cells)
    path = directory / f"ours-{cells}-{durable}.ipynb"
    recorder = NotebookRecorder(path, session_id="bench", durable=durable)
    recorder.handle(UserMessage(text="Train the model and report the loss."))
    ours: list[float] = []
    for index in range(cells):
        outputs = cell_outputs(index, rng)
        start = time.perf_counter()
        record_cell(recorder, index, outputs)
        if index >= cells - LAST_CELLS:
            ours.append(time.perf_counter() - start)
    naive: list[float] = []
    for _ in range(LAST_CELLS):
        start = time.perf_counter()
        nbformat.write(recorder.notebook, directory / f"naive-{cells}.ipynb")
        naive.append(time.perf_counter() - start)
    nbformat.validate(nbformat.read(path, as_version=4))
    return p50(ours), p50(naive), path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    args = parser.parse_args()
    sizes: list[int] = args.sizes

    rows: list[Row] = []
    per_cell: dict[int, float] = {}
    sizes_kb: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp:
        directory = Path(tmp)
        for cells in sizes:
            ours, naive, size = measure(cells, directory, durable=True)
            cpu_only, _, _ = measure(cells, directory, durable=False)
            per_cell[cells] = ours
            sizes_kb.append(f"{cells} cells = {size / 1024:.0f} KB")
            rows.append(
                Row(
                    f"per cell at {cells} cells (2 fsynced saves)",
                    ms(ours),
                    ms(naive),
                    f"{ours / naive:.2f}",
                    "ratio < 1",
                    ours < naive,
                )
            )
            rows.append(
                Row(
                    f"per cell at {cells} cells, no fsync",
                    ms(cpu_only),
                    ms(naive),
                    f"{cpu_only / naive:.2f}",
                    "",
                    None,
                )
            )
            print(
                f"{cells:>5} cells: ours {ms(ours)}, no fsync {ms(cpu_only)}, naive {ms(naive)}",
                flush=True,
            )
    smallest, largest = min(sizes), max(sizes)
    if largest != smallest:
        growth = per_cell[largest] / per_cell[smallest]
        size_ratio = largest / smallest
        rows.append(
            Row(
                f"growth: per cell at {largest} / at {smallest}",
                f"{growth:.1f}x",
                f"{size_ratio:.0f}x (notebook size)",
                f"{growth / size_ratio:.2f}",
                "< size ratio (per-cell cost grows slower than the file)",
                growth < size_ratio,
            )
        )
    notes = (
        "Baseline: one `nbformat.write` of the whole notebook (validate + serialise every cell, "
        "no fsync), i.e. the cost a naive recorder pays per save; ours does two atomic saves "
        f"per cell. Last {LAST_CELLS} cells, p50. Sizes: {', '.join(sizes_kb)}."
    )
    path = write_table(
        "recorder",
        "Notebook recorder: cost per cell",
        "python -m tests.benchmarks.bench_recorder",
        rows,
        notes,
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
