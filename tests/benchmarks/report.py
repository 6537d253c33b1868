"""Write benchmark results as a Markdown table."""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class Row:
    metric: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: bool | None

    def cells(self) -> list[str]:
        met = "" if self.met is None else ("yes" if self.met else "**no**")
        return [self.metric, self.ours, self.baseline, self.ratio, self.target, met]


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def write_table(name: str, title: str, command: str, rows: list[Row], notes: str = "") -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    header = ["metric", "kernelagent", "baseline", "ratio", "target", "met"]
    lines = [
        f"# {title}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; run {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row.cells()) + " |" for row in rows),
    ]
    if notes:
        lines += ["", notes]
    path = RESULTS_DIR / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path
