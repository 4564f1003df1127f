"""The one exception type that crosses the backend boundary with a message meant for people."""


class LabError(Exception):
    """A user-facing error. Its message is one clear line: what went wrong and what to do instead."""


def describe_os_error(err: BaseException) -> str | None:
    """A clear line for the disk errors people meet (full, read-only, not allowed); None for anything else."""
    import errno
    import sqlite3

    if isinstance(err, sqlite3.OperationalError):
        text = str(err).lower()
        if any(k in text for k in ("disk i/o error", "disk is full", "readonly database", "unable to open")):
            return (f"the run store's database cannot be written ({err}): disk full or folder read-only? "
                    f"Free some space or choose another --store")
        return None
    if not isinstance(err, OSError):
        return None
    where = err.filename or "a file"
    if err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"no space left to write {where}: free some disk space or choose another --store"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {where}: the folder is read-only or not yours; choose another --store"
    return None


_FAILPOINT_HITS: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Fault-injection hook for the crash tests: with ``COMPRESSION_LAB_FAILPOINT=name`` (or ``name:N``, the N-th
    time it is reached) the process SIGKILLs itself right here (no cleanup, no finally), proving a build killed at
    that point leaves the store consistent and resumable. Without the variable it does nothing."""
    import os

    wanted = os.environ.get("COMPRESSION_LAB_FAILPOINT")
    if not wanted or wanted.split(":")[0] != name:
        return
    _FAILPOINT_HITS[name] = _FAILPOINT_HITS.get(name, 0) + 1
    if _FAILPOINT_HITS[name] == int(wanted.partition(":")[2] or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
