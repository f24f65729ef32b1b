"""As root, the local stack's PostgreSQL data lives outside the var folder; data whose var
folder (and Kafka log) was deleted must not come back as if nothing happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local import stack


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    var, home = tmp_path / "var", tmp_path / "pg-home"
    monkeypatch.setattr(stack, "VAR", var)
    monkeypatch.setattr(stack, "KAFKA_DIR", var / "kafka")
    return var, home


def with_data(home: Path) -> Path:
    (home / "data").mkdir(parents=True)
    (home / "data" / "PG_VERSION").write_text("16\n")
    return home


def test_data_of_a_deleted_var_folder_is_removed(folders: tuple[Path, Path]) -> None:
    var, home = folders
    stack.forget_orphaned_postgres(home)  # the first start: both get one id
    with_data(home)
    assert (var / stack.STACK_ID_FILE).read_text() == (home / stack.STACK_ID_FILE).read_text()

    stack.forget_orphaned_postgres(home)  # a restart keeps the data
    assert (home / "data" / "PG_VERSION").exists()

    for item in sorted(var.rglob("*"), reverse=True):  # rm -rf var
        item.unlink() if item.is_file() else item.rmdir()
    var.rmdir()
    stack.forget_orphaned_postgres(home)
    assert not (home / "data").exists()
    assert (var / stack.STACK_ID_FILE).read_text() == (home / stack.STACK_ID_FILE).read_text()


def test_data_from_before_stack_ids_is_kept_while_its_kafka_log_is_there(folders: tuple[Path, Path]) -> None:
    var, home = folders
    (var / "kafka").mkdir(parents=True)
    with_data(home)
    stack.forget_orphaned_postgres(home)
    assert (home / "data" / "PG_VERSION").exists()
    assert (var / stack.STACK_ID_FILE).read_text() == (home / stack.STACK_ID_FILE).read_text()


def test_data_from_before_stack_ids_without_a_kafka_log_is_removed(folders: tuple[Path, Path]) -> None:
    _, home = folders
    with_data(home)
    stack.forget_orphaned_postgres(home)
    assert not (home / "data").exists()
