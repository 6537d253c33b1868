"""The loop's limits, what it accumulates, and how a run ends (stored with the session)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kernelagent.events import SessionStatus, Usage


@dataclass
class LoopLimits:
    max_steps: int = 30
    """Model calls per instruction, besides the turns an answer review asks for (answers.py)."""
    cell_timeout: float = 300.0
    shell_timeout: float = 120.0
    max_tokens: int | None = None
    """Input + output tokens over the whole session."""
    max_cost: float | None = None
    """US dollars over the whole session, priced with ``price_per_million``."""
    price_per_million: tuple[float, float] | None = None
    """(input, output) dollars per million tokens."""
    max_idle_turns: int = 3
    """Consecutive turns with no usable tool call before giving up."""
    max_kernel_deaths: int = 3
    context_chars: int = 60_000
    """Older steps are compacted when the conversation grows past this (~15k tokens)."""
    summarize_context: bool = True
    """Compact by a running summary the model writes (one turn, no tools) rather than by
    clipping older steps; clipping remains the fallback when that turn fails."""
    require_evidence: bool = True
    """Refuse a final answer until some code ran successfully, when the workspace has files."""
    check_answers: bool = False
    """Send a short final answer back once when no successful cell printed it (see grounding)."""
    verify_answers: bool = False
    """Before accepting an answer, show the model the question, the code that produced the
    answer and its output, and let it confirm or fix it (one turn per instruction)."""
    answer_from_output: bool = True
    """When the model keeps resending an answer that no output shows, end with the value
    its newest cell printed (the computation it ran) instead of failing with no answer;
    the outcome and the notebook say the answer was taken from the output."""
    temperature: float | None = None
    """Sampling temperature of the model's turns; None leaves the server's default."""
    retry_temperatures: tuple[float, ...] = (0.7, 1.0)
    """Temperatures for the turns after code that repeats a failed cell was refused: the
    first refusal retries at the first value, a second one in a row at the next, ..."""


@dataclass
class Outcome:
    status: SessionStatus
    answer: str | None = None
    reason: str = ""


@dataclass
class LoopState:
    """What the loop accumulates; stored with the session so it can continue."""

    usage: Usage = field(default_factory=Usage)
    steps: int = 0
    cells: int = 0
    kernel_deaths: int = 0


def cost(limits: LoopLimits, usage: Usage) -> float | None:
    """US dollars spent so far, or None when no price is set."""
    if limits.price_per_million is None:
        return None
    price_in, price_out = limits.price_per_million
    return (usage.input_tokens * price_in + usage.output_tokens * price_out) / 1e6


def budget_exhausted(limits: LoopLimits, usage: Usage) -> Outcome | None:
    """A paused outcome once the token or cost budget is spent."""
    if limits.max_tokens is not None and usage.total_tokens >= limits.max_tokens:
        return Outcome(
            "paused", reason=f"token budget reached ({usage.total_tokens} of {limits.max_tokens})"
        )
    spent = cost(limits, usage)
    if limits.max_cost is not None and spent is not None and spent >= limits.max_cost:
        return Outcome(
            "paused", reason=f"cost budget reached (${spent:.4f} of ${limits.max_cost:.2f})"
        )
    return None
