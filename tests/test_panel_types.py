"""The panel's TypeScript types are generated from the pydantic models; a stale file fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
GENERATOR = ROOT / "scripts" / "panel_types.py"
GENERATED = ROOT / "labextension" / "src" / "generated" / "schema.ts"


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), "--check", "--output", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_committed_types_match_the_models() -> None:
    done = check(GENERATED)
    assert done.returncode == 0, done.stderr


def test_a_drifted_file_fails_the_check(tmp_path: Path) -> None:
    drifted = tmp_path / "schema.ts"
    shutil.copy(GENERATED, drifted)
    drifted.write_text(drifted.read_text().replace("  cell_id: string;", "  cell_id: number;", 1))
    done = check(drifted)
    assert done.returncode == 1 and "stale" in done.stderr


def test_the_types_carry_the_events_and_requests() -> None:
    text = GENERATED.read_text()
    assert "export type AgentEvent =" in text and "| IDisplayUpdated" in text
    assert "export interface ICreateSessionRequest {" in text
    assert "approve?: ApprovalMode | null;" in text
    assert "output: IOutput;" in text
