"""Files written whole or not at all: a reader, or a run killed while
writing, sees the old file or the new one, never part of one. The new file
is synced to disk before it takes the old one's name, and the rename itself
after, so that a machine that loses power keeps one of the two as well."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import tempfile
from typing import Callable, Iterable, Optional, TypeVar

from absl import logging
import numpy as np

T = TypeVar("T")


class RunRecordError(ValueError):
  """A file of a work directory (`config.json`, a checkpoint's record, the
  checkpoint it names, `clusters.npz`) cannot be read: the directory was
  damaged after training wrote it, since training replaces each file
  whole."""

  @classmethod
  def of(cls, path: str, why: str, expected: str) -> "RunRecordError":
    """The error for the file `path`, naming `why` it cannot be read and
    what training writes there (`expected`)."""
    return cls(f"{path} cannot be read ({why}): expected {expected}. "
               f"Restore the file, or train in a new work directory.")


def not_local(name: str, path: str) -> Optional[str]:
  """The error message for a folder `path` given as a URL (gs://, s3://,
  hdfs://...), else None. Such storage has no rename that replaces a file
  whole, and Python's file functions would take the URL for a local path
  beginning with a folder named 'gs:'."""
  scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", str(path))
  if not scheme:
    return None
  return (f"{name}={path!r} is not accepted: expected a folder of the "
          f"file system: files are written under a temporary name and "
          f"renamed into place, which {scheme.group(1)}:// storage does not "
          f"do in one step.")


def sync(path: str) -> None:
  """Writes a file's data through to the disk."""
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def sync_folder(path: str) -> None:
  """Writes a folder's entries (a rename in it) through to the disk, where
  the system allows a folder to be synced (POSIX does; others raise)."""
  try:
    sync(path)
  except OSError:
    pass


@contextlib.contextmanager
def renamed_into_place(tmp: str, path: str):
  """Renames `tmp` to `path` once the block has written it and it is synced;
  if either fails, `tmp` is removed and `path` left as it was."""
  try:
    yield
    sync(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  sync_folder(os.path.dirname(os.path.abspath(path)))


def sync_tree(path: str) -> None:
  """Syncs every file and folder under `path` (a folder about to be renamed
  into place whole, such as an exported SavedModel)."""
  for folder, _, names in os.walk(path):
    for name in names:
      sync(os.path.join(folder, name))
    sync_folder(folder)


def temporary_name(path: str) -> str:
  """The name a file for `path` is written under before it is renamed into
  place: this process's own, so that processes writing the same file do not
  meet (`path`.PID.tmp)."""
  return f"{path}.{os.getpid()}.tmp"


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` under its `temporary_name`, synced and renamed
  into place."""
  _write_atomic(path, "w", lambda f: f.write(text))


def write_bytes_atomic(path: str, data: bytes) -> None:
  """`write_text_atomic` for bytes."""
  _write_atomic(path, "wb", lambda f: f.write(data))


def _write_atomic(path: str, mode: str, write: Callable) -> None:
  """`write(f)` of the file `temporary_name(path)` opened in `mode`, synced
  and renamed into place."""
  tmp = temporary_name(path)
  with renamed_into_place(tmp, path):
    with open(tmp, mode) as f:
      write(f)


def write_text_new(paths: Iterable[str], text: str) -> str:
  """Writes `text` whole under the first of `paths` that no file holds,
  never replacing one, even one another process writes at that moment: the
  synced file is linked to its name, which fails where the name is taken.
  On a file system without hard links the name is created exclusively and
  written in place.

  Returns:
    The path written.
  """
  paths = iter(paths)
  first = next(paths)
  tmp = temporary_name(first)
  try:
    with open(tmp, "w") as f:
      f.write(text)
    sync(tmp)
    for path in itertools.chain([first], paths):
      if _take_name(tmp, path, text):
        sync_folder(os.path.dirname(os.path.abspath(path)))
        return path
    raise FileExistsError(f"every name offered for {first} is taken")
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _take_name(tmp: str, path: str, text: str) -> bool:
  """Gives `path` the synced file `tmp` holding `text`, unless a file holds
  that name: False then."""
  try:
    os.link(tmp, path)
  except FileExistsError:
    return False
  except OSError:  # No hard links here: the name is made exclusively.
    try:
      with open(path, "x") as f:
        f.write(text)
    except FileExistsError:
      return False
    sync(path)
  return True


def savez_atomic(path: str, **arrays) -> None:
  """`np.savez` of `arrays` under the `temporary_name` of `path`, synced
  and renamed into place."""
  _write_atomic(path, "wb", lambda f: np.savez(f, **arrays))


def arrays_digest(*arrays) -> str:
  """16 hex digits of a SHA-256 over each array's dtype, shape and bytes:
  the name under which a result computed from these arrays alone is kept."""
  digest = hashlib.sha256()
  for array in arrays:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.data)
  return digest.hexdigest()[:16]


def kept(path: str, read: Callable[[str], Optional[T]],
         compute: Callable[[], T], write: Callable[[str, T], None],
         what: str) -> T:
  """The result kept at `path`, or `compute()` kept there for next time.

  `read(path)` returns the kept result, or None when the file holds
  another; a file it cannot read, whatever it raises (a file cut short
  raises zipfile.BadZipFile in np.load, a foreign one ValueError or
  KeyError), is computed again, and a folder that cannot be written
  (read-only) leaves the result unkept. Either is logged, naming `what`
  the result is.

  Processes that need the same result at once compute it once: the first
  holds a lock (`_held`) while it computes and keeps the result, and the
  others wait, then read it.
  """
  seen = _stat(path)
  if seen is not None:
    result = _read_kept(path, read, what)
    if result is not None:
      return result
  with _held(path):
    if _stat(path) not in (None, seen):  # Kept by another process meanwhile.
      result = _read_kept(path, read, what)
      if result is not None:
        return result
    result = compute()
    try:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      write(path, result)
    except OSError as e:
      logging.warning("Could not keep the %s in %s: %s", what, path, e)
  return result


def _stat(path: str) -> Optional[tuple]:
  """What tells one file at `path` from another written there, or None."""
  try:
    st = os.stat(path)
  except OSError:
    return None
  return st.st_ino, st.st_mtime_ns, st.st_size


def _read_kept(path: str, read: Callable[[str], Optional[T]],
               what: str) -> Optional[T]:
  try:
    return read(path)
  except Exception as e:  # Whatever a bad file raises.
    logging.warning("Ignoring the unreadable %s %s: %s: %s", what, path,
                    type(e).__name__, e)
    return None


@contextlib.contextmanager
def _held(path: str):
  """An exclusive lock for the result at `path`, waited for: flock on a file
  named by a digest of the path, in the system's temporary folder (not
  beside the result, whose folder holds results only), let go when the
  process ends, however it ends. The file stays: removed, a process waiting
  on it and one making it anew would both hold a lock. None where the file
  cannot be made or the system has no flock."""
  name = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:32]
  folder = os.path.join(tempfile.gettempdir(), "adversarial-locks")
  try:
    import fcntl
    os.makedirs(folder, mode=0o777, exist_ok=True)
    fd = os.open(os.path.join(folder, f"{name}.lock"),
                 os.O_RDONLY | os.O_CREAT, 0o666)
  except (ImportError, OSError):
    yield
    return
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # No flock here (NFS): computed without it.
      pass
    yield
  finally:
    os.close(fd)
