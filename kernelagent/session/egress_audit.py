"""Which cell made each egress request, so the notebook records it with that cell.

The proxy knows requests, not cells. An :class:`EgressAttribution` listens to both: the
session's event stream (when each cell started and finished) and the sandbox's egress
records (``Sandbox.on_egress``), and emits one ``egress`` event per request with the id
of the cell that was running when the request started. The recorder writes those into
``metadata.kernelagent.egress`` of that cell. Created by :class:`Session` for its sandbox
(and again for a new sandbox after a kernel death).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from kernelagent.events import CellFinished, CellStarted, EgressRequest, Event
from kernelagent.sandbox.egress_proxy import EgressRecord
from kernelagent.session.stream import EventStream

_KEPT_CELLS = 64


@dataclass
class _CellSpan:
    cell_id: str
    started: float
    finished: float | None = None


class EgressAttribution:
    """Subscribe with ``stream.subscribe(attribution)``; pass it to ``Sandbox.on_egress``."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self._spans: deque[_CellSpan] = deque(maxlen=_KEPT_CELLS)

    def __call__(self, event: Event) -> None:
        """Called by the event stream with every event; keeps the cells' time spans."""
        if isinstance(event, CellStarted):
            self._spans.append(_CellSpan(event.cell_id, event.time))
        elif isinstance(event, CellFinished):
            for span in reversed(self._spans):
                if span.cell_id == event.cell_id:
                    span.finished = event.finished_at
                    break

    def record(self, record: EgressRecord) -> None:
        """Called by the sandbox's proxy when a request ends (or is refused)."""
        self.stream.emit(EgressRequest(cell_id=self.cell_at(record.time), request=record.as_dict()))

    def cell_at(self, moment: float) -> str | None:
        """The cell that was running at ``moment``, if any."""
        for span in reversed(self._spans):
            if span.started <= moment and (span.finished is None or moment <= span.finished):
                return span.cell_id
        return None
