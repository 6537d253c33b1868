"""The approval gate: whether an action runs now, waits for a person, or was rejected."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from kernelagent.agent.approvals import ApprovalPolicy, Decision, PendingApproval
from kernelagent.agent.model import Conversation, ToolCall
from kernelagent.agent.tools import Action
from kernelagent.events import ApprovalDecided, ApprovalRequested, Event, code_sha256


class ApprovalGate:
    def __init__(
        self,
        policy: ApprovalPolicy | None,
        emit: Callable[[Event], Event],
        conversation: Callable[[], Conversation],
    ) -> None:
        self.policy = policy
        self.emit = emit
        self.conversation = conversation
        """The loop's conversation now (a continued session may swap it)."""
        self.decisions: dict[str, Decision] = {}
        """Decisions on pending actions, by tool-call id, applied when the loop runs them."""
        self.pending: PendingApproval | None = None

    def check(self, call: ToolCall, action: Action, source: str) -> tuple[str | None, str] | None:
        """(cell id, code to run), (None, _) when rejected, or None when approval is pending.

        ``source`` is what the person approves: the cell's code, or a host tool's name and
        arguments; an edited decision returns the edit."""
        reason = self.policy.reason(action.kind, source) if self.policy else None
        decision = self.decisions.pop(call.id, None)
        if reason is None and decision is None:
            return uuid.uuid4().hex[:12], source
        if decision is None or decision.approved_sha256 != code_sha256(source):
            cell_id = decision.cell_id if decision else uuid.uuid4().hex[:12]
            if decision is not None:
                reason = f"the approved code no longer matches the pending action; {reason}"
            self.pending = PendingApproval(
                cell_id=cell_id,
                tool_call_id=call.id,
                kind=action.kind,
                code=source,
                code_sha256=code_sha256(source),
                reason=reason or "approval required",
            )
            self.emit(
                ApprovalRequested(
                    cell_id=cell_id,
                    tool_call_id=call.id,
                    kind=action.kind,  # type: ignore[arg-type]  # never a final answer
                    code=source,
                    code_sha256=code_sha256(source),
                    reason=self.pending.reason,
                )
            )
            return None
        self.emit(
            ApprovalDecided(
                cell_id=decision.cell_id,
                decision=decision.decision,
                decided_by=decision.decided_by,
                code=decision.code,
                reason=decision.reason,
            )
        )
        if decision.decision == "rejected":
            because = f": {decision.reason}" if decision.reason else ""
            self.conversation().add_tool_result(
                call.id, f"[rejected by {decision.decided_by}{because}] The action was not run."
            )
            return None, source
        return decision.cell_id, decision.code
