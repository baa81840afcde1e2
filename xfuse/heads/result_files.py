"""A run's result folder is complete only when every file is whole and readable; this module says which is not.

``xfuse train-heads`` writes a result into a temporary folder and renames it
into place, so a crash never leaves half a result. What it cannot prevent is
damage afterwards (a copy cut short, a disk that filled, a file removed by
hand): then ``metrics.json`` can still exist while ``predictions.npz`` is gone
or truncated. Sweeps and the report therefore ask this module, not the mere
presence of ``metrics.json``.

When a result is written, ``manifest.json`` records each file's size and
sha256 (the last file written, inside the temporary folder). Checking a
result then costs a ``stat`` per file (sizes; :func:`result_problems`), or a
read of every byte with ``checksums=True``. A result without a manifest (made
by an older xfuse) gets the full check instead: every JSON file parses, every
member of every ``.npz`` archive decompresses with its CRC intact and the
predictions hold their parts; :func:`seal_result` then records the manifest
such a result lacks, from the files as they are, without recomputing anything.

Usage::

    problems = result_problems(Path("results/dlfa-L7_12-s0"))   # [] when complete: [(file, what is wrong)]
    seal_result(Path("results/dlfa-L7_12-s0"))                   # an older result gets its manifest
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from xfuse.errors import XfuseError
from xfuse.features.hashing import file_sha256
from xfuse.features.store import atomic_write_text

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "xfuse-result-manifest/1"
REQUIRED_FILES = ("config.json", "curve.json", "metrics.json", "predictions.npz")  # standardizer.npz is optional


def write_manifest(folder: Path) -> Path:
    """Record the size and sha256 of every file of ``folder`` (but the manifest) in ``folder/manifest.json``."""
    folder = Path(folder)
    files = {path.name: {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
             for path in sorted(folder.iterdir()) if path.is_file() and path.name != MANIFEST}
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise XfuseError(f"{folder}: cannot record a manifest, {missing[0]} is missing")
    atomic_write_text(folder / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=2) + "\n")
    return folder / MANIFEST


def _full_check(path: Path) -> str:
    """What is wrong with one file, read whole ('' when nothing)."""
    if path.suffix == ".json":
        try:
            json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return f"not valid JSON ({type(error).__name__}: {str(error).splitlines()[0]})"
        return ""
    if path.suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as archive:
                broken = archive.testzip()  # decompresses every member, checking its CRC
                if broken is not None:
                    return f"member {broken} fails its CRC"
            with np.load(path) as arrays:
                names = arrays.files
                for name in names:
                    arrays[name]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            return f"not a valid .npz archive ({type(error).__name__})"
        if path.name == "predictions.npz" and not any(name.endswith("/logits") for name in names):
            return "holds no logits"
    return ""


def result_problems(folder: Path, checksums: bool = False) -> list:
    """``[(file, what is wrong)]`` of a result folder; empty when it is complete.

    With a manifest: every recorded file exists with its recorded size (and,
    with ``checksums``, its sha256), every required file is recorded,
    and shows its ends intact (:func:`_cheap_check`). Without one: the required
    files exist and read whole (:func:`_full_check`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [(folder.name, "no such result folder")]
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        problems = [(name, "missing") for name in REQUIRED_FILES if not (folder / name).is_file()]
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name in REQUIRED_FILES + ("standardizer.npz",):
                what = _full_check(path)
                if what:
                    problems.append((path.name, what))
        return problems
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        assert manifest["format"] == MANIFEST_FORMAT and isinstance(files, dict)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AssertionError):
        return [(MANIFEST, "not a readable manifest")]
    problems = [(name, "not recorded in the manifest") for name in REQUIRED_FILES if name not in files]
    for name, record in files.items():
        path = folder / name
        if not path.is_file():
            problems.append((name, "missing"))
        elif path.stat().st_size != record["bytes"]:
            problems.append((name, f"{path.stat().st_size} bytes, {record['bytes']} when written"))
        elif checksums and file_sha256(path) != record["sha256"]:
            problems.append((name, "sha256 differs from when it was written"))
        elif not checksums and (glance := _cheap_check(path)):
            problems.append((name, glance))
    return problems


def _cheap_check(path: Path) -> str:
    """What a glance at a file's ends shows wrong ('' when nothing): an archive's directory, a JSON's closing brace.

    Catches a file overwritten with other bytes of the same size, which the size alone does not."""
    if path.suffix == ".npz":
        try:
            with zipfile.ZipFile(path):  # reads the central directory at the end of the file, nothing else
                return ""
        except (zipfile.BadZipFile, OSError):
            return "not a valid .npz archive (no readable zip directory)"
    if path.suffix == ".json":
        with open(path, "rb") as handle:
            handle.seek(max(path.stat().st_size - 16, 0))
            if not handle.read().rstrip().endswith((b"}", b"]")):
                return "not valid JSON (does not end with its closing bracket)"
    return ""


def describe(folder: Path, problems: list) -> str:
    """One line: the folder, its first problem, how many more."""
    name, what = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{Path(folder) / name}: {what}{more}"


def seal_result(folder: Path) -> str:
    """Give a complete result without a manifest its manifest: ``sealed``, ``sealed already`` or ``damaged``."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return "sealed already"
    if result_problems(folder):
        return "damaged"
    write_manifest(folder)
    return "sealed"
