"""The ``kernelagent`` command line."""

from __future__ import annotations

from kernelagent.cli.app import app


def main() -> None:
    from kernelagent.cli.output import fail_with
    from kernelagent.errors import KernelAgentError

    try:
        app()
    except KernelAgentError as error:  # not caught by its command (e.g. an unreachable store)
        raise SystemExit(fail_with(error).exit_code) from None


__all__ = ["app", "main"]
