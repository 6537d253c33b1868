"""Sessions recorded as nbformat v4 notebooks, saved atomically while they run."""

from kernelagent.notebook.atomic import atomic_write
from kernelagent.notebook.recorder import (
    DEFAULT_KERNELSPEC,
    NotebookFormatError,
    NotebookRecorder,
    RecordingError,
    load_notebook,
)

__all__ = [
    "DEFAULT_KERNELSPEC",
    "NotebookFormatError",
    "NotebookRecorder",
    "RecordingError",
    "atomic_write",
    "load_notebook",
]
