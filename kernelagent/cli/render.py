"""Render the session's event stream in the terminal with rich."""

from __future__ import annotations

import base64
import json

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from kernelagent.agent.feedback import png_size, strip_ansi
from kernelagent.events import (
    ActionSkipped,
    AnswerReviewed,
    ApprovalDecided,
    ApprovalRequested,
    AssistantText,
    AttemptFinished,
    AttemptStarted,
    CellFinished,
    CellOutput,
    CellStarted,
    EgressRequest,
    Error,
    Event,
    HostToolCalled,
    HostToolFinished,
    KernelRestarted,
    ModelRetrying,
    NotebookOutput,
    SessionFinished,
    SessionStarted,
    UserMessage,
    VoteDecided,
)

STATUS_STYLE = {"ok": "green", "error": "red", "timeout": "yellow", "kernel_died": "bold red"}


class EventRenderer:
    """A subscriber of the event stream that prints each event as it happens."""

    def __init__(self, console: Console, *, show_outputs: bool = True) -> None:
        self.console = console
        self.show_outputs = show_outputs

    def __call__(self, event: Event) -> None:
        if event.attempt is not None and event.attempt > 1:
            self._attempt_line(event)
            return
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

    def _attempt_line(self, event: Event) -> None:
        """Another attempt's events, one short line each (its notebook has everything)."""
        prefix = f"[dim]attempt {event.attempt} ·[/] "
        if isinstance(event, CellStarted):
            first = next((line for line in event.code.splitlines() if line.strip()), "")
            self.console.print(prefix + f"{event.kind} cell: {first[:70]}", highlight=False)
        elif isinstance(event, CellFinished):
            style = STATUS_STYLE.get(event.status, "white")
            self.console.print(prefix + f"[{style}]└ {event.status}[/]", highlight=False)
        elif isinstance(event, ActionSkipped | AttemptStarted | AttemptFinished):
            handler = getattr(self, f"_on_{event.type}")
            handler(event)

    def _on_attempt_started(self, event: AttemptStarted) -> None:
        heat = f" at temperature {event.temperature:g}" if event.temperature is not None else ""
        self.console.print(
            f"[bold]attempt {event.number} of {event.of}[/]{heat} [dim]· {event.notebook_path}[/]"
        )

    def _on_attempt_finished(self, event: AttemptFinished) -> None:
        if event.answer is not None:
            grounded = "" if event.grounded else " [yellow](not in its outputs)[/]"
            what = f"answered {event.answer!r}{grounded}"
        else:
            what = f"{event.status}" + (f": {event.reason}" if event.reason else "")
        self.console.print(f"[bold]attempt {event.number}[/] {what}", highlight=False)

    def _on_vote_decided(self, event: VoteDecided) -> None:
        style = "green" if event.majority else "yellow"
        self.console.print(f"[{style}]vote:[/] {event.summary}", highlight=False)

    def _on_action_skipped(self, event: ActionSkipped) -> None:
        heat = (
            f"; retrying at temperature {event.next_temperature:g}"
            if event.next_temperature is not None
            else ""
        )
        why = (
            f"the same code already failed ({event.error})"
            if event.repeats == "failed"
            else "the same code just ran"
        )
        self.console.print(f"[yellow]not run:[/] {why}{heat}", highlight=False)

    def _on_answer_reviewed(self, event: AnswerReviewed) -> None:
        if event.verdict == "from_output":
            self.console.print(
                f"[yellow]answer {event.answer!r}[/] {event.detail}", highlight=False
            )
        elif event.verdict != "accepted":
            self.console.print(
                f"[dim]answer {event.answer!r} sent back: {event.verdict} ({event.detail})[/]",
                highlight=False,
            )

    def _on_session_started(self, event: SessionStarted) -> None:
        where = f"{event.sandbox} sandbox" + (f" ({event.image})" if event.image else "")
        self.console.print(f"[dim]session {event.session_id} · {event.model} · {where}[/]")
        self.console.print(f"[dim]notebook: {event.notebook_path}[/]")

    def _on_user_message(self, event: UserMessage) -> None:
        self.console.print(Panel(event.text, title="task", title_align="left", border_style="blue"))

    def _on_assistant_text(self, event: AssistantText) -> None:
        self.console.print(Markdown(event.text))

    def _on_cell_started(self, event: CellStarted) -> None:
        language = "bash" if event.kind == "shell" else "python"
        code = event.code.removeprefix("%%bash\n") if event.kind == "shell" else event.code
        self.console.print(
            Panel(
                Syntax(code, language, theme="ansi_dark", word_wrap=True),
                title=f"{event.kind} cell",
                title_align="left",
                border_style="cyan",
            )
        )

    def _on_output(self, event: CellOutput) -> None:
        if self.show_outputs:
            self.console.print(_output_text(event.output), end="", highlight=False, markup=False)

    def _on_cell_finished(self, event: CellFinished) -> None:
        style = STATUS_STYLE.get(event.status, "white")
        seconds = event.finished_at - event.started_at
        line = Text(f"└ {event.status} in {seconds:.2f}s", style=style)
        if event.detail:
            line.append(f" · {event.detail}", style="dim")
        self.console.print(line)

    def _on_approval_requested(self, event: ApprovalRequested) -> None:
        what = "tool call" if event.kind == "host_tool" else "cell"
        self.console.print(
            f"[bold yellow]approval needed[/] for {what} {event.cell_id}: {event.reason}"
        )

    def _on_host_tool_called(self, event: HostToolCalled) -> None:
        arguments = json.dumps(event.arguments, ensure_ascii=False)
        self.console.print(
            f"[magenta]tool[/] {event.tool} [dim]({event.source})[/] {arguments[:100]}",
            highlight=False,
        )

    def _on_host_tool_finished(self, event: HostToolFinished) -> None:
        style = "red" if event.is_error else "green"
        first = next((line for line in event.text.splitlines() if line.strip()), "")
        self.console.print(
            f"[{style}]└ {'error' if event.is_error else 'ok'} in {event.duration:.2f}s[/]"
            f" [dim]{first[:100]}[/]",
            highlight=False,
        )

    def _on_approval_decided(self, event: ApprovalDecided) -> None:
        self.console.print(f"[yellow]{event.decision}[/] by {event.decided_by}")

    def _on_egress(self, event: EgressRequest) -> None:
        request = event.request
        where = (
            f"{request.get('method')} "
            f"{request.get('host')}:{request.get('port')}{request.get('path') or ''}"
        )
        if request.get("decision") == "allowed":
            size = f"{request.get('bytes_up', 0)} B up, {request.get('bytes_down', 0)} B down"
            self.console.print(f"[dim]↗ egress {where} · {size}[/]", highlight=False)
        else:
            self.console.print(f"[yellow]⛔ egress refused[/] [dim]{where}[/]", highlight=False)

    def _on_kernel_restarted(self, event: KernelRestarted) -> None:
        self.console.print(f"[bold red]kernel restarted:[/] {event.reason}")

    def _on_model_retrying(self, event: ModelRetrying) -> None:
        self.console.print(
            f"[yellow]{event.message}[/] [dim]({event.reason}; next try in {event.delay:.1f}s)[/]"
        )

    def _on_error(self, event: Error) -> None:
        self.console.print(
            f"[red]! {event.message}[/]" + (f" [dim]({event.hint})[/]" if event.hint else "")
        )

    def _on_session_finished(self, event: SessionFinished) -> None:
        usage = event.usage
        tokens = f"{usage.total_tokens} tokens in {usage.requests} requests"
        if event.answer is not None:
            self.console.print(
                Panel(
                    Markdown(event.answer), title="answer", title_align="left", border_style="green"
                )
            )
        style = (
            "green"
            if event.status == "completed"
            else "yellow"
            if event.status == "paused"
            else "red"
        )
        reason = f" · {event.reason}" if event.reason else ""
        self.console.print(f"[{style}]{event.status}[/]{reason} · [dim]{tokens}[/]")


def _output_text(output: NotebookOutput) -> str:
    kind = output["output_type"]
    if kind == "stream":
        return strip_ansi(output["text"])
    if kind == "error":
        return strip_ansi("\n".join(output.get("traceback", []))) + "\n"
    data = output.get("data", {})
    for media in ("image/png", "image/jpeg"):
        if media in data:
            size = png_size(base64.b64decode(data[media])) if media == "image/png" else None
            shown = f" {size[0]}x{size[1]}" if size else ""
            return f"[{media}{shown}]\n"
    text = data.get("text/plain", "")
    return (text + "\n") if text else f"[{', '.join(sorted(data))}]\n"
