"""Files that several processes append to: the file sink's output, the dead-letter file, an overflow file.

Every writer holds an exclusive advisory lock (flock) on the file from before it notes the file's size until
after its write is fsynced or cut back. Without it, a writer whose write failed would cut the file back to a size
it read before another child appended and fsynced its own lines, erasing them.

`consumer redrive` moves the dead-letter file aside under the same lock (see `take_aside`), so a writer that
opened the file just before it moved finds, once it holds the lock, that the path names another file now, and
opens the path again: nothing is appended to a file that redrive has already read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from consumer.errors import PermanentDeliveryError, TransientDeliveryError

DEAD_LETTER_MODE = 0o600  # entries hold whole records, which may hold personal data


@contextlib.contextmanager
def locked(path: Path, mode: int, *, create: bool = True) -> Iterator[int]:
    """A descriptor open for appending to the file now at `path`, with the file's exclusive lock held.

    Raises OSError as os.open does (FileNotFoundError when `create` is false and there is no file).
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    while True:
        fd = os.open(path, flags, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _still_at(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # moved aside or replaced while this process waited for the lock: open the path again
    try:
        yield fd
    finally:
        os.close(fd)  # releases the lock


def append(fd: int, data: bytes) -> None:
    """Write `data` at the end and fsync it, or leave the file as it was and raise OSError.

    The caller holds the lock (`locked`): no other writer can append between the size noted here and the cut.
    """
    end = os.fstat(fd).st_size
    try:
        written = os.write(fd, data)
        if written != len(data):
            # A regular file takes part of a write only when it cannot take more (disk full, file size limit).
            raise OSError(errno.ENOSPC, "short write")  # noqa: TRY301 - cut back just below, like any write error
        os.fsync(fd)
    except OSError:
        # A torn last line would glue itself to the next writer's first line.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, end)
        raise


def append_delivered(path: Path, data: bytes, mode: int, *, name: str, refused: tuple[type[OSError], ...]) -> None:
    """Append `data` whole and fsynced under the file's lock, for a sink or a destination: what the file sink and
    the dead-letter file share.

    Raises PermanentDeliveryError when opening the file fails for one of `refused` (a fix is needed: a missing
    directory, a permission), TransientDeliveryError for any other failure (the file is left as it was). `name`
    says which file in the error's message.
    """
    try:
        with locked(path, mode) as fd:
            try:
                append(fd, data)
            except OSError as error:
                raise TransientDeliveryError(f"cannot write {name}: {error.strerror}") from error
    except refused as error:
        raise PermanentDeliveryError(f"cannot open {name}: {error.strerror}") from error
    except OSError as error:
        raise TransientDeliveryError(f"cannot open {name}: {error.strerror}") from error


def append_locked(path: Path, data: bytes, mode: int) -> None:
    with locked(path, mode) as fd:
        append(fd, data)


def take_aside(path: Path, aside: Path) -> int | None:
    """Move the file at `path` to `aside` and leave an empty file with the same mode and owner at `path`.

    Returns a descriptor of the moved file that still holds its lock (so no other redrive takes it for a leftover
    until the caller closes it), or None when there is no file at `path`.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _still_at(fd, path):
                path.rename(aside)
                _fresh(path, os.fstat(fd))
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """A descriptor holding `path`'s exclusive lock, or None when another process holds it or there is no file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    if not _still_at(fd, path):
        os.close(fd)
        return None
    return fd


def remove_lines(path: Path, unwanted: Callable[[bytes], bool]) -> int:
    """Drop the lines (without their newline) that `unwanted` picks, atomically and under the lock: writers wait,
    then find the path names the new file and open it again. Returns how many lines were dropped."""
    with locked(path, DEAD_LETTER_MODE, create=False) as fd:
        lines = path.read_bytes().splitlines(keepends=True)
        kept = [line for line in lines if not unwanted(line.rstrip(b"\n"))]
        if len(kept) == len(lines):
            return 0
        temporary = path.with_name(f".{path.name}.{os.getpid()}.rewrite")
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _copy_owner_and_mode(out, os.fstat(fd))
            data = memoryview(b"".join(kept))
            while data:
                data = data[os.write(out, data) :]
            os.fsync(out)
        except BaseException:
            os.close(out)
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        os.close(out)
        temporary.replace(path)
        return len(lines) - len(kept)


def _fresh(path: Path, status: os.stat_result) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return  # a writer created it first, with the writers' own mode
    try:
        _copy_owner_and_mode(fd, status)
    finally:
        os.close(fd)


def _copy_owner_and_mode(fd: int, status: os.stat_result) -> None:
    with contextlib.suppress(PermissionError):
        os.fchown(fd, status.st_uid, status.st_gid)
    os.fchmod(fd, status.st_mode & 0o7777)


def _still_at(fd: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)
