"""The event stream of one session: numbering, history for catch-up, subscribers."""

from __future__ import annotations

import logging
from collections.abc import Callable

from kernelagent.events import Event

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]


class EventStream:
    """Numbers events and hands each to every subscriber, in order.

    Subscribers are synchronous (the recorder, the CLI renderer); a subscriber that
    raises does not stop the others, except ``critical`` ones (the recorder), whose
    errors propagate so that a session never runs on without its record.
    """

    def __init__(self, session_id: str, first_seq: int = 1) -> None:
        self.session_id = session_id
        self._next_seq = first_seq
        self.history: list[Event] = []
        self._subscribers: list[tuple[Subscriber, bool]] = []

    def subscribe(self, subscriber: Subscriber, *, critical: bool = False) -> None:
        self._subscribers.append((subscriber, critical))

    def replace_subscriber(self, old: Subscriber, new: Subscriber) -> None:
        """Put ``new`` where ``old`` was (same place, same criticality), e.g. a new recorder."""
        for index, (subscriber, critical) in enumerate(self._subscribers):
            if subscriber == old:
                self._subscribers[index] = (new, critical)
                return
        raise ValueError("replace_subscriber: the subscriber to replace is not subscribed")

    def emit(self, event: Event) -> Event:
        event.session_id = self.session_id
        event.seq = self._next_seq
        self._next_seq += 1
        self.history.append(event)
        for subscriber, critical in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                if critical:
                    raise
                log.exception("event subscriber failed on %s", event.type)
        return event

    def since(self, seq: int) -> list[Event]:
        """Events after ``seq``, for a client that reconnects."""
        return [event for event in self.history if event.seq > seq]
