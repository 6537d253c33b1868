"""Model adapter for models that cannot call tools: they act through fenced code blocks.

No tools are sent. The system prompt explains the protocol, the reply is parsed into
synthetic tool calls (ids ``cb_<n>``), and when the conversation goes back to the API,
tool calls are rendered as the assistant's text and tool results as user messages.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Literal

import openai
from pydantic import BaseModel

from kernelagent.agent.chat_model import ChatCompletionsModel
from kernelagent.agent.model import (
    AssistantItem,
    Conversation,
    ConversationItem,
    ModelTurn,
    TextDeltaCallback,
    ToolCall,
    ToolResultItem,
    ToolSpec,
    UserItem,
)

PYTHON_LANGUAGES = frozenset({"python", "py", "python3", "ipython", "ipython3", "jupyter"})
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "zsh", "console"})

Action = Literal["python", "shell", "final_answer", "host_tool"]
HOST_TOOL_LANGUAGE = "tool"
"""A block ```tool <name> holds the JSON arguments of a call to that host tool."""

_FENCE = re.compile(r"^[ \t]*(`{3,})[ \t]*([^\s`{]*)[ \t]*([^`\n]*)")
_ONE_LINE_BLOCK = re.compile(r"^[ \t]*(`{3,})(.+?)\1[ \t]*$")
_FINAL_ANSWER = re.compile(
    r"^[ \t>#*_]*final[ _-]?answer[ \t*_]*:[ \t*_]*", re.IGNORECASE | re.MULTILINE
)
_ANSWER_LINE_IN_CODE = re.compile(r"^[ \t]*final[ _-]?answer[ \t]*:(.*)$", re.IGNORECASE)


class ParsedReply(BaseModel):
    prose: str
    """What the model said before its action."""
    action: Action | None = None
    payload: str = ""
    """The code, the command, the answer, or a host tool's JSON arguments."""
    tool: str = ""
    """The host tool a ``host_tool`` action calls."""
    answer: str | None = None
    """An answer given in the same reply as code (after the block, or as a line inside it).
    The loop considers it only once the code's output exists and shows it."""


class _Block(BaseModel):
    language: str
    info: str = ""
    """What follows the language on the opening fence (a host tool's name)."""
    code: str
    start: int
    end: int


class CodeBlockModel(ChatCompletionsModel):
    """Chat Completions without tools: the model acts with ```python / ```bash blocks or
    a FINAL ANSWER line, and each turn's text is parsed into tool calls."""

    acts_with_code_blocks = True
    nudge = (
        "Reply with one ```python block to run code in the kernel, or with a line "
        "`FINAL ANSWER: <answer>` when the task is done."
    )

    @classmethod
    def over_client(cls, client: openai.AsyncOpenAI, model: str, **options: Any) -> CodeBlockModel:
        """The adapter over ``client`` (``options`` as for ChatCompletionsModel)."""
        return cls(client, model, **options)

    async def turn(
        self,
        conversation: Conversation,
        tools: list[ToolSpec],
        on_text_delta: TextDeltaCallback | None = None,
        *,
        temperature: float | None = None,
    ) -> ModelTurn:
        inner_turn = await super().turn(
            as_text_conversation(conversation, tools), [], on_text_delta, temperature=temperature
        )
        parsed = parse_reply(inner_turn.text)
        calls: list[tuple[str, str]] = []
        if parsed.action == "host_tool":
            calls.append((parsed.tool, parsed.payload.strip() or "{}"))
        elif parsed.action is not None:
            calls.append(
                (parsed.action, json.dumps({_ARGUMENT_NAMES[parsed.action]: parsed.payload}))
            )
        if parsed.answer is not None:
            calls.append(("final_answer", json.dumps({"answer": parsed.answer})))
        count = conversation.tool_call_count()
        tool_calls = [
            ToolCall(id=f"cb_{count + index}", name=name, arguments=arguments)
            for index, (name, arguments) in enumerate(calls, start=1)
        ]
        return ModelTurn(text=parsed.prose, tool_calls=tool_calls, usage=inner_turn.usage)


_ARGUMENT_NAMES: dict[str, str] = {"python": "code", "shell": "command", "final_answer": "answer"}


def protocol_instructions(tools: list[ToolSpec]) -> str:
    names = {tool.name for tool in tools} or set(_ARGUMENT_NAMES)
    lines = [
        "## How to act",
        "You cannot call tools. You act through the text of your reply:",
    ]
    if "python" in names:
        lines += [
            "- To run Python code in the Jupyter kernel, reply with one fenced block:",
            "```python",
            'print("hello")',
            "```",
        ]
    if "shell" in names:
        lines += [
            "- To run a shell command, reply with one fenced block:",
            "```bash",
            "ls -la",
            "```",
        ]
    host_tools = [tool for tool in tools if tool.name not in _ARGUMENT_NAMES]
    if host_tools:
        lines += [
            "- To call one of these tools, reply with one fenced block: ```tool, the tool's name, "
            "then its arguments as a JSON object, e.g.",
            f"```{HOST_TOOL_LANGUAGE} {host_tools[0].name}",
            json.dumps(_example_arguments(host_tools[0])),
            "```",
            *(
                f"  - {tool.name}: {tool.description} Arguments (JSON schema): "
                f"{json.dumps(tool.parameters.get('properties', {}))}"
                for tool in host_tools
            ),
        ]
    lines += [
        "- When the task is done, reply with a line `FINAL ANSWER: <your answer>`.",
        (
            "Put at most one code block in a reply and stop right after it. The output is sent "
            "back to you in the next message; never write the output yourself."
        ),
    ]
    return "\n".join(lines)


def parse_reply(text: str) -> ParsedReply:
    """Find the action in a reply: the first runnable block, else a FINAL ANSWER line.

    A runnable block before a FINAL ANSWER line runs first, and the answer rides along
    (``answer``): the model wrote it before the output existed, so the loop checks it
    against that output. A ``FINAL ANSWER:`` line inside a Python block (a SyntaxError
    there) is split off the same way. A block without a language counts as Python only
    when there is no FINAL ANSWER and it parses as Python (such blocks often quote output
    or a table).
    """
    blocks = _fenced_blocks(text)
    final = next(
        (match for match in _FINAL_ANSWER.finditer(text) if not _inside(match.start(), blocks)),
        None,
    )
    cutoff = final.start() if final is not None else len(text)
    candidates = [block for block in blocks if block.start < cutoff]
    chosen = next((block for block in candidates if _block_action(block.language)), None)
    if chosen is None and final is None:
        chosen = next(
            (block for block in candidates if block.language == "" and _parses(block.code)), None
        )
    if chosen is not None and chosen.language.lower() == HOST_TOOL_LANGUAGE:
        return ParsedReply(
            prose=text[: chosen.start].strip(),
            action="host_tool",
            tool=chosen.info.split()[0] if chosen.info.split() else "",
            payload=chosen.code,
        )
    if chosen is not None:
        action = _block_action(chosen.language) or "python"
        code, answer = chosen.code, None
        if action == "python":
            code, answer = split_answer_line(code)
        if final is not None and answer is None:
            answer = _answer_after(text, final.end()) or None
        if not code.strip() and answer is not None:
            return ParsedReply(
                prose=text[: chosen.start].strip(), action="final_answer", payload=answer
            )
        return ParsedReply(
            prose=text[: chosen.start].strip(), action=action, payload=code, answer=answer
        )
    if final is not None:
        answer = _answer_after(text, final.end())
        return ParsedReply(
            prose=text[: final.start()].strip(), action="final_answer", payload=answer
        )
    return ParsedReply(prose=text.strip())


def split_answer_line(code: str) -> tuple[str, str | None]:
    """Code without a bare ``FINAL ANSWER: ...`` line (not Python), and that answer."""
    lines = code.splitlines()
    answers = [(i, m) for i, line in enumerate(lines) if (m := _ANSWER_LINE_IN_CODE.match(line))]
    if not answers:
        return code, None
    _index, match = answers[0]
    rest = [line for i, line in enumerate(lines) if i not in {i for i, _ in answers}]
    stripped = "\n".join(rest).strip("\n")
    if _parses(code) and not _parses(stripped):
        return code, None
    return stripped, match.group(1).strip().strip("*_`").strip() or None


def _answer_after(text: str, start: int) -> str:
    return text[start:].strip().strip("*_").strip()


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def as_text_conversation(conversation: Conversation, tools: list[ToolSpec]) -> Conversation:
    """The conversation as plain text: tool calls become reply text, results user messages."""
    items: list[ConversationItem] = []
    for item in conversation.items:
        if isinstance(item, UserItem):
            items.append(item)
        elif isinstance(item, AssistantItem):
            parts = [item.text] if item.text else []
            parts += [render_tool_call(call) for call in item.tool_calls]
            if parts:
                items.append(AssistantItem(text="\n\n".join(parts)))
        else:
            call = conversation.find_tool_call(item.call_id)
            items.append(UserItem(text=render_tool_result(item, call), images=item.images))
    system = f"{conversation.system}\n\n{protocol_instructions(tools)}"
    return Conversation(system=system, items=items)


def render_tool_call(call: ToolCall) -> str:
    try:
        arguments = json.loads(call.arguments)
    except json.JSONDecodeError:
        arguments = None
    if isinstance(arguments, dict):
        if call.name == "python" and isinstance(arguments.get("code"), str):
            return _fenced("python", arguments["code"])
        if call.name == "shell" and isinstance(arguments.get("command"), str):
            return _fenced("bash", arguments["command"])
        if call.name == "final_answer" and isinstance(arguments.get("answer"), str):
            return f"FINAL ANSWER: {arguments['answer']}"
    if call.name not in _ARGUMENT_NAMES:
        return _fenced(f"{HOST_TOOL_LANGUAGE} {call.name}", call.arguments)
    return f"(called tool {call.name} with arguments {call.arguments})"


def render_tool_result(result: ToolResultItem, call: ToolCall | None) -> str:
    output = result.output if result.output.strip() else "(no output)"
    name = call.name if call is not None else None
    if name == "python":
        return f"Output of your code:\n{output}"
    if name == "shell":
        return f"Output of your command:\n{output}"
    if name is None:
        return f"Output:\n{output}"
    return f"Result of {name}:\n{output}"


def _fenced(language: str, code: str) -> str:
    longest_run = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest_run + 1)
    return f"{fence}{language}\n{code.rstrip(chr(10))}\n{fence}"


def _example_arguments(tool: ToolSpec) -> dict[str, str]:
    properties = tool.parameters.get("properties", {})
    return {name: "..." for name in list(properties)[:2]}


def _block_action(language: str) -> Action | None:
    language = language.lower()
    if language == HOST_TOOL_LANGUAGE:
        return "host_tool"
    if language in PYTHON_LANGUAGES:
        return "python"
    if language in SHELL_LANGUAGES:
        return "shell"
    return None


def _fenced_blocks(text: str) -> list[_Block]:
    """Fenced blocks with their spans; an unclosed block runs to the end of the text."""
    blocks: list[_Block] = []
    lines = text.splitlines(keepends=True)
    offset = 0
    index = 0
    while index < len(lines):
        one_line = _ONE_LINE_BLOCK.match(lines[index].rstrip("\r\n"))
        if one_line is not None:
            language, code = _split_language(one_line.group(2))
            blocks.append(
                _Block(language=language, code=code, start=offset, end=offset + len(lines[index]))
            )
        opening = _FENCE.match(lines[index])
        if opening is None or one_line is not None:
            offset += len(lines[index])
            index += 1
            continue
        fence, language, info = opening.group(1), opening.group(2), opening.group(3)
        start = offset
        offset += len(lines[index])
        index += 1
        code_lines: list[str] = []
        while index < len(lines):
            line = lines[index]
            offset += len(line)
            index += 1
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {"`"}:
                break
            code_lines.append(line)
        blocks.append(
            _Block(
                language=language,
                info=info.strip(),
                code="".join(code_lines).rstrip("\n"),
                start=start,
                end=offset,
            )
        )
    return blocks


def _split_language(inner: str) -> tuple[str, str]:
    first, _, rest = inner.strip().partition(" ")
    if rest.strip() and _block_action(first):
        return first, rest.strip()
    return "", inner.strip()


def _inside(position: int, blocks: list[_Block]) -> bool:
    return any(block.start <= position < block.end for block in blocks)
