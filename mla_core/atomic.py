"""Writing a file so that a reader sees the old file or the new one, never half of one.

    write_atomically(path, lambda tmp: save_file(tensors, str(tmp)))
    write_text_atomically(path, text)
    write_npz_atomically(path, {"pattern": pattern})

The new content goes to a temporary file in the target's own folder (so the final rename
stays on one file system and is atomic), which is then renamed over the target; if writing
fails, the temporary file is removed and the target is left as it was. The file gets the
usual permissions (0666 less the umask, as `open` would give), not mkstemp's owner-only 0600.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary file beside `target`, then rename it into place."""
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def copy_atomically(source: Path, target: Path) -> None:
    """A copy of `source` at `target`, written atomically."""
    write_atomically(target, lambda tmp: shutil.copyfile(source, tmp))


def write_text_atomically(target: Path, text: str) -> None:
    """`text` as UTF-8, written atomically."""
    write_atomically(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_npz_atomically(target: Path, arrays: dict) -> None:
    """`np.savez` of `arrays`, written atomically."""
    import numpy as np

    def savez(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a bare path
            np.savez(f, **arrays)

    write_atomically(target, savez)


def check_output_file(path: str | Path, flag: str, parents_made: bool = False) -> Path:
    """A file the user asked to write: not a folder, in a folder that exists (or, when the
    command makes it, `parents_made`, can be made) and can be written. Checked before any
    work, so a bad --out fails at once, in one line."""
    from mla_core.errors import UserError

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a folder; give a file name")
    check_output_folder(path.parent, flag, must_exist=not parents_made)
    return path


def check_output_folder(path: str | Path, flag: str, must_exist: bool = False) -> Path:
    """A folder the user asked to write into: a folder (not a file) whose nearest existing
    ancestor can be written (it is made later), or which exists when `must_exist`."""
    from mla_core.errors import UserError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a file, not a folder")
    if must_exist and not path.is_dir():
        raise UserError(f"{flag}: the folder {str(path)!r} does not exist")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag}: cannot write into {str(existing)!r}")
    return path
