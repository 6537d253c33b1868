"""SessionConfig is stored in every notebook: it must round-trip, and old notebooks must load."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from kernelagent.agent.loop import LoopLimits
from kernelagent.session.session import SessionConfig

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def test_config_round_trips_through_json() -> None:
    config = SessionConfig(model="m", limits=LoopLimits(max_steps=5, price_per_million=(0.4, 1.6)))
    stored = json.loads(json.dumps(config.model_dump(mode="json")))
    assert SessionConfig.model_validate(stored) == config


def test_limits_recorded_flat_by_earlier_versions_still_load() -> None:
    old = {
        "model": "m",
        "max_steps": 7,
        "cell_timeout": 12.5,
        "context_chars": 30_000,
        "stream": False,
    }
    config = SessionConfig.model_validate(old)
    assert config.limits == LoopLimits(max_steps=7, cell_timeout=12.5, context_chars=30_000)
    assert config.stream is False


def test_the_committed_example_notebooks_configs_load() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        stored = nbformat.read(path, as_version=4).metadata["kernelagent"]["config"]
        assert isinstance(SessionConfig.model_validate(stored).limits, LoopLimits), path
