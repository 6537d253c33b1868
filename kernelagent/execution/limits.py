"""The execution defaults other layers configure (kept free of heavy imports)."""

DEFAULT_OUTPUT_LIMIT = 2_000_000
"""Bytes of output kept per cell (text and base64 payloads)."""
