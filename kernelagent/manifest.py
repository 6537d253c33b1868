"""Manifests: which names a cell defined or changed, with cheap fingerprints.

The kernel computes them (code below, installed once per kernel as a builtin so it
never shows up in the user's namespace) and returns them through the execute
request's ``user_expressions``, so recording a manifest costs no extra round trip.
After a restore, the same fingerprints are taken again and compared.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any

EXPRESSION_NAME = "kernelagent_manifest"
EXPRESSION = "__kernelagent_manifest__()"

#: Installed silently in the kernel. Values above ``limit`` bytes get shape/len only;
#: DataFrames also list their first ``columns_kept`` columns with dtypes (for error notes).
KERNEL_SETUP = r"""
def __kernelagent_install():
    import builtins, hashlib, json, sys
    limit = 20_000_000
    columns_kept = 60
    skip = {"In", "Out", "get_ipython", "exit", "quit", "open"}
    previous = {}

    def digest(data):
        return hashlib.sha1(data).hexdigest()[:16]

    def fingerprint(value):
        kind = type(value)
        entry = {"type": f"{kind.__module__}.{kind.__qualname__}"}
        pandas = sys.modules.get("pandas")
        numpy = sys.modules.get("numpy")
        try:
            if pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series)):
                entry["shape"] = list(value.shape)
                if isinstance(value, pandas.DataFrame):
                    shown = value.dtypes.iloc[:columns_kept]
                    entry["columns"] = [[str(name), str(dtype)] for name, dtype in shown.items()]
                if int(value.memory_usage(deep=False).sum()) <= limit:
                    hashed = pandas.util.hash_pandas_object(value, index=True)
                    entry["hash"] = format(int(hashed.sum()) & 0xFFFFFFFFFFFFFFFF, "016x")
            elif numpy is not None and isinstance(value, numpy.ndarray):
                entry["shape"] = list(value.shape)
                entry["dtype"] = str(value.dtype)
                if value.nbytes <= limit and value.dtype != object:
                    entry["hash"] = digest(numpy.ascontiguousarray(value).tobytes())
            elif isinstance(value, (int, float, complex, bool, str, bytes, type(None))):
                entry["hash"] = digest(repr(value).encode())
            elif isinstance(value, (set, frozenset)):
                entry["len"] = len(value)
                if len(value) <= 10_000:
                    entry["hash"] = digest(repr(sorted(map(repr, value))).encode())
            elif isinstance(value, (list, tuple, dict)):
                entry["len"] = len(value)
                if len(value) <= 10_000:
                    entry["hash"] = digest(repr(value)[:1_000_000].encode())
            elif kind.__name__ == "module":
                entry["hash"] = value.__name__
            elif callable(value):
                entry["hash"] = getattr(value, "__qualname__", "")
            elif hasattr(value, "__len__"):
                entry["len"] = len(value)
        except Exception:
            pass
        return entry

    def snapshot():
        shell = get_ipython()
        hidden = shell.user_ns_hidden
        names = {}
        for name, value in list(shell.user_ns.items()):
            if name.startswith("_") or name in skip:
                continue
            if name in hidden and hidden[name] is value:
                continue
            names[name] = fingerprint(value)
        return names

    def manifest():
        nonlocal previous
        current = snapshot()
        changed = {n: e for n, e in current.items() if previous.get(n) != e}
        for name in previous.keys() - current.keys():
            changed[name] = {"deleted": True}
        previous = current
        return json.dumps(changed, sort_keys=True)

    def full():
        return json.dumps(snapshot(), sort_keys=True)

    builtins.__kernelagent_manifest__ = manifest
    builtins.__kernelagent_snapshot__ = full

__kernelagent_install()
del __kernelagent_install
"""

SNAPSHOT_EXPRESSION = "__kernelagent_snapshot__()"


def parse_expression(
    user_expressions: dict[str, Any], name: str = EXPRESSION_NAME
) -> dict[str, Any] | None:
    """The manifest from an execute_reply's ``user_expressions``, or None."""
    reply = user_expressions.get(name)
    if not reply or reply.get("status") != "ok":
        return None
    text = reply.get("data", {}).get("text/plain")
    if not isinstance(text, str):
        return None
    try:
        return json.loads(ast.literal_eval(text))
    except (ValueError, SyntaxError):
        return None


def as_list(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """A manifest as the list stored in cell metadata: ``[{"name": ..., ...}]``."""
    return [{"name": name, **entry} for name, entry in sorted(manifest.items())]


def from_list(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: {k: v for k, v in entry.items() if k != "name"} for entry in entries}


def apply(state: dict[str, dict[str, Any]], manifest: dict[str, dict[str, Any]]) -> None:
    """Update a namespace ``state`` in place with one cell's manifest."""
    for name, entry in manifest.items():
        if entry.get("deleted"):
            state.pop(name, None)
        else:
            state[name] = entry


def fold(manifests: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The namespace the manifests of consecutive cells add up to."""
    state: dict[str, dict[str, Any]] = {}
    for manifest in manifests:
        apply(state, manifest)
    return state


@dataclass
class ManifestCheck:
    matched: list[str] = field(default_factory=list)
    mismatched: dict[str, str] = field(default_factory=dict)
    """name -> what differs."""
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.missing


def check(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> ManifestCheck:
    """Compare the expected namespace with the one a restore produced."""
    result = ManifestCheck()
    for name, entry in sorted(expected.items()):
        got = actual.get(name)
        if got is None:
            result.missing.append(name)
            continue
        differences = [
            f"{key} {entry.get(key)!r} != {got.get(key)!r}"
            for key in ("type", "shape", "dtype", "len", "hash")
            if key in entry and entry.get(key) != got.get(key)
        ]
        if differences:
            result.mismatched[name] = "; ".join(differences)
        else:
            result.matched.append(name)
    return result
