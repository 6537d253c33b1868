"""The Jupyter server extension (``kernelagent.server``): the HTTP/WebSocket API the
JupyterLab panel talks to. Importing this package is cheap; the extension app (and
jupyter_server) are imported only when the server loads it."""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from kernelagent.server.app import KernelAgentExtension

    return [{"module": "kernelagent.server.app", "app": KernelAgentExtension}]


__all__ = ["_jupyter_server_extension_points"]
