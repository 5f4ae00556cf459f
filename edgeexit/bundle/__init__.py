"""Model bundles: a manifest plus one int8 .tflite per block and per exit head (docs/bundle-format.md)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Type

from edgeexit.bundle.data import Samples, read_samples
from edgeexit.bundle.fileio import Fail, read_json, replace_file
from edgeexit.bundle.manifest import (Manifest, SegmentSpec, check_structure, parse_manifest, read_manifest_json, verify_file,
                                      what_is_there)
from edgeexit.errors import BundleError, EdgeExitError, OutputError
from edgeexit.paths import demo_bundle_dir

CALIBRATION_FILE = "calibration.json"
#: calibration.json key: {policy: why it could not be fitted and what to do}, for policies left out.
NOT_CALIBRATED = "not_calibrated"


@dataclass
class Bundle:
    """A validated bundle on disk."""

    root: Path
    manifest: Manifest
    segment_paths: Dict[str, Path]  # "block0" / "exit3" -> verified file
    calibration: Dict[str, Any] = field(default_factory=dict)
    #: False where load_bundle(..., calibration=False) left calibration.json unread
    calibration_read: bool = True
    #: set once a Runtime has warned about far-apart requantized boundaries: one warning per loaded bundle
    requant_warned: bool = field(default=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def blocks(self) -> List[SegmentSpec]:
        return self.manifest.blocks

    @property
    def exits(self) -> List[SegmentSpec]:
        return self.manifest.exits

    def split(self, name: str) -> Samples:
        """The bundle's own held-out split ('calibration' or 'evaluation'), checked like any input."""
        spec = self.manifest.splits.get(name)
        if spec is None:
            raise BundleError("bundle {} has no '{}' split; re-export it with tools/export.py".format(self.root, name))
        path = verify_file(self.root, spec.file, spec.sha256, "{} split".format(name))
        samples = read_samples(path, self.manifest.input, self.manifest.num_classes)
        if len(samples) != spec.n:
            # The sha256 matches, so the file was swapped on purpose and the manifest not updated with it.
            raise BundleError("bundle {}: the {} split {} holds {:,} samples but manifest.json says n = {:,}; set "
                              "splits.{}.n to {} or re-export the bundle".format(
                                  self.root, name, spec.file, len(samples), spec.n, name, len(samples)))
        return samples

    def save_calibration(self) -> Path:
        """Write calibration.json atomically (a symlink is written through to its target; a directory, device or
        FIFO in its place is refused): a crash never leaves half a calibration."""
        path = self.root / CALIBRATION_FILE
        text = json.dumps(self.calibration, indent=2, sort_keys=True) + "\n"
        replace_file(path, text, calibration_write_failed(path))
        return path


def manifest_sha256(bundle: Bundle) -> str:
    """What ties a profile to its bundle: the sha256 of its manifest.json."""
    return hashlib.sha256((bundle.root / "manifest.json").read_bytes()).hexdigest()


def model_sha256(manifest: Manifest) -> str:
    """What ties calibration.json to its bundle: one sha256 over the sha256s of every segment, in order, and the
    input's preprocessing and quantization (they change every activation). The thresholds and forecasters read
    those segments' outputs; a new name, labels, split or raw dtype leave them valid."""
    inp = manifest.input
    parts = [seg.sha256 for seg in manifest.blocks + manifest.exits]
    parts.append(repr((inp.preprocess_scale, inp.preprocess_offset, inp.scale, inp.zero_point)))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def calibration_write_failed(path: Path) -> Fail:
    """The error for a calibration.json that cannot be written: the fix is a writable copy of the bundle."""
    return lambda why: OutputError("cannot write the calibration to {} ({}); remove what is there, or pass --model DIR "
                                   "(a copy of the bundle) somewhere writable".format(path, why))


def check_bundle(obj: Any, who: str, error: Type[EdgeExitError]) -> None:
    """``obj`` is a loaded Bundle, else ``error`` naming ``who`` and the fix: a path or a name would fail deep inside
    with an AttributeError."""
    if not isinstance(obj, Bundle):
        raise error("{} needs a loaded Bundle, not a {}; load one with edgeexit.bundle.load_bundle(path) (no path: the "
                    "demo)".format(who, type(obj).__name__))


def load_bundle(path: Optional[Path] = None, calibration: bool = True) -> Bundle:
    """Load and validate a bundle (default: the bundled demo). Raises :class:`BundleError` with one line.

    ``calibration=False`` leaves calibration.json unread: `calibrate` replaces it, `bench` fits its own, and
    `profile` and the `full` and `oracle` policies need none."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise BundleError("load_bundle takes a bundle's directory (a str or Path), not a {}; no path loads the "
                          "demo".format(type(path).__name__))
    root = Path(path) if path is not None else demo_bundle_dir()
    manifest = parse_manifest(read_manifest_json(root))
    check_structure(manifest)
    paths = {}
    for seg in manifest.blocks + manifest.exits:
        paths[seg.label] = verify_file(root, seg.file, seg.sha256, seg.label, tflite=True)
    cal = _read_calibration(root, manifest) if calibration else {}
    return Bundle(root=root, manifest=manifest, segment_paths=paths, calibration=cal, calibration_read=calibration)


def _read_calibration(root: Path, manifest: Manifest) -> Dict[str, Any]:
    """calibration.json, checked to be a JSON object fitted to this model; {} where there is none."""
    cal_path = root / CALIBRATION_FILE
    redo = "run `edgeexit calibrate --model {}`".format(root)
    there = what_is_there(cal_path)
    if there == "missing":  # a dangling link too: not calibrated yet
        return {}
    if there is not None:
        raise BundleError("{} is {}, not a calibration; remove it and {}".format(cal_path, there, redo))
    calibration = read_json(cal_path, lambda why: BundleError(
        "{} is not valid JSON ({}); delete it and {}".format(cal_path, why, redo)))
    if not isinstance(calibration, dict):
        raise BundleError("{} must hold a JSON object; delete it and {}".format(cal_path, redo))
    meta = calibration.get("meta")
    made_for = meta.get("model_sha256") if isinstance(meta, dict) else None
    # Older calibrations carry no such hash and are taken as they are.
    if made_for is not None and made_for != model_sha256(manifest):
        raise BundleError("{} was fitted to other segments or input preprocessing (another bundle's, or this one's "
                          "before a re-export or a manifest edit); {}".format(cal_path, redo))
    return calibration


__all__ = ["Bundle", "CALIBRATION_FILE", "NOT_CALIBRATED", "Samples", "load_bundle", "manifest_sha256", "model_sha256",
           "read_samples", "SegmentSpec"]
