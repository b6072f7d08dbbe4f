"""Files written whole or not at all: a reader, or a run killed while
writing, sees the old file or the new one, never part of one."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def renamed_into_place(tmp: str, path: str):
  """Renames `tmp` to `path` once the block has written it; if the block
  fails, `tmp` is removed and `path` left as it was."""
  try:
    yield
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` under a temporary name, synced and renamed
  into place."""
  tmp = f"{path}.tmp"
  with renamed_into_place(tmp, path):
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
