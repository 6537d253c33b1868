"""Normalise recorded and replayed cell outputs so that run-to-run noise compares equal.

Text rules run in a fixed order: ANSI codes, carriage returns, traceback paths,
timestamps, durations, memory addresses, trailing whitespace, then the caller's extra
replacements (written against the already-normalised text, which is what diffs show).

Rich outputs keep one "best" textual representation, chosen in ``TEXT_MIME_PRIORITY``
order: text/plain wins whenever present, so text/html (whose reprs carry generated
ids and styling) is the compared text only for outputs that have nothing better.
The HTML is kept on the side for callers that ask to compare it too. Raster images
are kept undecoded (base64) for the comparison to decode.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TIMESTAMP = "<timestamp>"
DURATION = "<duration>"
MEMORY_ADDRESS = "0x…"
IPYKERNEL_CELL_FILE = "<ipykernel-cell>"
SOURCE_DIRECTORY = "<path>"

IMAGE_MIMES = ("image/png", "image/jpeg")
TEXT_MIME_PRIORITY = (
    "text/plain",
    "text/markdown",
    "text/latex",
    "application/json",
    "text/html",
    "image/svg+xml",
)
RICH_OUTPUT_TYPES = ("execute_result", "display_data", "update_display_data")


class NormalizeOptions(BaseModel):
    """Which normalisation rules run; all built-in rules except epoch floats are on by default."""

    model_config = ConfigDict(extra="forbid")

    strip_ansi: bool = True
    # "50%\r100%\n" shows as "100%" on a terminal: keep what follows each line's last \r.
    collapse_carriage_returns: bool = True
    mask_traceback_paths: bool = True
    mask_timestamps: bool = True
    # Floats like 1763723236.52 (time.time()); off by default because they look like data.
    mask_epoch_timestamps: bool = False
    mask_durations: bool = True
    mask_memory_addresses: bool = True
    strip_trailing_whitespace: bool = True
    extra_replacements: list[tuple[str, str]] = Field(default_factory=list)

    @field_validator("extra_replacements")
    @classmethod
    def _patterns_compile(cls, replacements: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for pattern, _ in replacements:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"bad extra replacement pattern {pattern!r}: {error}") from error
        return replacements


# --- ANSI and carriage returns ------------------------------------------------------------

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
)


def _collapse_carriage_returns(text: str) -> str:
    text = text.replace("\r\n", "\n")
    if "\r" not in text:
        return text
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


# --- traceback paths ------------------------------------------------------------------------

_TRACEBACK_PATH_RULES: list[tuple[re.Pattern[str], str]] = [
    # /tmp/ipykernel_1234/1234567.py (the pid changes every run; TMPDIR may differ).
    (re.compile(r"(?:~?/[^\s/\"':]+)*/ipykernel_\d+/\d+\.py"), IPYKERNEL_CELL_FILE),
    (re.compile(r"Cell In ?\[\d+\]"), "Cell In[N]"),
    (re.compile(r"Input In ?\[\d+\]"), "Input In [N]"),
    (re.compile(r"<ipython-input-\d+-[0-9a-f]+>"), "<ipython-input-N>"),
    # Plain Python: File "/usr/lib/python3.11/json/decoder.py", line 355
    (re.compile(r'File "~?/(?:[^"\n]*/)?([^"/\n]+)"'), rf'File "{SOURCE_DIRECTORY}/\1"'),
    # IPython 8: File /usr/lib/python3/dist-packages/pandas/core/frame.py:3761, in ...
    (re.compile(r"File ~?/(?:[^\s:]*/)?([^\s/:]+\.py)(?=:\d)"), rf"File {SOURCE_DIRECTORY}/\1"),
    # Warnings: /usr/lib/python3/dist-packages/x.py:12: FutureWarning: ...
    (re.compile(r"(?m)^~?/(?:[^\s:]*/)?([^\s/:]+\.py)(?=:\d+: )"), rf"{SOURCE_DIRECTORY}/\1"),
]

# --- timestamps -----------------------------------------------------------------------------

_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_CLOCK = r"\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?"
_TIMESTAMP_RULES: list[tuple[re.Pattern[str], str]] = [
    # repr(datetime.now()), with or without tzinfo
    (
        re.compile(
            r"datetime\.datetime\(\d{4}(?:, \d+){2,6}(?:, tzinfo=[^()\n]*(?:\([^()\n]*\))?)?\)"
        ),
        f"datetime.datetime({TIMESTAMP})",
    ),
    # time.ctime(), `date`: Sat Nov 21 11:07:16 2026, Sat Nov 21 11:07:16 UTC 2026
    (re.compile(rf"\b{_DAY} {_MONTH} +\d{{1,2}} {_CLOCK}(?: [A-Z]{{2,5}})? \d{{4}}\b"), TIMESTAMP),
    # RFC 2822 / HTTP: Sat, 21 Nov 2026 11:07:16 GMT
    (
        re.compile(
            rf"\b{_DAY}, \d{{1,2}} {_MONTH} \d{{4}} {_CLOCK}(?: (?:[+-]\d{{4}}|[A-Z]{{2,5}}))?"
        ),
        TIMESTAMP,
    ),
    # ISO 8601 date-times: 2026-11-21T11:07:16.123+00:00, 2026-11-21 11:07:16,123 (logging)
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}[T "
            r"]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?(?!\d)"
        ),
        TIMESTAMP,
    ),
    # A bare clock: 11:07:16, 11:07:16.123
    (re.compile(r"(?<![\d:.])\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?![\d:])"), TIMESTAMP),
]
_EPOCH_TIMESTAMP = re.compile(r"(?<![\w.])1\d{9}(?:\d{3})?(?:\.\d+)?(?![\w.])")

# --- durations ------------------------------------------------------------------------------

_NUMBER = r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_TIME_UNIT = r"(?:ns|µs|μs|us|ms|seconds?|secs?|s|minutes?|mins?|hours?|hrs?|h)"
_DURATION_RULES: list[tuple[re.Pattern[str], str]] = [
    # %time: "CPU times: user 2.51 ms, sys: 0 ns, total: 2.51 ms" and "Wall time: 2.52 ms"
    (re.compile(r"CPU times: [^\n]*"), f"CPU times: {DURATION}"),
    (re.compile(r"Wall time: [^\n]*"), f"Wall time: {DURATION}"),
    # %timeit; the loop count is chosen at run time, so the whole line goes.
    (
        re.compile(
            rf"{_NUMBER} ?{_TIME_UNIT} ± {_NUMBER} ?{_TIME_UNIT} per loop "
            r"\(mean ± std\. dev\. of [\d,]+ runs?, [\d,]+ loops? each\)"
        ),
        DURATION,
    ),
    (re.compile(rf"[\d,]+ loops?, best of \d+: {_NUMBER} ?{_TIME_UNIT} per loop"), DURATION),
    # %timeit prints this warning only on some runs.
    (re.compile(r"(?m)^The slowest run took [^\n]*\n?"), ""),
    (re.compile(rf"(?<![\w.]){_NUMBER} ?{_TIME_UNIT}(?!\w)"), DURATION),
]

# --- memory addresses -----------------------------------------------------------------------

# "at 0x..." in any repr, or any hex number long enough to be a 64-bit user-space address
# (short literals such as 0xff stay).
_MEMORY_ADDRESS = re.compile(r"(?<=\bat )0x[0-9a-fA-F]+\b|\b0x[0-9a-fA-F]{9,16}\b")

_TRAILING_WHITESPACE = re.compile(r"[ \t]+(?=\n|\Z)")


def normalize_text(text: str, options: NormalizeOptions | None = None) -> str:
    """Apply every enabled rule of ``options`` (defaults if None) to ``text``."""
    options = options or NormalizeOptions()
    if options.strip_ansi:
        text = _ANSI.sub("", text)
    if options.collapse_carriage_returns:
        text = _collapse_carriage_returns(text)
    if options.mask_traceback_paths:
        text = _apply(_TRACEBACK_PATH_RULES, text)
    if options.mask_timestamps:
        text = _apply(_TIMESTAMP_RULES, text)
    if options.mask_epoch_timestamps:
        text = _EPOCH_TIMESTAMP.sub(TIMESTAMP, text)
    if options.mask_durations:
        text = _apply(_DURATION_RULES, text)
    if options.mask_memory_addresses:
        text = _MEMORY_ADDRESS.sub(MEMORY_ADDRESS, text)
    if options.strip_trailing_whitespace:
        text = _TRAILING_WHITESPACE.sub("", text)
    for pattern, replacement in options.extra_replacements:
        text = re.sub(pattern, replacement, text)
    return text


def _apply(rules: list[tuple[re.Pattern[str], str]], text: str) -> str:
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


# --- outputs --------------------------------------------------------------------------------


class NormalizedImage(BaseModel):
    mime: str
    base64_data: str


class NormalizedOutput(BaseModel):
    """One output reduced to what the comparison looks at.

    ``kind`` folds execute_result and display_data into "rich": the same content shown
    either way compares equal. ``text`` is the stream text, the best textual MIME of a
    rich output (named by ``text_mime``), or "ename: evalue" of an error.
    """

    output_type: str
    kind: Literal["stream", "rich", "error"]
    stream_name: str | None = None
    text: str = ""
    text_mime: str | None = None
    html: str | None = None
    images: list[NormalizedImage] = Field(default_factory=list)
    execution_count: int | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: str | None = None


def normalize_output(
    output: dict[str, Any], options: NormalizeOptions | None = None
) -> NormalizedOutput:
    """Normalise one nbformat v4 output dict (or NotebookNode)."""
    output_type = str(output.get("output_type", ""))
    if output_type == "stream":
        return NormalizedOutput(
            output_type=output_type,
            kind="stream",
            stream_name=str(output.get("name", "stdout")),
            text=normalize_text(_joined(output.get("text", "")), options),
        )
    if output_type == "error":
        ename = str(output.get("ename", ""))
        evalue = normalize_text(str(output.get("evalue", "")), options)
        traceback = normalize_text("\n".join(output.get("traceback") or []), options)
        return NormalizedOutput(
            output_type=output_type,
            kind="error",
            text=f"{ename}: {evalue}",
            ename=ename,
            evalue=evalue,
            traceback=traceback,
        )
    return _normalize_rich(output_type, output, options)


def _normalize_rich(
    output_type: str, output: dict[str, Any], options: NormalizeOptions | None
) -> NormalizedOutput:
    data: dict[str, Any] = dict(output.get("data") or {})
    text_mime = _best_text_mime(data)
    html = data.get("text/html")
    images = [
        NormalizedImage(mime=mime, base64_data=_joined(data[mime]))
        for mime in IMAGE_MIMES
        if mime in data
    ]
    return NormalizedOutput(
        output_type=output_type,
        kind="rich",
        text=normalize_text(_mime_text(text_mime, data[text_mime]), options) if text_mime else "",
        text_mime=text_mime,
        html=normalize_text(_joined(html), options) if html is not None else None,
        images=images,
        execution_count=output.get("execution_count"),
    )


def _best_text_mime(data: dict[str, Any]) -> str | None:
    for mime in TEXT_MIME_PRIORITY:
        if mime in data:
            return mime
    # Anything else textual (application/javascript, widget JSON, ...), in a stable order.
    others = sorted(m for m in data if m not in IMAGE_MIMES and not m.startswith("image/"))
    return others[0] if others else None


def _mime_text(mime: str, value: Any) -> str:
    # JSON MIME values are the JSON itself; text MIME values may be lists of lines.
    if (mime == "application/json" or mime.endswith("+json")) and not isinstance(value, str):
        return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False)
    return _joined(value)


def _joined(value: Any) -> str:
    """nbformat allows multiline strings stored as lists of lines."""
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return "" if value is None else str(value)
