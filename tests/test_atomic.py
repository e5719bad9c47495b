"""mla_core.atomic: a file is replaced whole or not at all, and no temporary file is left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mla_core.atomic import (
    copy_atomically,
    write_atomically,
    write_npz_atomically,
    write_text_atomically,
)


def test_text_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    write_text_atomically(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]


def test_npz_lands_under_the_exact_name(tmp_path: Path) -> None:
    target = tmp_path / "head.npz"
    write_npz_atomically(target, {"pattern": np.eye(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.npz"]  # no "....tmp.npz"
    with np.load(target) as data:
        assert np.array_equal(data["pattern"], np.eye(3))


def test_files_get_the_usual_permissions_not_owner_only(tmp_path: Path) -> None:
    """mkstemp makes 0600 files; an atomically written file reads like one `open` made."""
    import os

    old = os.umask(0o022)
    try:
        write_text_atomically(tmp_path / "a.json", "{}")
        copy_atomically(tmp_path / "a.json", tmp_path / "b.json")
    finally:
        os.umask(old)
    for name in ("a.json", "b.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").read_text() == "{}"
