"""Where a session's sandbox comes from: the machine's warm pool, or a cold start.

With the pool on (the default; ``SessionConfig.pool``, ``--no-pool``) the kernel always
starts from the warm-up's state, whether the pool had a sandbox ready or not: a cold
start then runs the warm-up itself. So the model's prompt, the recorded notebook and a
replay do not depend on whether the pool was quick enough.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kernelagent.sandbox.pool_client import take_sandbox
from kernelagent.sandbox.sandbox import Sandbox
from kernelagent.sandbox.settings import SandboxSettings
from kernelagent.sandbox.warm_up import WarmUp, run_warm_up


@dataclass
class SessionSandbox:
    sandbox: Sandbox
    origin: Literal["pool", "cold"]
    warm_up: WarmUp | None
    pool_key: str | None = None
    seconds: float = 0.0
    """From asking for a sandbox to a kernel ready for the session's first cell."""

    def kernel_metadata(self) -> dict[str, Any]:
        """``metadata.kernelagent.kernel``: where the kernel came from."""
        return {"origin": self.origin, "pool": self.pool_key, "seconds": round(self.seconds, 3)}


async def start_session_sandbox(
    settings: SandboxSettings, workspace: Path, *, pool: bool, warm_up: str
) -> SessionSandbox:
    """Called by ``Session.start``: a pooled sandbox if one is ready, else a cold one."""
    started = time.perf_counter()
    if pool:
        handout = await take_sandbox(settings, warm_up, workspace)
        if handout is not None:
            _warm_up_after_restarts(handout.sandbox, warm_up)
            return SessionSandbox(
                handout.sandbox,
                "pool",
                handout.warm_up,
                handout.pool_key,
                time.perf_counter() - started,
            )
    sandbox = await Sandbox.start(settings, workspace)
    warmed = None
    if pool:
        try:
            warmed = await run_warm_up(sandbox, warm_up)
        except BaseException:
            await sandbox.shutdown()
            raise
        _warm_up_after_restarts(sandbox, warm_up)
    return SessionSandbox(sandbox, "cold", warmed, None, time.perf_counter() - started)


def _warm_up_after_restarts(sandbox: Sandbox, code: str) -> None:
    """A kernel restarted mid-session (a cell that ignored its interrupt) starts from the
    same state as the first one: the prompt told the model these names exist."""

    async def warm_up_again(restarted: Sandbox) -> None:
        await run_warm_up(restarted, code)

    sandbox.after_restart.append(warm_up_again)
