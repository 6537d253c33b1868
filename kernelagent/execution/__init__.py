"""Run one cell on a kernel client and collect its nbformat v4 outputs.

Handles what a raw ``execute_interactive`` leaves to the caller: a timeout that
interrupts (and reports when the interrupt was ignored), a dead kernel noticed while
waiting, and a cap on the output kept per cell so a flood of prints cannot exhaust host
memory. Output messages are applied by nbclient's own handling.

* :mod:`~kernelagent.execution.run`: ``execute`` (and ``shell_reply``)
* :mod:`~kernelagent.execution.outputs`: ``KernelOutputs``, the nbclient-based output state
* :mod:`~kernelagent.execution.result`: ``ExecutionResult``
* :mod:`~kernelagent.execution.limits`: defaults, importable without nbclient
"""
