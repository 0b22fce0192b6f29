"""kb.files: writing a file whole or not at all, and the worker processes' start method."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from kb.files import atomic_write, fork_context, read_marshal, write_marshal


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "page.html"
    target.write_bytes(b"old")
    with atomic_write(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temporary file left behind


def test_atomic_write_never_overwrites_when_told(tmp_path):
    target = tmp_path / "x.yaml"
    with atomic_write(target, "w", encoding="utf-8", overwrite=False, exclusive=True, fsync=True) as fh:
        fh.write("id: x\n")
    with pytest.raises(FileExistsError):
        with atomic_write(target, "w", encoding="utf-8", overwrite=False, exclusive=True) as fh:
            fh.write("id: y\n")
    assert target.read_text(encoding="utf-8") == "id: x\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.yaml"]


def test_marshal_round_trip_and_fork_context(tmp_path):
    data = {"a.yaml": (1, 2, "sha", True)}
    write_marshal(tmp_path / "m.marshal", data)
    assert read_marshal(tmp_path / "m.marshal") == data
    expected = "fork" if "fork" in mp.get_all_start_methods() else mp.get_context().get_start_method()
    assert fork_context().get_start_method() == expected
