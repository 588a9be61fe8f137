"""The clean-shutdown marker decides whether the local table store survives a restart (exactly once)."""

from __future__ import annotations

from pathlib import Path

from stream.worker.state_dir import MARKER, LocalState


def _store(tmp_path: Path) -> Path:
    tables = tmp_path / "v1" / "tables"
    (tables / "user_windows-0.db").mkdir(parents=True)
    return tables


def test_a_store_without_the_marker_is_wiped_so_the_changelog_restores_it(tmp_path: Path) -> None:
    tables = _store(tmp_path)
    assert LocalState(tables).open() is False
    assert not tables.exists()


def test_a_cleanly_closed_store_is_kept_once_and_must_be_closed_cleanly_again(tmp_path: Path) -> None:
    tables = _store(tmp_path)
    state = LocalState(tables)
    state.close(clean=True)
    assert (tmp_path / "v1" / MARKER).exists()
    assert state.open() is True and tables.exists()
    assert not (tmp_path / "v1" / MARKER).exists()  # a crash from now on leaves no marker
    state.close(clean=False)
    assert state.open() is False and not tables.exists()
