"""The outputs of the cells a kernel ran, kept the way nbclient keeps them.

nbclient's ``NotebookClient`` does the message handling: ``clear_output`` (with
``wait``), display ids across cells (``update_display_data`` and a new display with an
existing id update every output with that id, in any earlier cell), a ``transient``
that is null, comm messages and the Output-widget hooks. This subclass adds
kernelagent's per-cell byte cap, merges consecutive stream outputs as they arrive,
and reports each kept output to a callback.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from nbclient import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import new_notebook, output_from_msg

from kernelagent.events import NotebookOutput
from kernelagent.execution.limits import DEFAULT_OUTPUT_LIMIT

OUTPUT_OVERHEAD = 200
"""Bytes charged per output on top of its payload, so floods of empty outputs are capped too."""

OUTPUT_MESSAGES = frozenset({"stream", "display_data", "execute_result", "error"})

OutputCallback = Callable[[NotebookOutput], None]


def payload_size(output: NotebookOutput) -> int:
    """What an output costs against the cap."""
    if output["output_type"] == "stream":
        return len(output["text"]) + OUTPUT_OVERHEAD
    if output["output_type"] == "error":
        traceback = sum(len(line) for line in output.get("traceback", []))
        return traceback + len(output.get("evalue", "")) + OUTPUT_OVERHEAD
    data = output.get("data", {})
    sizes = (len(v) if isinstance(v, str) else len(str(v)) for v in data.values())
    return sum(sizes) + OUTPUT_OVERHEAD


class KernelOutputs(NotebookClient):
    """The outputs of every cell run on one kernel; cell *i* of ``nb`` is the *i*-th run.

    The sandbox keeps one per kernel and starts afresh when the kernel restarts. Only
    nbclient's output handling is used: it never starts a kernel or runs a notebook.
    Cells no display id refers to give up their outputs once the next cell starts.
    """

    def __init__(self) -> None:
        super().__init__(new_notebook(), record_timing=False)
        self.clear_before_next_output = False
        self.limit = DEFAULT_OUTPUT_LIMIT
        self.kept = 0
        self.dropped = 0
        self.on_output: OutputCallback | None = None
        self._cell_ids: list[str] = []
        self._updated: set[int] = set()

    @property
    def cell(self) -> NotebookNode:
        return self.nb.cells[-1]

    @property
    def cell_index(self) -> int:
        return len(self.nb.cells) - 1

    def start_cell(
        self,
        cell_id: str,
        client: AsyncKernelClient,
        limit: int = DEFAULT_OUTPUT_LIMIT,
        on_output: OutputCallback | None = None,
    ) -> None:
        """Called by ``execute`` before it sends a cell's code."""
        if self.nb.cells and not self._referenced(self.cell_index):
            self.cell.outputs = []
        # new_code_cell() would validate the cell against the schema: a millisecond a cell.
        self.nb.cells.append(NotebookNode(cell_type="code", execution_count=None, outputs=[]))
        self._cell_ids.append(cell_id)
        self.kc = client  # the Output widget mimic answers the kernel through it
        self.clear_before_next_output = False
        self.limit, self.on_output = limit, on_output
        self.kept = self.dropped = 0
        self._updated = set()

    def handle(self, msg: dict[str, Any]) -> None:
        """Apply one iopub message of the running cell (not its status messages)."""
        self.process_message(msg, self.cell, self.cell_index)

    def finish_cell(self) -> tuple[list[NotebookOutput], dict[str, list[NotebookOutput]]]:
        """The running cell's outputs, and the earlier cells it updated, by cell id."""
        if self.dropped:
            note = (
                f"\n[kernelagent: output truncated: kept {self.kept} bytes, "
                f"dropped {self.dropped} bytes over the {self.limit}-byte cap]\n"
            )
            self.cell.outputs.append({"output_type": "stream", "name": "stderr", "text": note})
        updates = {
            self._cell_ids[index]: copy.deepcopy(self.nb.cells[index].outputs)
            for index in sorted(self._updated)
        }
        return self.cell.outputs, updates

    # -- nbclient's hooks --------------------------------------------------------------

    def output(
        self,
        outs: list[NotebookNode],
        msg: dict[str, Any],
        display_id: str | None,
        cell_index: int,
    ) -> NotebookNode | None:
        if self.output_hook_stack.get(msg["parent_header"].get("msg_id")):
            return super().output(outs, msg, display_id, cell_index)  # an Output widget's
        if msg["msg_type"] not in OUTPUT_MESSAGES:
            return None
        output = output_from_msg(msg)
        if self.clear_before_next_output:
            self.clear_before_next_output = False
            outs[:] = []
            self.clear_display_id_mapping(cell_index)
            self.kept = 0
        if not self._within_cap(output):
            return None
        if self.on_output is not None:
            self.on_output(output)
        last = outs[-1] if outs else None
        if (
            output["output_type"] == "stream"
            and last is not None
            and last["output_type"] == "stream"
            and last["name"] == output["name"]
        ):
            last["text"] += output["text"]
            return last
        if display_id:
            places = self._display_id_map.setdefault(display_id, {})
            places.setdefault(cell_index, []).append(len(outs))
        outs.append(output)
        return output

    def clear_output(self, outs: list[NotebookNode], msg: dict[str, Any], cell_index: int) -> None:
        super().clear_output(outs, msg, cell_index)
        if not outs:
            self.kept = 0

    def _update_display_id(self, display_id: str, msg: dict[str, Any]) -> None:
        super()._update_display_id(display_id, msg)
        for index, places in self._display_id_map.get(display_id, {}).items():
            if places and index != self.cell_index:
                self._updated.add(index)

    # -- the cap -------------------------------------------------------------------------

    def _within_cap(self, output: NotebookNode) -> bool:
        """Charge ``output`` to the cell; a stream that overflows is cut to what fits."""
        size = payload_size(output)
        if self.kept + size > self.limit:
            if output["output_type"] != "stream" or self.kept >= self.limit:
                self.dropped += size
                return False
            room = self.limit - self.kept
            self.dropped += size - room
            output["text"] = output["text"][:room]
            size = room
        self.kept += size
        return True

    def _referenced(self, index: int) -> bool:
        return any(places.get(index) for places in self._display_id_map.values())
