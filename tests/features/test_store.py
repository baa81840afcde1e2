"""The HDF5 store on synthetic shards: padding, order, runs of pairs, torch conversion, refusal of partial files."""

import numpy as np
import pytest
import torch

from xfuse.errors import XfuseError
from xfuse.features.store import (FORMAT, FeaturePart, FeatureStore, part_problems, shards_dir, verify_store, write_part,
                            write_shard, write_store_settings)


@pytest.fixture
def part_path(tmp_path):
    rng = np.random.default_rng(0)
    lengths = np.array([3, 5, 2, 4, 1])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    layers = {layer: rng.normal(size=(offsets[-1], 6)).astype(np.float32) for layer in (0, 2)}
    target = tmp_path / "store" / "test-de-000000000000.h5"
    shards_dir(target).mkdir(parents=True)
    shard_paths, shard_tokens = [], []
    for index, (first, stop) in enumerate([(0, 2), (2, 5)]):
        rows = np.stack([layers[layer][offsets[first] : offsets[stop]] for layer in (0, 2)])
        shard_paths.append(shards_dir(target) / f"shard-{index}.h5")
        shard_tokens.append(offsets[stop] - offsets[first])
        write_shard(shard_paths[-1], rows, (0, 2), {"first": first, "stop": stop})
    pairs = {"id": ["a", "b", "c", "d", "e"], "label": np.array([0, 1, 1, 0, 1]), "offset": offsets,
             "second_start": np.array([1, 2, 1, 2, 0]), "input_ids": np.arange(offsets[-1])}
    attrs = {"format": FORMAT, "layers": [0, 2], "num_hidden_layers": 2, "split": "test", "lang": "de",
             "dtype": "float32", "hidden_size": 6}
    write_part(target, shard_paths, shard_tokens, pairs, attrs)
    return target, layers, offsets


def test_read_pads_in_the_order_asked(part_path):
    target, layers, offsets = part_path
    with FeaturePart(target) as part:
        batch = part.read([-1, 0], pairs=[4, 1, 2, 0])
        assert list(batch.features) == [2, 0]
        assert batch.features[2].shape == (4, 5, 6)
        assert batch.mask.sum(1).tolist() == [1, 5, 2, 3]
        assert batch.ids == ["e", "b", "c", "a"] and batch.labels.tolist() == [1, 1, 1, 0]
        assert batch.second_start.tolist() == [0, 2, 1, 1]
        for row, pair in enumerate([4, 1, 2, 0]):
            length = offsets[pair + 1] - offsets[pair]
            np.testing.assert_array_equal(batch.features[0][row, :length], layers[0][offsets[pair] : offsets[pair + 1]])
            assert not batch.features[0][row, length:].any()
        np.testing.assert_array_equal(part.read_tokens(2, 1, 3), layers[2][offsets[1] : offsets[3]])
        converted = batch.to_torch(dtype=torch.float64)
        assert converted.features[2].dtype == torch.float64 and converted.mask.dtype == torch.bool


def test_read_everything_by_default(part_path):
    target, layers, _ = part_path
    with FeaturePart(target) as part:
        batch = part.read([0])
        assert batch.pair_index.tolist() == [0, 1, 2, 3, 4]
        np.testing.assert_array_equal(batch.features[0][batch.mask], layers[0])


def test_bad_reads_are_refused(part_path):
    target, _, _ = part_path
    with FeaturePart(target) as part:
        with pytest.raises(XfuseError, match=r"layer\(s\) 1 not in this cache \(stored: 0, 2\)"):
            part.read([1])
        with pytest.raises(XfuseError, match=r"pair index out of range 0\.\.4"):
            part.read([0], pairs=[5])


def test_store_finds_parts_and_ignores_temporary_files(part_path):
    target, _, _ = part_path
    store_dir = target.parent
    write_store_settings(store_dir, {"fingerprint": "abc", "encoder": "tiny"})
    (store_dir / "test-fr-000000000000.h5.tmp").write_bytes(b"half written")
    store = FeatureStore(store_dir)
    assert store.part_paths() == [target]
    assert len(store.part("test", "de")) == 5
    with pytest.raises(XfuseError, match=r"no complete test-fr part \(have: test-de\)"):
        store.part("test", "fr")


def test_part_with_a_missing_shard_is_refused(part_path):
    target, _, _ = part_path
    (shards_dir(target) / "shard-1.h5").unlink()
    with pytest.raises(XfuseError, match=r"test-de-000000000000\.shards/shard-1\.h5: damaged shard of "
                                         r"test-de-000000000000\.h5: missing; run the same xfuse extract again"):
        FeaturePart(target)


def test_part_records_each_shards_size_and_sha256(part_path):
    import h5py

    from xfuse.features.hashing import file_sha256

    target, _, _ = part_path
    with h5py.File(target) as handle:
        names = [name.decode() for name in handle["shards/name"][:]]
        assert names == ["test-de-000000000000.shards/shard-0.h5", "test-de-000000000000.shards/shard-1.h5"]
        for name, size, digest in zip(names, handle["shards/bytes"][:], handle["shards/sha256"][:]):
            assert size == (target.parent / name).stat().st_size
            assert digest.decode() == file_sha256(target.parent / name)
    assert part_problems(target, checksums=True) == []


def test_a_truncated_shard_is_refused_in_one_line_naming_it(part_path):
    target, _, _ = part_path
    shard = shards_dir(target) / "shard-0.h5"
    size = shard.stat().st_size
    with open(shard, "r+b") as handle:
        handle.truncate(size - 100)
    assert part_problems(target) == [(shard, f"{size - 100} bytes, expected {size} (truncated or rewritten)")]
    with pytest.raises(XfuseError) as caught:
        FeaturePart(target)
    assert "\n" not in str(caught.value) and str(shard) in str(caught.value) and "truncated" in str(caught.value)


def test_flipped_bytes_are_found_by_the_checksum_only(part_path):
    target, _, _ = part_path
    shard = shards_dir(target) / "shard-1.h5"
    data = bytearray(shard.read_bytes())
    data[-40:-30] = bytes(255 - byte for byte in data[-40:-30])
    shard.write_bytes(bytes(data))
    assert part_problems(target) == []
    assert part_problems(target, checksums=True) == [
        (shard, "sha256 differs from the one recorded when it was written (contents changed)")]


def test_verify_store_lists_every_part_and_unfinished_shards(part_path):
    target, _, _ = part_path
    write_store_settings(target.parent, {"fingerprint": "abc", "encoder": "tiny"})
    unfinished = target.parent / "test-fr-111111111111.shards"
    unfinished.mkdir()
    results = verify_store(target.parent, progress=False)
    assert results[0] == (target, [])
    assert results[1][0] == target.parent / "test-fr-111111111111.h5"
    assert results[1][1][0][1].startswith("incomplete")


def test_store_can_be_moved(part_path, tmp_path):
    target, layers, _ = part_path
    moved = tmp_path / "elsewhere"
    target.parent.rename(moved)
    with FeaturePart(moved / target.name) as part:
        np.testing.assert_array_equal(part.read_tokens(2, 0, 5), layers[2])


def test_incomplete_or_foreign_files_are_refused(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle.attrs["format"] = FORMAT
    with pytest.raises(XfuseError, match="not a complete xfuse-features/2 file"):
        FeaturePart(tmp_path / "x.h5")
    (tmp_path / "y.h5").write_bytes(b"not hdf5")
    with pytest.raises(XfuseError, match="not a readable HDF5 features file"):
        FeaturePart(tmp_path / "y.h5")
    with pytest.raises(XfuseError, match="not an xfuse features store"):
        FeatureStore(tmp_path)


def test_cache_readme_documents_the_layout_of_the_module_docstring():
    from pathlib import Path

    import xfuse.features.store

    layout = xfuse.features.store.__doc__.split("Usage::")[0].strip()
    readme = (Path(__file__).resolve().parents[2] / "cache" / "README.md").read_text()
    indented = "\n".join(("    " + line) if line.strip() else "" for line in layout.splitlines())
    assert indented in readme
