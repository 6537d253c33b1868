"""kernelagent: an LLM agent whose computer is a Jupyter kernel in a sandbox."""

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "kernelagent-panel"}]


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    from kernelagent.server import _jupyter_server_extension_points as points

    return points()
