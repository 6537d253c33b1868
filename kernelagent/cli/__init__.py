"""The ``kernelagent`` command line."""

from __future__ import annotations

from kernelagent.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
