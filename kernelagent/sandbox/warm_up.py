"""The warm-up: code a fresh kernel runs before a session uses it.

A pooled sandbox runs it while it waits (so a session's first pandas cell costs a few
milliseconds, not a second of imports); the notebook records it, so replay and restore
run the same code first and get the same state. It runs silently (no execution count, no
history, no outputs), and the names it defines are hidden from the cells' manifests the
way IPython hides its own: they are the kernel's starting state, not a cell's doing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kernelagent.manifest import parse_expression
from kernelagent.sandbox.sandbox import Sandbox, SandboxError

DEFAULT_WARM_UP = """\
import numpy as np
import pandas as pd
import matplotlib
import matplotlib.pyplot as plt
%matplotlib inline"""

_REMEMBER_NAMES = "get_ipython()._kernelagent_names_before = set(get_ipython().user_ns)"

_HIDE_NEW_NAMES = r"""
def __kernelagent_install_warmed():
    import builtins, json

    def warmed():
        shell = get_ipython()
        before = getattr(shell, "_kernelagent_names_before", set())
        new = {
            name: value for name, value in shell.user_ns.items()
            if name not in before and not name.startswith("_")
        }
        shell.user_ns_hidden.update(new)
        return json.dumps({
            name: getattr(value, "__name__", type(value).__name__)
            for name, value in sorted(new.items())
        })

    builtins.__kernelagent_warmed__ = warmed

__kernelagent_install_warmed()
del __kernelagent_install_warmed
"""
_WARMED_EXPRESSION = "__kernelagent_warmed__()"


class WarmUpError(SandboxError):
    """The warm-up code failed in the kernel; the message names the error."""


@dataclass
class WarmUp:
    """What a warm-up did; recorded in ``metadata.kernelagent.warm_up``."""

    code: str
    names: dict[str, str] = field(default_factory=dict)
    """Each name it defined, with the module (or type) it stands for: ``{"pd": "pandas"}``."""
    seconds: float = 0.0

    def as_metadata(self) -> dict[str, Any]:
        return {"code": self.code, "names": dict(self.names), "seconds": round(self.seconds, 3)}

    @classmethod
    def from_metadata(cls, recorded: dict[str, Any]) -> WarmUp:
        return cls(
            str(recorded.get("code", "")),
            dict(recorded.get("names") or {}),
            float(recorded.get("seconds") or 0.0),
        )


async def run_warm_up(sandbox: Sandbox, code: str) -> WarmUp:
    """Run ``code`` silently in a fresh kernel and hide the names it defined.

    Called by the pool supervisor for each pooled sandbox, by a session that starts cold
    with the pool on, and by replay and restore before the first recorded cell."""
    started = time.perf_counter()
    if not code.strip():
        return WarmUp(code)
    await _run(sandbox, _REMEMBER_NAMES, "remembering the kernel's names")
    await _run(sandbox, code, "the warm-up")
    reply = await sandbox.run_silently(
        _HIDE_NEW_NAMES, user_expressions={"warmed": _WARMED_EXPRESSION}
    )
    _raise_on_error(reply, "hiding the warm-up's names")
    names = parse_expression(reply["content"].get("user_expressions", {}), "warmed") or {}
    return WarmUp(code, {str(k): str(v) for k, v in names.items()}, time.perf_counter() - started)


async def warm_up_as_recorded(sandbox: Sandbox, notebook_metadata: dict[str, Any]) -> WarmUp | None:
    """Run the warm-up a recorded session's kernel started with (``metadata.kernelagent
    .warm_up``), so replay, restore and continue rebuild the same state."""
    recorded = (notebook_metadata.get("kernelagent") or {}).get("warm_up")
    if not recorded or not recorded.get("code"):
        return None
    return await run_warm_up(sandbox, str(recorded["code"]))


async def _run(sandbox: Sandbox, code: str, what: str) -> None:
    _raise_on_error(await sandbox.run_silently(code), what)


def _raise_on_error(reply: dict[str, Any], what: str) -> None:
    content = reply["content"]
    if content.get("status") != "ok":
        raise WarmUpError(
            f"{what} failed in the kernel: {content.get('ename')}: {content.get('evalue')}; "
            "fix the warm-up code (SessionConfig.warm_up, --warm-up) or run with --no-pool"
        )


def describe_names(names: dict[str, str]) -> str:
    """For the system prompt: ``np (numpy), pd (pandas), plt (matplotlib.pyplot)``."""
    return ", ".join(
        name if name == module else f"{name} ({module})" for name, module in names.items()
    )
