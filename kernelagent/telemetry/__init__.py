"""OpenTelemetry traces of sessions (``pip install 'kernelagent[otel]'``).

Off unless configured: with no ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` in the environment (and no provider given to
:func:`use_tracer_provider`), nothing of OpenTelemetry is imported. When on, every session's
event stream gets a :class:`~kernelagent.telemetry.spans.SessionSpans` subscriber: a span per
session run, model call, cell and approval wait, named and attributed after the GenAI
semantic conventions. The exporter is the OTLP/HTTP one, configured by the standard
``OTEL_EXPORTER_OTLP_*`` variables; ``OTEL_SERVICE_NAME`` names the service (default
``kernelagent``); ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn it off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from kernelagent.errors import KernelAgentError
from kernelagent.events import Event

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_provider: Any = None
_lock = threading.Lock()


class TelemetryUnavailableError(KernelAgentError, RuntimeError):
    pass


def configured_by_environment() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def use_tracer_provider(provider: Any) -> None:
    """Trace sessions with this OpenTelemetry ``TracerProvider`` (None: back to the
    environment's configuration). For tests and for programs that set up their own."""
    global _provider
    _provider = provider


def tracer_provider() -> Any:
    """The provider sessions report to, or None when tracing is off."""
    global _provider
    if _provider is not None:
        return _provider
    if not configured_by_environment():
        return None
    with _lock:
        if _provider is None:
            _provider = _provider_from_environment()
    return _provider


def _provider_from_environment() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise TelemetryUnavailableError(
            f"OTEL_EXPORTER_OTLP_* is set but OpenTelemetry is not installed ({error.name})",
            "pip install 'kernelagent[otel]', or unset OTEL_EXPORTER_OTLP_ENDPOINT",
        ) from None
    service = os.environ.get("OTEL_SERVICE_NAME") or "kernelagent"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider  # the SDK flushes and shuts it down at exit


def session_subscriber(model: str, base_url: str | None = None) -> Callable[[Event], None] | None:
    """A subscriber that turns one session's events into spans, or None when tracing is off."""
    provider = tracer_provider()
    if provider is None:
        return None
    from kernelagent.telemetry.spans import SessionSpans

    return SessionSpans(provider.get_tracer("kernelagent"), model=model, base_url=base_url)
