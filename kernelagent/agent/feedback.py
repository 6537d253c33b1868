"""Turn a cell's full outputs into the compact feedback the model reads.

The notebook keeps everything; the model gets the head and tail of long text with
the cut marked, tracebacks without ANSI codes, and images either as image input or,
for models without vision, as a note naming the file they were saved to.
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from kernelagent.events import NotebookOutput
from kernelagent.execution.result import ExecutionResult

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
IMAGE_TYPES = ("image/png", "image/jpeg")


@dataclass
class FeedbackLimits:
    head_chars: int = 2500
    tail_chars: int = 1500
    traceback_lines: int = 40
    max_images: int = 3


@dataclass
class Feedback:
    text: str
    images: list[tuple[str, str]] = field(default_factory=list)
    """(media type, base64 data) pairs for models that accept image input."""


def strip_ansi(text: str) -> str:
    return ANSI_ESCAPE.sub("", text)


def clip(text: str, head: int, tail: int) -> str:
    """Head and tail of ``text`` with the cut marked."""
    if len(text) <= head + tail:
        return text
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[-tail:]}"


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _rich_text(output: NotebookOutput) -> str:
    data = output.get("data", {})
    if "text/plain" in data:
        return str(data["text/plain"])
    if "text/markdown" in data:
        return str(data["text/markdown"])
    kinds = ", ".join(sorted(data))
    return f"[{kinds} output]" if kinds else ""


def build_feedback(
    result: ExecutionResult,
    *,
    images_as_input: bool,
    image_dir: Path | None = None,
    image_dir_in_kernel: str = "",
    cell_label: str = "cell",
    limits: FeedbackLimits | None = None,
) -> Feedback:
    """The model's view of a finished cell."""
    limits = limits or FeedbackLimits()
    parts: list[str] = []
    images: list[tuple[str, str]] = []
    image_number = 0
    for output in result.outputs:
        kind = output["output_type"]
        if kind == "stream":
            parts.append(strip_ansi(output["text"]))
        elif kind == "error":
            parts.append(_error_text(output, limits.traceback_lines))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            media = next((m for m in IMAGE_TYPES if m in data), None)
            if media is None:
                parts.append(strip_ansi(_rich_text(output)))
                continue
            image_number += 1
            raw = base64.b64decode(data[media])
            size = png_size(raw)
            described = f"{size[0]}x{size[1]} " if size else ""
            if images_as_input and len(images) < limits.max_images:
                images.append((media, data[media]))
                parts.append(f"[{described}{media} image {image_number}, attached]")
            elif image_dir is not None:
                image_dir.mkdir(parents=True, exist_ok=True)
                extension = "png" if media == "image/png" else "jpg"
                name = f"{cell_label}-image-{image_number}.{extension}"
                (image_dir / name).write_bytes(raw)
                shown = (
                    f"{image_dir_in_kernel}/{name}"
                    if image_dir_in_kernel
                    else str(image_dir / name)
                )
                parts.append(f"[{described}{media} image saved as {shown}]")
            else:
                parts.append(f"[{described}{media} image]")
    body = "\n".join(part.rstrip("\n") for part in parts if part.strip())
    body = clip(body, limits.head_chars, limits.tail_chars)
    header = _status_line(result)
    text = f"{header}\n{body}" if body else f"{header}\n(no output)"
    return Feedback(text=text, images=images)


_FRAME_HEADER = ("Cell In[", "Cell In [", "Input In [", "File ")
_CELL_FRAME = ("Cell In[", "Cell In [", "Input In [", "File <ipython-input")
_ARROW = re.compile(r"^\s*-+>")


def _error_text(output: NotebookOutput, max_lines: int) -> str:
    """The error first, then a compact traceback: the cells' own frames with the failing line
    and its context, library frames collapsed, and where the error was finally raised."""
    summary = f"{output.get('ename')}: {strip_ansi(str(output.get('evalue', '')))}"
    lines = strip_ansi("\n".join(output.get("traceback", []))).splitlines()
    frames: list[list[str]] = []
    for line in lines:
        if line.startswith(_FRAME_HEADER):
            frames.append([line])
        elif frames:
            frames[-1].append(line)
    if not frames:
        text = [line for line in lines if line.strip() and not set(line.strip()) <= {"-"}]
        return "\n".join([f"Error: {summary}", *text[-max_lines:]])
    body: list[str] = []
    hidden = 0
    for index, frame in enumerate(frames):
        last = index == len(frames) - 1
        if frame[0].startswith(_CELL_FRAME):
            context = 2
        elif last:
            context = 0
        else:
            hidden += 1
            continue
        if hidden:
            body.append(f"[... {hidden} frame{'s' if hidden > 1 else ''} in library code ...]")
            hidden = 0
        body += _frame_excerpt(frame, context)
    return "\n".join([f"Error: {summary}", *body[:max_lines]])


def _frame_excerpt(frame: list[str], context: int) -> list[str]:
    """A frame's header and its failing line with ``context`` lines before it; a frame
    without an arrow (a SyntaxError's) is kept whole but for the repeated error line."""
    code = frame[1:]
    arrow = next((i for i, line in enumerate(code) if _ARROW.match(line)), None)
    if arrow is None:
        kept = [line for line in code if line.strip()]
        return [frame[0], *kept[:8]]
    before = [line for line in code[max(0, arrow - context) : arrow] if line.strip()]
    return [frame[0], *before, code[arrow]]


def _status_line(result: ExecutionResult) -> str:
    seconds = f"{result.duration:.1f}s"
    if result.status == "ok":
        line = f"[ok in {seconds}]"
    elif result.status == "error":
        line = f"[error in {seconds}]"
    elif result.status == "timeout":
        line = f"[timeout: {result.detail}]"
    else:
        line = f"[the kernel died: {result.detail}]"
    if result.truncated:
        line += f" [output over the cap: {result.dropped_bytes} bytes dropped]"
    return line
