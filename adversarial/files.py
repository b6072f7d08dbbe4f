"""Files written whole or not at all: a reader, or a run killed while
writing, sees the old file or the new one, never part of one. The new file
is synced to disk before it takes the old one's name, and the rename itself
after, so that a machine that loses power keeps one of the two as well."""

from __future__ import annotations

import contextlib
import os


def _sync(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


@contextlib.contextmanager
def renamed_into_place(tmp: str, path: str):
  """Renames `tmp` to `path` once the block has written it and it is synced;
  if either fails, `tmp` is removed and `path` left as it was."""
  try:
    yield
    _sync(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  try:  # The rename: a folder cannot be opened for syncing everywhere.
    _sync(os.path.dirname(os.path.abspath(path)))
  except OSError:
    pass


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` under a temporary name, synced and renamed
  into place."""
  tmp = f"{path}.tmp"
  with renamed_into_place(tmp, path):
    with open(tmp, "w") as f:
      f.write(text)
