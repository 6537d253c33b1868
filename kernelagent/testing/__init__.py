"""Test helpers: a scripted OpenAI-compatible model server."""

from kernelagent.testing.scripted_server import RecordedRequest, ScriptedModelServer
from kernelagent.testing.scripted_turns import Responder, ScriptedToolCall, ScriptedTurn

__all__ = [
    "RecordedRequest",
    "Responder",
    "ScriptedModelServer",
    "ScriptedToolCall",
    "ScriptedTurn",
]
