"""Who the sandbox runs as, and making its workspace writable without loosening it.

The sandbox never runs as root. When the host process is not root, the sandbox runs as
the host user. When it is root (a Jupyter server started by root, say), the sandbox runs
as the owner of the workspace directory if that is a regular user, so it can write there
as that user would; if root owns the directory too, the sandbox runs as uid 1000 and gets
a POSIX ACL entry (``u:1000:rwx``, plus the same default entry so new files inherit it)
on that one directory. Nothing else changes: not the owner, not the mode of the files
already there, not any other directory.

Called by :class:`~kernelagent.sandbox.docker_provisioner.DockerProvisioner` before it
starts a container, and by :class:`~kernelagent.sandbox.sandbox.Sandbox` when it copies
input files in.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import struct
from pathlib import Path

from kernelagent.errors import KernelAgentError

log = logging.getLogger(__name__)

SANDBOX_UID_WHEN_HOST_IS_ROOT = 1000

_ACCESS = "system.posix_acl_access"
_DEFAULT = "system.posix_acl_default"
_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF
_ENTRY = struct.Struct("<HHI")
_HEADER = struct.Struct("<I")
#: Directories that are never given to the sandbox for writing, even as its workspace.
_PROTECTED = (
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/opt",
    "/proc",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/usr",
    "/var",
    "/home",
)


class WorkspaceAccessError(KernelAgentError, RuntimeError):
    """The workspace cannot be made writable for the sandbox; says what to do instead."""


def sandbox_identity(workspace: Path, configured: str = "") -> tuple[int, int]:
    """The uid:gid the sandbox runs as (see the module docstring); never 0."""
    if configured:
        uid_text, _, gid_text = configured.partition(":")
        uid, gid = int(uid_text), int(gid_text or uid_text)
    elif os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
    else:
        try:
            status = workspace.stat()
        except OSError:
            status = None
        if status is not None and status.st_uid != 0:
            uid, gid = status.st_uid, status.st_gid if status.st_gid != 0 else status.st_uid
        else:
            uid = gid = SANDBOX_UID_WHEN_HOST_IS_ROOT
    if uid == 0 or gid == 0:
        raise WorkspaceAccessError(
            f"the sandbox would run as {uid}:{gid}; it never runs as root: set the kernelspec "
            "`user` to a non-root uid:gid"
        )
    return uid, gid


def ensure_writable(workspace: Path, uid: int) -> bool:
    """Give ``uid`` write access to the ``workspace`` directory itself when it lacks it.

    Only when the host runs as root (otherwise the sandbox is the directory's user).
    Returns True when an ACL entry was added. Raises WorkspaceAccessError for system
    directories and file systems without ACLs, with what to do instead.
    """
    if os.geteuid() != 0 or _can_write(workspace, uid):
        return False
    resolved = workspace.resolve()
    if is_protected(resolved):
        raise WorkspaceAccessError(
            f"{resolved} is a system or home directory: the sandbox (uid {uid}) may read it but "
            "is not given write access; put the notebook in a project directory instead"
        )
    try:
        _add_user_entry(resolved, _ACCESS, uid)
        _add_user_entry(resolved, _DEFAULT, uid)
    except OSError as error:
        if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise WorkspaceAccessError(
                f"{resolved} is on a file system without POSIX ACLs, so the sandbox (uid {uid}) "
                f"cannot be given write access: `chown {uid} {resolved}`, or set the kernelspec "
                "`user` to the directory owner's uid:gid"
            ) from error
        raise
    log.info("workspace %s: ACL u:%d:rwx added so the sandbox can write there", resolved, uid)
    return True


def is_protected(directory: Path) -> bool:
    """System directories and root's home: never handed to the sandbox for writing."""
    resolved = directory.resolve()
    return str(resolved) in _PROTECTED or resolved == Path(pwd.getpwuid(0).pw_dir).resolve()


def _can_write(directory: Path, uid: int) -> bool:
    """Whether ``uid`` (not root, in no extra group) may create files in ``directory``."""
    status = directory.stat()
    if status.st_uid == uid:
        return bool(status.st_mode & 0o300 == 0o300)
    entries = _read(directory, _ACCESS)
    if entries:
        mask = next((perm for tag, perm, _ in entries if tag == _MASK), 7)
        for tag, perm, entry_id in entries:
            if tag == _USER and entry_id == uid:
                return perm & mask & 0o3 == 0o3
    return bool(status.st_mode & 0o003 == 0o003)


def _read(path: Path, name: str) -> list[tuple[int, int, int]]:
    try:
        raw = os.getxattr(path, name)
    except OSError as error:
        if error.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise
    if len(raw) < _HEADER.size or _HEADER.unpack_from(raw)[0] != _VERSION:
        return []
    body = raw[_HEADER.size :]
    return [_ENTRY.unpack_from(body, offset) for offset in range(0, len(body), _ENTRY.size)]


def _add_user_entry(directory: Path, name: str, uid: int) -> None:
    """Add (or widen to rwx) the named-user entry ``uid`` in one ACL of ``directory``."""
    entries = _read(directory, name)
    if not entries:
        mode = directory.stat().st_mode
        owner = 7 if name == _DEFAULT else (mode >> 6) & 7
        entries = [
            (_USER_OBJ, owner, _UNDEFINED_ID),
            (_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED_ID),
            (_OTHER, mode & 7, _UNDEFINED_ID),
        ]
    entries = [entry for entry in entries if not (entry[0] == _USER and entry[2] == uid)]
    entries = [entry for entry in entries if entry[0] != _MASK]
    entries.append((_USER, 7, uid))
    mask = 0
    for tag, perm, _ in entries:
        if tag in (_USER, _GROUP_OBJ, _GROUP):
            mask |= perm
    entries.append((_MASK, mask, _UNDEFINED_ID))
    entries.sort(key=lambda entry: (entry[0], entry[2]))
    payload = _HEADER.pack(_VERSION) + b"".join(_ENTRY.pack(*entry) for entry in entries)
    os.setxattr(directory, name, payload)


def share_with_sandbox(path: Path) -> None:
    """Hand a file or directory the host (as root) put into a sandbox workspace to the
    user the sandbox runs as there: the workspace's owner, or uid 1000 when root owns it
    (a workspace kernelagent created)."""
    if os.geteuid() != 0 or not path.exists():
        return
    directory = path if path.is_dir() else path.parent
    status = directory.stat()
    if status.st_uid == 0:
        uid = gid = SANDBOX_UID_WHEN_HOST_IS_ROOT
    else:
        uid, gid = status.st_uid, status.st_gid or status.st_uid
    os.chown(path, uid, gid)


def share_tree_with_sandbox_user(root: Path) -> None:
    """Hand a copied workspace (the directory and everything in it) to the sandbox's uid."""
    share_with_sandbox(root)
    for path in root.rglob("*"):
        if not path.is_symlink():
            share_with_sandbox(path)
