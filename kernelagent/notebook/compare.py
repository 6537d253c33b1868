"""Compare a cell's recorded outputs with the outputs of its replay.

How a cell's outputs are lined up:
- Stream text is concatenated per stream name over the whole cell before normalising,
  because chunking (and stdout/stderr interleaving) depends on timing. ipykernel
  flushes streams before each display and error, so their order carries nothing the
  rich outputs' own order does not.
- Rich outputs (execute_result and display_data alike) and errors are compared in
  order, one to one.

Text is compared token by token: numbers within tolerance (two integer literals must
be identical), everything else exactly, except that spaces and tabs next to a number
are ignored (column padding shifts with number width) and other runs of them count
as one space. Images are decoded and compared by size and by mean pixel difference
over their non-background pixels (see ``image_difference``), never by bytes.
"""

from __future__ import annotations

import base64
import difflib
import importlib.util
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kernelagent.notebook.normalize import (
    NormalizedImage,
    NormalizedOutput,
    NormalizeOptions,
    normalize_output,
)


class CompareOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    normalize: NormalizeOptions = Field(default_factory=NormalizeOptions)
    float_rel_tol: float = 1e-6
    float_abs_tol: float = 1e-9
    # Mean absolute difference per channel, on 0-255, over the pixels that are not
    # background, after aligning to a common size (see image_difference).
    image_pixel_tolerance: float = 8.0
    # Width and height may each differ by this many pixels.
    image_size_tolerance: int = 2
    # Also compare text/html when both sides have it (it is always compared when it is
    # the best textual representation, i.e. when there is no text/plain).
    compare_html: bool = False
    compare_traceback: bool = False
    ignore_stderr: bool = False
    ignore_execution_count: bool = True
    max_diff_lines: int = 60
    max_diff_line_length: int = 200


class CellComparison(BaseModel):
    status: Literal["matched", "diverged"]
    reasons: list[str] = Field(default_factory=list)
    diff: str = ""

    @property
    def matched(self) -> bool:
        return self.status == "matched"


def compare_outputs(
    recorded: list[dict[str, Any]],
    replayed: list[dict[str, Any]],
    options: CompareOptions | None = None,
) -> CellComparison:
    """Compare two nbformat v4 output lists of one cell."""
    options = options or CompareOptions()
    left = _CellOutputs.from_outputs(recorded, options)
    right = _CellOutputs.from_outputs(replayed, options)
    comparer = _Comparer(options)
    comparer.compare_streams(left.streams, right.streams)
    comparer.compare_items(left.items, right.items)
    if not comparer.reasons:
        return CellComparison(status="matched")
    return CellComparison(
        status="diverged",
        reasons=comparer.reasons,
        diff=_readable_diff(left, right, comparer.image_notes, options),
    )


@dataclass
class _CellOutputs:
    streams: dict[str, str] = field(default_factory=dict)
    items: list[NormalizedOutput] = field(default_factory=list)

    @classmethod
    def from_outputs(cls, outputs: list[dict[str, Any]], options: CompareOptions) -> _CellOutputs:
        raw_streams: dict[str, list[str]] = {}
        items: list[NormalizedOutput] = []
        for output in outputs:
            if output.get("output_type") == "stream":
                name = str(output.get("name", "stdout"))
                if name == "stderr" and options.ignore_stderr:
                    continue
                text = output.get("text", "")
                raw_streams.setdefault(name, []).append(
                    "".join(text) if isinstance(text, list) else str(text)
                )
            else:
                items.append(normalize_output(output, options.normalize))
        streams: dict[str, str] = {}
        for name, chunks in raw_streams.items():
            merged = {"output_type": "stream", "name": name, "text": "".join(chunks)}
            text = normalize_output(merged, options.normalize).text
            if text:
                streams[name] = text
        return cls(streams=streams, items=items)


class _Comparer:
    def __init__(self, options: CompareOptions) -> None:
        self.options = options
        self.reasons: list[str] = []
        self.image_notes: list[str] = []
        self._images_seen = 0

    def compare_streams(self, recorded: dict[str, str], replayed: dict[str, str]) -> None:
        for name in [*recorded, *(n for n in replayed if n not in recorded)]:
            if name not in replayed:
                self.reasons.append(f"{name} only in recorded")
            elif name not in recorded:
                self.reasons.append(f"{name} only in replayed")
            elif not self._texts_match(recorded[name], replayed[name]):
                self.reasons.append(f"{name} differs")

    def compare_items(
        self, recorded: list[NormalizedOutput], replayed: list[NormalizedOutput]
    ) -> None:
        for index in range(max(len(recorded), len(replayed))):
            label = f"output {index + 1}"
            if index >= len(replayed):
                self.reasons.append(f"{label} ({_describe(recorded[index])}) only in recorded")
            elif index >= len(recorded):
                self.reasons.append(f"{label} ({_describe(replayed[index])}) only in replayed")
            else:
                self._compare_pair(label, recorded[index], replayed[index])

    def _compare_pair(
        self, label: str, recorded: NormalizedOutput, replayed: NormalizedOutput
    ) -> None:
        if recorded.kind != replayed.kind:
            self.reasons.append(f"{label}: {_describe(recorded)} vs {_describe(replayed)}")
        elif recorded.kind == "error":
            self._compare_errors(label, recorded, replayed)
        else:
            self._compare_rich(label, recorded, replayed)

    def _compare_errors(
        self, label: str, recorded: NormalizedOutput, replayed: NormalizedOutput
    ) -> None:
        if recorded.ename != replayed.ename:
            self.reasons.append(f"{label}: {recorded.ename} vs {replayed.ename}")
        elif not self._texts_match(recorded.evalue or "", replayed.evalue or ""):
            self.reasons.append(f"{label}: {recorded.ename} message differs")
        elif self.options.compare_traceback and not self._texts_match(
            recorded.traceback or "", replayed.traceback or ""
        ):
            self.reasons.append(f"{label}: traceback differs")

    def _compare_rich(
        self, label: str, recorded: NormalizedOutput, replayed: NormalizedOutput
    ) -> None:
        if recorded.text_mime != replayed.text_mime:
            self.reasons.append(f"{label}: {recorded.text_mime} vs {replayed.text_mime}")
        elif not self._texts_match(recorded.text, replayed.text):
            self.reasons.append(f"{label}: {recorded.text_mime} differs")
        if (
            self.options.compare_html
            and recorded.text_mime != "text/html"
            and recorded.html is not None
            and replayed.html is not None
            and not self._texts_match(recorded.html, replayed.html)
        ):
            self.reasons.append(f"{label}: text/html differs")
        if (
            not self.options.ignore_execution_count
            and recorded.execution_count is not None
            and replayed.execution_count is not None
            and recorded.execution_count != replayed.execution_count
        ):
            self.reasons.append(
                f"{label}: execution count {recorded.execution_count} vs {replayed.execution_count}"
            )
        self._compare_images(label, recorded.images, replayed.images)

    def _compare_images(
        self, label: str, recorded: list[NormalizedImage], replayed: list[NormalizedImage]
    ) -> None:
        if len(recorded) != len(replayed):
            self.reasons.append(
                f"{label}: {len(recorded)} image(s) recorded vs {len(replayed)} replayed"
            )
        for left, right in zip(recorded, replayed, strict=False):
            self._images_seen += 1
            problem = image_difference(left, right, self.options)
            if problem:
                note = f"image {self._images_seen}: {problem}"
                self.reasons.append(f"{label}: {note}")
                self.image_notes.append(note)

    def _texts_match(self, recorded: str, replayed: str) -> bool:
        return texts_match(
            recorded, replayed, self.options.float_rel_tol, self.options.float_abs_tol
        )


# --- text -----------------------------------------------------------------------------------

# A sign belongs to a number only where it cannot be a binary operator ("x-1", "2-1").
_NUMBER_TOKEN = re.compile(r"((?:(?<![\w.)\]])[-+])?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)")
_INTEGER = re.compile(r"[-+]?\d+")
_SPACES = re.compile(r"[ \t]+")


def texts_match(recorded: str, replayed: str, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Equal texts, or texts differing only in numbers within tolerance and number padding."""
    if recorded == replayed:
        return True
    left = _NUMBER_TOKEN.split(recorded)
    right = _NUMBER_TOKEN.split(replayed)
    if len(left) != len(right):
        return False
    # re.split with one capturing group alternates text, number, text, number, ..., text.
    for position, (a, b) in enumerate(zip(left, right, strict=False)):
        if position % 2 == 0:
            if _squeeze_spaces(a) != _squeeze_spaces(b):
                return False
        elif not _numbers_match(a, b, rel_tol, abs_tol):
            return False
    return True


def _squeeze_spaces(text: str) -> str:
    return _SPACES.sub(" ", text).strip(" ")


def _numbers_match(a: str, b: str, rel_tol: float, abs_tol: float) -> bool:
    if a == b:
        return True
    if _INTEGER.fullmatch(a) and _INTEGER.fullmatch(b):
        return False  # counts, ids and sizes are exact
    return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=abs_tol)


# --- images ---------------------------------------------------------------------------------

# How far a pixel's channel may stray from the background and still count as background.
_BACKGROUND_TOLERANCE = 8


def image_difference(
    recorded: NormalizedImage, replayed: NormalizedImage, options: CompareOptions
) -> str | None:
    """None when the images look the same within tolerance, else a one-line description.

    A plot is mostly background, so a mean over the whole image would hide a different
    curve (sin vs cos in a default matplotlib figure differ by 1.6 on average). The mean
    is therefore taken over the pixels that are not background in either image, and a
    pixel only counts as far as it lies outside the range of the other image's 3x3
    neighbourhood, so anti-aliasing and one-pixel shifts do not count. Images whose
    sizes differ within tolerance are compared both resized to the recorded size and
    cropped to their common size at every offset (a tight bounding box that grew by a
    pixel); the best alignment counts.
    """
    if recorded.base64_data == replayed.base64_data:
        return None
    if importlib.util.find_spec("PIL") is None:
        return "images differ and Pillow is not installed to compare their pixels"
    try:
        left = _decode(recorded)
    except Exception as error:
        return f"recorded {recorded.mime} cannot be decoded ({error})"
    try:
        right = _decode(replayed)
    except Exception as error:
        return f"replayed {replayed.mime} cannot be decoded ({error})"
    tolerance = options.image_size_tolerance
    if abs(left.width - right.width) > tolerance or abs(left.height - right.height) > tolerance:
        return f"{left.width}x{left.height} vs {right.width}x{right.height}"
    background = _most_common_colour(left)
    smallest = math.inf
    for aligned_left, aligned_right in _alignments(left, right):
        smallest = min(smallest, _mean_content_difference(aligned_left, aligned_right, background))
        if smallest <= options.image_pixel_tolerance:
            return None
    return (
        f"pixels differ by {smallest:.1f} on average (tolerance {options.image_pixel_tolerance:g})"
    )


def _decode(image: NormalizedImage) -> Any:
    from PIL import Image

    decoded = Image.open(io.BytesIO(base64.b64decode(image.base64_data)))
    decoded.load()
    # Flatten transparency onto white, as a notebook shows it.
    rgba = decoded.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _alignments(left: Any, right: Any) -> Iterator[tuple[Any, Any]]:
    from PIL import Image

    if left.size == right.size:
        yield left, right
        return
    yield left, right.resize(left.size, Image.Resampling.BILINEAR)
    width, height = min(left.width, right.width), min(left.height, right.height)
    for dx in range(abs(left.width - right.width) + 1):
        for dy in range(abs(left.height - right.height) + 1):
            yield _crop(left, dx, dy, width, height), _crop(right, dx, dy, width, height)


def _crop(image: Any, dx: int, dy: int, width: int, height: int) -> Any:
    """The width x height window at offset (dx, dy), or the origin if the image is that small."""
    x = dx if image.width > width else 0
    y = dy if image.height > height else 0
    return image.crop((x, y, x + width, y + height))


def _mean_content_difference(left: Any, right: Any, background: tuple[int, ...]) -> float:
    from PIL import ImageChops, ImageStat

    if ImageChops.difference(left, right).getbbox() is None:
        return 0.0
    mask = ImageChops.lighter(_content_mask(left, background), _content_mask(right, background))
    if mask.getbbox() is None:
        return 0.0
    difference = ImageChops.lighter(
        _outside_neighbourhood(left, right), _outside_neighbourhood(right, left)
    )
    channel_means = ImageStat.Stat(difference, mask).mean
    return sum(channel_means) / len(channel_means)


def _outside_neighbourhood(image: Any, other: Any) -> Any:
    """Per channel, how far each pixel lies outside the range of ``other``'s 3x3 neighbourhood."""
    from PIL import ImageChops, ImageFilter

    above = ImageChops.subtract(image, other.filter(ImageFilter.MaxFilter(3)))
    below = ImageChops.subtract(other.filter(ImageFilter.MinFilter(3)), image)
    return ImageChops.lighter(above, below)


def _content_mask(image: Any, background: tuple[int, ...]) -> Any:
    from PIL import Image, ImageChops

    distance = ImageChops.difference(image, Image.new("RGB", image.size, background))
    red, green, blue = distance.split()
    largest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    return largest.point(lambda value: 255 if value > _BACKGROUND_TOLERANCE else 0)


def _most_common_colour(image: Any) -> tuple[int, ...]:
    colours = image.getcolors(image.width * image.height)
    return max(colours)[1]


# --- diff -----------------------------------------------------------------------------------


def _describe(output: NormalizedOutput) -> str:
    if output.kind == "error":
        return f"error {output.ename}"
    if output.kind == "stream":
        return output.stream_name or "stream"
    parts = [output.text_mime] if output.text_mime else []
    parts += [image.mime for image in output.images]
    return " + ".join(parts) or "empty output"


def _render(outputs: _CellOutputs, options: CompareOptions) -> list[str]:
    """The cell's normalised outputs as lines, with a bracketed header per section."""
    lines: list[str] = []
    for name, text in outputs.streams.items():
        lines.append(f"[{name}]")
        lines.extend(text.splitlines())
    for index, item in enumerate(outputs.items, start=1):
        if item.kind == "error":
            lines.append(f"[output {index}: error]")
            lines.extend(item.text.splitlines() or [""])
            if options.compare_traceback and item.traceback:
                lines.extend(item.traceback.splitlines())
            continue
        count = (
            ""
            if options.ignore_execution_count or item.execution_count is None
            else f", Out[{item.execution_count}]"
        )
        lines.append(f"[output {index}: {item.text_mime or 'no text'}{count}]")
        lines.extend(item.text.splitlines())
        if options.compare_html and item.html is not None and item.text_mime != "text/html":
            lines.append(f"[output {index}: text/html]")
            lines.extend(item.html.splitlines())
        lines.extend(f"[output {index}: {image.mime}]" for image in item.images)
    return lines


def _readable_diff(
    recorded: _CellOutputs, replayed: _CellOutputs, image_notes: list[str], options: CompareOptions
) -> str:
    left = _render(recorded, options)
    right = _hide_tolerated_changes(left, _render(replayed, options), options)
    diff = list(difflib.unified_diff(left, right, "recorded", "replayed", n=2, lineterm=""))
    if len(diff) > options.max_diff_lines:
        hidden = len(diff) - options.max_diff_lines
        diff = [*diff[: options.max_diff_lines], f"… ({hidden} more diff lines)"]
    limit = options.max_diff_line_length
    lines = [line if len(line) <= limit else line[: limit - 1] + "…" for line in diff]
    return "\n".join([*lines, *image_notes])


def _hide_tolerated_changes(
    left: list[str], right: list[str], options: CompareOptions
) -> list[str]:
    """Show replayed lines that match their recorded line within tolerance as the recorded line."""
    right = list(right)
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "replace":
            continue
        for i, j in zip(range(i1, i2), range(j1, j2), strict=False):
            if texts_match(left[i], right[j], options.float_rel_tol, options.float_abs_tol):
                right[j] = left[i]
    return right
