"""Stage 1 on a tiny encoder built from a config: exact features, content addressing, resumption after SIGKILL."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from conftest import REPO
from tiny import write_subset
from xfuse.errors import XfuseError
from xfuse.features.extract import ExtractConfig, extract
from xfuse.features.store import FeatureStore


def tiny_config(tiny_encoder, data_dir, tmp_path, **changes) -> ExtractConfig:
    settings = dict(encoder=str(tiny_encoder), data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"),
                    device="cpu", dtype="float32", batch_size=4, shard_size=8, max_length=64)
    return ExtractConfig(**(settings | changes))


def test_stored_features_equal_a_forward_pass_of_each_pair_alone(tiny_encoder, mini_pawsx, tmp_path):
    report = extract(tiny_config(tiny_encoder, mini_pawsx, tmp_path, split="test", languages=("de",), prefix="q: "),
                     progress=False, log=lambda line: None)
    model = AutoModel.from_pretrained(tiny_encoder, add_pooling_layer=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    rows = [line.split("\t") for line in (mini_pawsx / "de" / "test_2k.tsv").read_text().splitlines()[1:]]
    rows = [row for row in rows if "NS" not in row[1:3] and row[3] in ("0", "1")]
    with FeatureStore(report.store_dir).part("test", "de") as part:
        assert part.ids == [row[0] for row in rows]
        assert part.labels.tolist() == [int(row[3]) for row in rows]
        assert part.layers == (0, 1, 2)
        for index, (_, first, second, _) in enumerate(rows):
            encoded = tokenizer("q: " + first, "q: " + second, truncation="longest_first", max_length=64, return_token_type_ids=True,
                                return_tensors="pt")
            with torch.no_grad():
                expected = model(**encoded, output_hidden_states=True).hidden_states
            types = encoded["token_type_ids"][0].tolist()
            assert part.second_start[index] == types.index(1)
            assert part.lengths[index] == len(types)
            for layer in (0, 1, 2):
                stored = part.read_tokens(layer, index, index + 1)
                np.testing.assert_allclose(stored, expected[layer][0].numpy(), atol=2e-5, rtol=1e-4)


def test_file_records_what_made_it(tiny_encoder, mini_pawsx, tmp_path):
    report = extract(tiny_config(tiny_encoder, mini_pawsx, tmp_path, split="dev", languages=("ja",), dtype="float16"),
                     progress=False, log=lambda line: None)
    (part_report,) = report.parts
    with h5py.File(part_report.path) as handle:
        attrs = dict(handle.attrs)
        assert attrs["complete"] and attrs["dtype"] == "float16" and attrs["max_length"] == 64
        assert attrs["split"] == "dev" and attrs["lang"] == "ja" and attrs["prefix"] == ""
        assert attrs["dropped_not_translated"] == part_report.dropped_not_translated
        assert attrs["encoder_revision"].startswith("sha256:") and attrs["xfuse_version"]
        assert handle["layers/2"].dtype == np.float16 and handle["layers/2"].shape[1] == 32
        assert handle["layers/2"].is_virtual
        assert handle["pairs/lang"][0] == b"ja" and handle["pairs/split"][0] == b"dev"
        assert handle["pairs/offset"][-1] == handle["layers/0"].shape[0] == handle["tokens/input_ids"].shape[0]


def test_same_extraction_again_does_nothing_and_says_so(tiny_encoder, mini_pawsx, tmp_path):
    config = tiny_config(tiny_encoder, mini_pawsx, tmp_path, split="test", languages=("en", "de"))
    first = extract(config, progress=False, log=lambda line: None)
    before = {part.path: part.path.stat().st_mtime_ns for part in first.parts}
    lines = []
    second = extract(config, progress=False, log=lines.append)
    assert second.store_dir == first.store_dir
    assert all(part.status == "cached" and part.computed_pairs == 0 for part in second.parts)
    assert all("already extracted, nothing to do" in line for line in lines) and len(lines) == 2
    assert before == {part.path: part.path.stat().st_mtime_ns for part in second.parts}


def test_other_max_length_or_layers_never_reuse_a_store(tiny_encoder, mini_pawsx, tmp_path):
    base = tiny_config(tiny_encoder, mini_pawsx, tmp_path, split="dev", languages=("en",))
    stores = {extract(config, progress=False, log=lambda line: None).store_dir
              for config in (base, ExtractConfig(**(vars(base) | {"max_length": 32})),
                             ExtractConfig(**(vars(base) | {"layers": "-1"})))}
    assert len(stores) == 3


def test_store_of_other_settings_is_refused(tiny_encoder, mini_pawsx, tmp_path):
    base = tiny_config(tiny_encoder, mini_pawsx, tmp_path, split="dev", languages=("en",), out=str(tmp_path / "store"))
    extract(base, progress=False, log=lambda line: None)
    with pytest.raises(XfuseError, match=r"store holds features made with other settings: .*max_length 64 \(asked: 32\)"):
        extract(ExtractConfig(**(vars(base) | {"max_length": 32})), progress=False, log=lambda line: None)


def test_only_the_asked_layers_are_stored(tiny_encoder, mini_pawsx, tmp_path):
    report = extract(tiny_config(tiny_encoder, mini_pawsx, tmp_path, split="dev", languages=("en",), layers="-1"),
                     progress=False, log=lambda line: None)
    with FeatureStore(report.store_dir).part("dev", "en") as part:
        assert part.layers == (2,)
        assert part.read([-1], [0, 1]).features[2].shape[0] == 2
        with pytest.raises(XfuseError, match=r"layer\(s\) 1 not in this cache \(stored: 2\)"):
            part.read([1], [0])


def test_a_failed_background_write_stops_the_extraction_and_a_rerun_completes_it(tiny_encoder, mini_pawsx, tmp_path,
                                                                                 monkeypatch):
    import xfuse.features.extract as extract_module

    config = tiny_config(tiny_encoder, mini_pawsx, tmp_path, split="test", languages=("de",), out=str(tmp_path / "s"))
    written = []
    real_write = extract_module.write_shard

    def failing_write(path, rows, layers, attrs):
        if len(written) == 2:
            raise OSError(f"disk full while writing {path}")
        real_write(path, rows, layers, attrs)
        written.append(path.name)

    monkeypatch.setattr(extract_module, "write_shard", failing_write)
    with pytest.raises(OSError, match="disk full while writing .*shard-00002.h5"):
        extract(config, progress=False, log=lambda line: None)
    store = tmp_path / "s"
    assert written == ["shard-00000.h5", "shard-00001.h5"] and not list(store.glob("*.h5"))
    assert sorted(path.name for path in store.glob("*.shards/shard-*.h5")) == written

    monkeypatch.setattr(extract_module, "write_shard", real_write)
    resumed = extract(config, progress=False, log=lambda line: None)
    (part,) = resumed.parts
    assert part.status == "resumed" and part.computed_pairs == part.pairs - 16
    reference = extract(dataclasses.replace(config, out=str(tmp_path / "reference")), progress=False,
                        log=lambda line: None)
    assert _contents(store).keys() == _contents(reference.store_dir).keys()
    for (data, _), (expected, _) in zip(_contents(store).values(), _contents(reference.store_dir).values()):
        for key in expected:
            np.testing.assert_array_equal(data[key], expected[key], err_msg=key)


def _run_extract(args, kill_when=None):
    """Run ``xfuse extract`` in a child; with ``kill_when``, SIGKILL it as soon as the predicate holds."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "xfuse", "extract", *args, "--quiet"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kill_when is None:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err.decode()
        return out.decode()
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if kill_when():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    process.communicate(timeout=60)
    return process.returncode


def _contents(store: Path) -> dict:
    contents = {}
    for path in sorted(store.glob("*.h5")):
        with h5py.File(path) as handle:
            attrs = {k: v for k, v in handle.attrs.items() if k != "extract_config"}
            contents[path.name] = ({name: handle[name][:] for name in _datasets(handle)}, attrs)
    return contents


def _datasets(handle) -> list:
    names = []
    handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


def test_sigkilled_extraction_resumes_to_exactly_the_uninterrupted_features(tiny_encoder, pawsx_dir, tmp_path):
    data = write_subset(pawsx_dir, tmp_path / "data", {"en/train.tsv": 600, "en/dev_2k.tsv": 40, "en/test_2k.tsv": 16})
    common = ["--encoder", str(tiny_encoder), "--data-dir", str(data), "--split", "all", "--langs", "en",
              "--device", "cpu", "--shard-size", "8", "--batch-size", "4", "--max-length", "64"]
    _run_extract(common + ["--out", str(tmp_path / "reference")])

    store = tmp_path / "interrupted"
    shards = lambda: list(store.glob("*.shards/shard-*.h5"))
    killed = [_run_extract(common + ["--out", str(store)], kill_when=lambda: len(shards()) >= 3)]
    assert killed[0] == -signal.SIGKILL and not list(store.glob("*.h5")), "the first run must die before finishing"
    killed.append(_run_extract(common + ["--out", str(store)], kill_when=lambda: len(shards()) >= 40))
    assert killed[1] == -signal.SIGKILL
    # A shard cut off mid-write and a stale temporary file are redone, not trusted.
    (victim,) = sorted(shards())[:1]
    victim.write_bytes(victim.read_bytes()[:100])
    victim.with_name(victim.name + ".tmp").write_bytes(b"partial")
    assert FeatureStore(store).part_paths() == []

    _run_extract(common + ["--out", str(store)], kill_when=lambda: bool(list(store.glob("*.h5.tmp"))))
    output = _run_extract(common + ["--out", str(store)])
    assert "train-en" in output or "already extracted" in output

    reference, resumed = _contents(tmp_path / "reference"), _contents(store)
    assert sorted(reference) == sorted(resumed) and len(reference) == 3
    for name, (datasets, attrs) in reference.items():
        assert sorted(datasets) == sorted(resumed[name][0])
        for key, values in datasets.items():
            np.testing.assert_array_equal(values, resumed[name][0][key], err_msg=f"{name}:{key}")
        assert {k: str(v) for k, v in attrs.items()} == {k: str(v) for k, v in resumed[name][1].items()}
    assert not list(store.glob("*.shards/*.tmp")) and not list(store.glob("*.h5.tmp"))


def test_damaged_shards_are_named_refused_on_read_and_redone_to_an_undamaged_store(tiny_encoder, mini_pawsx, tmp_path,
                                                                                   capsys):
    from xfuse.cli import main

    config = tiny_config(tiny_encoder, mini_pawsx, tmp_path, split="test", languages=("en", "de"),
                         out=str(tmp_path / "store"))
    extract(config, progress=False, log=lambda line: None)
    reference = extract(dataclasses.replace(config, out=str(tmp_path / "reference")), progress=False,
                        log=lambda line: None)
    store = Path(config.out)
    flipped_beside, truncated = sorted(store.glob("test-de-*.shards/shard-*.h5"))[:2]
    flipped = sorted(store.glob("test-en-*.shards/shard-*.h5"))[0]
    with open(truncated, "r+b") as handle:
        handle.truncate(truncated.stat().st_size // 2)
    for shard in (flipped, flipped_beside):
        data = bytearray(shard.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(255 - byte for byte in data[middle : middle + 8])
        shard.write_bytes(bytes(data))

    def named(shard):  # how xfuse verify names a shard: "<part file>: <shard>"
        return f"{shard.parent.name.removesuffix('.shards')}.h5: {shard.name}: "

    def verify():
        try:
            main(["verify", "--store", str(store), "--quiet"])
            code = 0
        except SystemExit as done:
            code = done.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err.strip().splitlines()

    code, out, err = verify()
    assert code == 1 and len(err) == 1 and err[0].startswith("xfuse: error: 2 of 2 parts of")
    assert named(truncated) + str(truncated.stat().st_size) in out and "truncated" in out
    assert named(flipped) + "sha256 differs" in out and named(flipped_beside) + "sha256 differs" in out
    with pytest.raises(XfuseError, match=rf"{truncated.name}: damaged shard of test-de-.*\.h5: \d+ bytes, expected"):
        FeatureStore(store).part("test", "de")

    lines = []
    first = extract(config, progress=False, log=lines.append)  # sizes only: redoes the truncated shard's part
    assert [part.status for part in first.parts] == ["cached", "repaired"]
    assert any("damaged" in line and truncated.name in line for line in lines)
    assert first.parts[1].computed_pairs == 8  # only the truncated shard was computed again
    code, out, _ = verify()  # the kept shard beside it keeps the checksum recorded when it was written
    assert code == 1 and "truncated" not in out
    assert named(flipped) + "sha256 differs" in out and named(flipped_beside) + "sha256 differs" in out
    second = extract(dataclasses.replace(config, verify=True), progress=False, log=lambda line: None)
    assert [part.status for part in second.parts] == ["repaired", "repaired"]
    code, out, _ = verify()
    assert code == 0 and "\ndamaged " not in "\n" + out and out.count("ok ") == 2 and "all 2 parts intact" in out

    repaired, expected = _contents(store), _contents(reference.store_dir)
    assert sorted(repaired) == sorted(expected)
    for name, (datasets, attrs) in expected.items():
        for key, values in datasets.items():
            np.testing.assert_array_equal(values, repaired[name][0][key], err_msg=f"{name}:{key}")


def test_extraction_logs_and_stores_the_leakage_check(tiny_encoder, mini_pawsx, tmp_path):
    lines = []
    report = extract(tiny_config(tiny_encoder, mini_pawsx, tmp_path, split="train", out=str(tmp_path / "s")),
                     progress=False, log=lines.append)
    assert lines[0].startswith("leakage check of ") and "0 exact sentence overlaps" in lines[0]
    assert "0 training pairs of an evaluated sentence's source family" in lines[0] and "dropped from training" in lines[0]
    with h5py.File(report.parts[0].path) as handle:
        leakage = json.loads(handle.attrs["leakage"])
    assert leakage["same_family_pairs"] == 0 and leakage["policy"] == "drop" and len(leakage["per_file"]) == 6
