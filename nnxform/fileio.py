"""Reading and writing files safely: text inputs read with one-line errors, and the outputs of a command
checked before any work and written together at the end (temporary files in the targets' folders, then
renames), so an error never leaves some of them behind or overwrites an input."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Iterable, Optional, Union

from .errors import NnxformError

#: A path as the CLI and the library take it.
PathLike = Union[str, "os.PathLike[str]"]

#: The path that means standard output, for outputs that allow it (JSON reports).
STDOUT = "-"


def read_bytes(path: PathLike, what: str) -> bytes:
    """The content of the file ``path``, or an NnxformError saying in one line why it cannot be ``what``: missing,
    a folder, not a regular file (a device; a pipe is read), or unreadable."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise NnxformError(f"{p}: no such file") from None
    except OSError as exc:
        raise NnxformError(f"{p}: cannot be read ({exc.strerror or type(exc).__name__}); check its permissions") from None
    if stat.S_ISDIR(mode):
        raise NnxformError(f"{p}: is a directory, not {what}")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise NnxformError(f"{p}: is not a regular file; give the path of {what}")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise NnxformError(f"{p}: cannot be read ({exc.strerror or type(exc).__name__}); check its permissions") from None


def read_text(path: PathLike, what: str) -> str:
    """The UTF-8 text of the file ``path``, or an NnxformError saying in one line why it is not ``what``."""
    p = Path(path)
    data = read_bytes(p, what)
    try:
        text: Optional[str] = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        raise NnxformError(f"{p}: not a text file, so not {what}")
    return text


def file_sha256(path: PathLike) -> str:
    """The sha256 of a file's content (provenance records content, not where a file was)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name the same file: same resolved path, or the same inode (hard links, case folding)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


class Outputs:
    """The files one command writes, all or none.

    ``add_path`` checks each output before any work: distinct from every input and from the other outputs, not
    a folder nor any other non-regular file (a device, a pipe), in an existing folder that can be written. ``put`` keeps the content during the
    command; ``commit`` writes every file to a temporary beside its target, then renames them all, and on any
    failure removes the temporaries (and the files this commit had already created), so an error never leaves
    some outputs behind. Content put for ``-`` goes to stdout after the files.
    """

    def __init__(self, inputs: Iterable[Optional[PathLike]] = ()) -> None:
        self.inputs = [Path(p) for p in inputs if p is not None]
        self.paths: dict[str, tuple[Path, str]] = {}  # the path as given -> (path, the option that named it)
        self.content: dict[str, bytes] = {}

    def add_path(self, path: Optional[PathLike], option: str = "", stdout: bool = False) -> None:
        """Check the output ``path`` named by ``option`` (None: not asked for); ``-`` is stdout where ``stdout``."""
        if path is None:
            return
        given = os.fspath(path)
        where = f"{option} {given}".strip()
        if given == STDOUT:
            if not stdout:
                raise NnxformError(f"{where}: this output cannot go to stdout; give a file path")
            self.paths[given] = (Path(given), option)
            return
        p = Path(given)
        folder = p.parent
        if given.endswith(("/", os.sep)) or p.is_dir():
            raise NnxformError(f"{where}: is a folder; give a file path")
        if p.exists() and not stat.S_ISREG(p.stat().st_mode):
            raise NnxformError(f"{where}: exists and is not a regular file; give another path")
        if not folder.exists():
            raise NnxformError(f"{where}: folder {folder} does not exist; create it first")
        if not folder.is_dir():
            raise NnxformError(f"{where}: {folder} is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise NnxformError(f"{where}: cannot write in folder {folder} (no permission or a read-only file system)")
        for source in self.inputs:
            if _same(p, source):
                raise NnxformError(f"{where}: is the input file {source}; write the output to another path")
        for other, (q, other_option) in self.paths.items():
            if other != STDOUT and _same(p, q):
                raise NnxformError(f"{where}: {other_option} {other} names the same file; give each output its own")
        self.paths[given] = (p, option)

    def put(self, path: Optional[PathLike], data: Union[bytes, str]) -> None:
        """Keep ``data`` (text is written as UTF-8) for the output ``path`` checked by ``add_path`` (None: skipped)."""
        if path is None:
            return
        given = os.fspath(path)
        if given not in self.paths:
            raise ValueError(f"{given} was not checked with add_path")  # a bug in the command, not user input
        self.content[given] = data.encode() if isinstance(data, str) else data

    def commit(self) -> None:
        """Write every output put: all files, or none and an NnxformError saying which could not be written."""
        files = [(self.paths[given][0], data) for given, data in self.content.items() if given != STDOUT]
        temporaries: list[tuple[str, Path]] = []  # (temporary holding the new content, target)
        backups: dict[Path, str | None] = {}  # target -> a second name of its old content (None: it was new)
        replaced: list[Path] = []
        target = None
        try:
            for target, data in files:
                temporaries.append((_temporary(target, data), target))
            for tmp, target in temporaries:
                backups[target] = _backup(target) if target.exists() else None
                os.replace(tmp, target)
                replaced.append(target)
        except BaseException as exc:  # an I/O error or an interrupt: every target back as it was
            for path in reversed(replaced):
                if backups[path] is None:
                    path.unlink(missing_ok=True)
                else:
                    os.replace(backups.pop(path), path)
            for backup in backups.values():
                if backup is not None:
                    os.unlink(backup)
            if isinstance(exc, OSError):
                raise NnxformError(f"{target}: cannot be written ({exc.strerror}); check the folder's permissions "
                                   "and free space") from None
            raise
        finally:
            for tmp, _ in temporaries:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        for backup in backups.values():
            if backup is not None:
                os.unlink(backup)
        if STDOUT in self.content:
            sys.stdout.write(self.content[STDOUT].decode())
            sys.stdout.flush()


def _backup(target: Path) -> str:
    """A second name for ``target``'s current content beside it (a hard link, or a copy where links fail)."""
    backup = str(target.parent / f".{target.name}.{uuid.uuid4().hex}.old")
    try:
        os.link(target, backup)
    except OSError:
        shutil.copy2(target, backup)
    return backup


def _temporary(target: Path, data: bytes) -> str:
    """A new file holding ``data`` beside ``target`` (same folder, so the rename is atomic); its path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write one file so that readers see the old file or the whole new one, never a part (an ``Outputs`` of one)."""
    outputs = Outputs()
    outputs.add_path(path)
    outputs.put(path, data)
    outputs.commit()
