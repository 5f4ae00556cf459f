"""Board configs, firmware profiles and manifest.json under arbitrary and mutated input: only the
documented one-line errors (BoardConfigError, BundleError), never another exception."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeexit.boards.config import board_configs_dir, load_board, parse_board
from edgeexit.boards.profile import parse_profile
from edgeexit.boards.tomlload import load_toml
from edgeexit.bundle import load_bundle
from edgeexit.bundle.manifest import check_structure, parse_manifest
from edgeexit.errors import BoardConfigError, BundleError
from edgeexit.paths import demo_bundle_dir, firmware_profiles_dir
from tests.fuzz.strategies import FUZZ, json_values, mutated, perturbed

NANO = load_toml(board_configs_dir() / "jetson-nano.toml")
ORIN = load_toml(board_configs_dir() / "jetson-orin-nano.toml")
NANO_PROFILE = load_toml(firmware_profiles_dir() / "jetson-nano.toml")
MANIFEST = json.loads((demo_bundle_dir() / "manifest.json").read_text())


def _board(data: Any, name: str = "jetson-nano") -> None:
    try:
        parse_board(data, Path("/configs/{}.toml".format(name)))
    except BoardConfigError as err:
        assert "\n" not in str(err) and str(err)


@FUZZ
@given(json_values)
def test_board_config_arbitrary(data: Any) -> None:
    _board(data)


@FUZZ
@given(st.one_of(mutated(NANO), mutated(ORIN)))
def test_board_config_mutated(data: Any) -> None:
    _board(data, data.get("name", "x") if isinstance(data, dict) and isinstance(data.get("name"), str) else "x")


@FUZZ
@given(st.binary(max_size=300))
def test_toml_bytes(tmp_path_factory: Any, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("toml") / "jetson-nano.toml"
    path.write_bytes(raw)
    try:
        _board(load_toml(path))
    except BoardConfigError:
        pass


@FUZZ
@given(mutated(NANO_PROFILE))
def test_profile_mutated(data: Any) -> None:
    try:
        parse_profile(data, Path("/profiles/jetson-nano.toml"), load_board("jetson-nano"))
    except BoardConfigError as err:
        assert "\n" not in str(err)


@pytest.mark.parametrize("path", ["/sys/x", "../sys", "sys/../../x", "sys/a/../../..", "", "sys/\x00x", "sys/a\nb"])
def test_board_paths_cannot_leave_the_root(path: str) -> None:
    data = json.loads(json.dumps(NANO))
    data["gpu"]["devfreq_paths"] = [path]
    with pytest.raises(BoardConfigError, match="relative to the sysfs root"):
        parse_board(data, Path("/configs/jetson-nano.toml"))


@FUZZ
@given(st.one_of(json_values, mutated(MANIFEST), perturbed(MANIFEST, ("scale", "zero_point", "raw_dtype", "dtype"))))
def test_manifest(data: Any) -> None:
    try:
        check_structure(parse_manifest(data))
    except BundleError as err:
        assert "\n" not in str(err)


@pytest.mark.parametrize("file", ["../block0.tflite", "/etc/passwd", "sub/../../x", "link/block0.tflite"])
def test_manifest_paths_cannot_leave_the_bundle(tmp_path: Path, file: str) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(str(demo_bundle_dir()), str(bundle))
    (bundle / "link").symlink_to(tmp_path)  # a symlink out of the bundle
    shutil.copy(str(bundle / "block0.tflite"), str(tmp_path / "block0.tflite"))
    data = json.loads((bundle / "manifest.json").read_text())
    data["blocks"][0]["file"] = file
    (bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="is absolute; use a path relative" if file.startswith("/")
                       else "escapes the bundle directory"):
        load_bundle(bundle)
