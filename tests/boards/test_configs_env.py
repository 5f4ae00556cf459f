"""EDGEEXIT_BOARD_CONFIGS set to a missing, non-directory or empty path is one error naming the variable,
not an empty board list and an exit status of 0."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeexit.boards.config import board_names, load_board
from edgeexit.errors import BoardConfigError
from edgeexit.paths import board_configs_dir
from tests.cli.helpers import assert_one_line_error, edgeexit


def _bad_dirs(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README").write_text("no configs here\n")
    not_dir = tmp_path / "file.toml"
    not_dir.write_text("")
    return [tmp_path / "missing", empty, not_dir]


def test_a_wrong_directory_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for d in _bad_dirs(tmp_path):
        monkeypatch.setenv("EDGEEXIT_BOARD_CONFIGS", str(d))
        with pytest.raises(BoardConfigError, match="EDGEEXIT_BOARD_CONFIGS={}".format(d)):
            board_names()
        with pytest.raises(BoardConfigError, match="EDGEEXIT_BOARD_CONFIGS={}".format(d)):
            load_board("jetson-nano")
    monkeypatch.setenv("EDGEEXIT_BOARD_CONFIGS", "")  # empty: unset, the shipped configs
    assert "jetson-nano" in board_names()


def test_an_own_directory_works_and_unknown_boards_say_where_they_were_looked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(str(board_configs_dir() / "jetson-nano.toml"), str(own / "jetson-nano.toml"))
    monkeypatch.setenv("EDGEEXIT_BOARD_CONFIGS", str(own))
    assert board_names() == ["jetson-nano"] and load_board("jetson-nano").name == "jetson-nano"
    with pytest.raises(BoardConfigError, match="known boards in EDGEEXIT_BOARD_CONFIGS={}: jetson-nano".format(own)):
        load_board("raspberry-pi-5")


def test_cli_boards_and_run_refuse_a_wrong_directory(tmp_path: Path) -> None:
    for d in _bad_dirs(tmp_path):
        env = {"EDGEEXIT_BOARD_CONFIGS": str(d)}
        assert_one_line_error(edgeexit("boards", env=env), "EDGEEXIT_BOARD_CONFIGS={}".format(d))
        assert_one_line_error(edgeexit("run", "--board", "jetson-nano", "--simulate", "--limit", "2", env=env),
                              "EDGEEXIT_BOARD_CONFIGS={}".format(d))


def test_a_wrong_firmware_profiles_directory_is_named(tmp_path: Path) -> None:
    # Audit defect: the line said "add it" about a file in a directory the variable had mistyped.
    p = edgeexit("run", "--board", "jetson-nano", "--simulate", "--limit", "1",
                 env={"EDGEEXIT_FIRMWARE_PROFILES": str(tmp_path / "missing")})
    assert_one_line_error(p, "EDGEEXIT_FIRMWARE_PROFILES (now {})".format(tmp_path / "missing"), "unset it")


def test_hidden_files_and_directories_in_the_directory_are_not_boards(tmp_path: Path) -> None:
    """An emacs lock link `.#jetson-nano.toml` (dangling by design) or a directory `x.toml` broke `edgeexit boards`
    and `--board auto` with "unknown board '.#jetson-nano'"."""
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(str(board_configs_dir() / "jetson-nano.toml"), str(own / "jetson-nano.toml"))
    (own / ".#jetson-nano.toml").symlink_to("user@host.1234:1700000000")
    (own / ".jetson-nano.toml.swp.toml").write_text("not toml [")
    (own / "x.toml").mkdir()
    assert board_names(own) == ["jetson-nano"]
    with pytest.raises(BoardConfigError, match="unknown board '.#jetson-nano'"):
        load_board(".#jetson-nano", own)
    p = edgeexit("boards", "--json", env={"EDGEEXIT_BOARD_CONFIGS": str(own)})
    assert p.returncode == 0, p.stderr
    only_hidden = tmp_path / "hidden"
    only_hidden.mkdir()
    (only_hidden / ".#jetson-nano.toml").symlink_to("user@host.1234:1700000000")
    assert_one_line_error(edgeexit("boards", env={"EDGEEXIT_BOARD_CONFIGS": str(only_hidden)}),
                          "holds no board config")


@pytest.mark.parametrize("kind", ["directory", "fifo", "dangling", "loop", "device"])
@pytest.mark.parametrize("which", ["board_configs", "firmware_profiles"])
def test_a_config_that_is_no_regular_file_is_named_as_such(tmp_path: Path, kind: str, which: str) -> None:
    """A jetson-nano.toml that is a directory, a FIFO or a bad link read as "unknown board" or "does not exist",
    which sends the user looking for a file that is there."""
    import os

    from edgeexit.paths import firmware_profiles_dir

    src = board_configs_dir() if which == "board_configs" else firmware_profiles_dir()
    own = tmp_path / which
    shutil.copytree(str(src), str(own))
    target = own / "jetson-nano.toml"
    target.unlink()
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(str(target))
    elif kind == "dangling":
        target.symlink_to(tmp_path / "gone.toml")
    elif kind == "loop":
        target.symlink_to(target)
    else:
        target.symlink_to("/dev/null")
    what = {"directory": "a directory", "fifo": "a FIFO", "dangling": "a symbolic link that leads nowhere",
            "loop": "a symbolic link loop", "device": "a device"}[kind]
    env = {"EDGEEXIT_BOARD_CONFIGS" if which == "board_configs" else "EDGEEXIT_FIRMWARE_PROFILES": str(own)}
    p = edgeexit("run", "--board", "jetson-nano", "--simulate", "--limit", "1", env=env, timeout=60)
    assert_one_line_error(p, "{} is {}, not a TOML file".format(target, what))
