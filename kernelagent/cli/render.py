"""Render the session's event stream in the terminal with rich."""

from __future__ import annotations

import base64

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from kernelagent.agent.feedback import png_size, strip_ansi
from kernelagent.events import (
    ApprovalDecided,
    ApprovalRequested,
    AssistantText,
    CellFinished,
    CellOutput,
    CellStarted,
    Error,
    Event,
    KernelRestarted,
    ModelRetrying,
    NotebookOutput,
    SessionFinished,
    SessionStarted,
    UserMessage,
)

STATUS_STYLE = {"ok": "green", "error": "red", "timeout": "yellow", "kernel_died": "bold red"}


class EventRenderer:
    """A subscriber of the event stream that prints each event as it happens."""

    def __init__(self, console: Console, *, show_outputs: bool = True) -> None:
        self.console = console
        self.show_outputs = show_outputs

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)

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
        self.console.print(f"[bold yellow]approval needed[/] for cell {event.cell_id}: {event.reason}")

    def _on_approval_decided(self, event: ApprovalDecided) -> None:
        self.console.print(f"[yellow]{event.decision}[/] by {event.decided_by}")

    def _on_kernel_restarted(self, event: KernelRestarted) -> None:
        self.console.print(f"[bold red]kernel restarted:[/] {event.reason}")

    def _on_model_retrying(self, event: ModelRetrying) -> None:
        self.console.print(
            f"[yellow]{event.message}[/] [dim]({event.reason}; next try in {event.delay:.1f}s)[/]"
        )

    def _on_error(self, event: Error) -> None:
        self.console.print(f"[red]! {event.message}[/]" + (f" [dim]({event.hint})[/]" if event.hint else ""))

    def _on_session_finished(self, event: SessionFinished) -> None:
        usage = event.usage
        tokens = f"{usage.total_tokens} tokens in {usage.requests} requests"
        if event.answer is not None:
            self.console.print(Panel(Markdown(event.answer), title="answer", title_align="left", border_style="green"))
        style = "green" if event.status == "completed" else "yellow" if event.status == "paused" else "red"
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
