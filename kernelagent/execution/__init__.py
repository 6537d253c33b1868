"""Run one cell on a kernel client and collect its nbformat v4 outputs.

Handles what a raw ``execute_interactive`` leaves to the caller: a timeout that
interrupts (and reports when the interrupt was ignored), a dead kernel noticed while
waiting, and a cap on the output kept per cell so a flood of prints cannot exhaust host
memory. Output messages are applied by nbclient's own handling (``outputs``).
"""

from kernelagent.execution.outputs import DEFAULT_OUTPUT_LIMIT, KernelOutputs, OutputCallback
from kernelagent.execution.result import ExecutionResult, ExecutionStatus
from kernelagent.execution.run import MALFORMED, DeathCheck, Interrupt, execute, shell_reply

__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "MALFORMED",
    "DeathCheck",
    "ExecutionResult",
    "ExecutionStatus",
    "Interrupt",
    "KernelOutputs",
    "OutputCallback",
    "execute",
    "shell_reply",
]
