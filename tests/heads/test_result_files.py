"""A result is complete only when every file is whole: manifests, the cheap and the full check, sealing."""

import json

import numpy as np
import pytest

from xfuse.heads.result_files import MANIFEST, result_problems, seal_result, write_manifest


def fake_result(folder, manifest=True):
    folder.mkdir(parents=True)
    for name in ("config.json", "curve.json"):
        (folder / name).write_text(json.dumps({"a": 1}) + "\n")
    (folder / "metrics.json").write_text(json.dumps({"languages": {"en": list(range(200))}}, indent=2) + "\n")
    np.savez_compressed(folder / "predictions.npz", **{"test-en/logits": np.zeros((50, 2), np.float32),
                                                      "test-en/labels": np.zeros(50, np.int8)})
    if manifest:
        write_manifest(folder)
    return folder


def cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def garble(path):
    """Other bytes of the same size: the size check alone cannot see it."""
    path.write_bytes(bytes(len(path.read_bytes())))


@pytest.mark.parametrize("manifest", [True, False], ids=["with-manifest", "older-without"])
@pytest.mark.parametrize("damage, file, what", [
    (cut, "metrics.json", "bytes|not valid JSON"),
    (lambda path: path.unlink(), "predictions.npz", "missing"),
    (cut, "predictions.npz", "bytes|not a valid .npz"),
    (garble, "predictions.npz", "not a valid .npz"),
    (garble, "metrics.json", "not valid JSON"),
])
def test_each_kind_of_damage_is_found_and_named(tmp_path, manifest, damage, file, what):
    folder = fake_result(tmp_path / "r", manifest)
    assert result_problems(folder) == []
    damage(folder / file)
    problems = result_problems(folder)
    assert problems and problems[0][0] == file
    assert any(__import__("re").search(what, problem) for _, problem in problems)


def test_checksums_catch_what_the_glance_cannot(tmp_path):
    folder = fake_result(tmp_path / "r")
    data = bytearray((folder / "config.json").read_bytes())
    data[2] = ord("b")  # same size, still ends with its brace
    (folder / "config.json").write_bytes(bytes(data))
    assert result_problems(folder) == []
    assert result_problems(folder, checksums=True) == [("config.json", "sha256 differs from when it was written")]


def test_a_damaged_manifest_and_an_unrecorded_required_file_are_problems(tmp_path):
    folder = fake_result(tmp_path / "r")
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["files"]["curve.json"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert result_problems(folder) == [("curve.json", "not recorded in the manifest")]
    cut(folder / MANIFEST)
    assert result_problems(folder) == [(MANIFEST, "not a readable manifest")]


def test_sealing_records_a_manifest_for_a_whole_older_result_only(tmp_path):
    whole, damaged = fake_result(tmp_path / "a", manifest=False), fake_result(tmp_path / "b", manifest=False)
    cut(damaged / "predictions.npz")
    assert seal_result(whole) == "sealed" and (whole / MANIFEST).is_file()
    assert seal_result(whole) == "sealed already"
    assert seal_result(damaged) == "damaged" and not (damaged / MANIFEST).exists()
    recorded = json.loads((whole / MANIFEST).read_text())["files"]
    assert recorded["predictions.npz"]["bytes"] == (whole / "predictions.npz").stat().st_size
