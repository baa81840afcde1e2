"""The bounded-memory data path: every pair once an epoch, order from the seed alone, batches equal to plain reads."""

import itertools

import numpy as np
import pytest
import torch

from xfuse.errors import XfuseError
from xfuse.features.store import FORMAT, FeaturePart, shards_dir, write_part, write_shard
from xfuse.heads.loader import BLOCK_PAIRS, PartReader

LAYERS = (0, 1, 2)
WIDTH = 6


@pytest.fixture(scope="module")
def part_path(tmp_path_factory):
    """A float16 part of 600 pairs of 3 to 20 tokens, in 8 shards."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 21, size=600)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows = rng.normal(size=(len(LAYERS), offsets[-1], WIDTH)).astype(np.float16)
    target = tmp_path_factory.mktemp("loader") / "train-en-000000000000.h5"
    shards_dir(target).mkdir(parents=True)
    shard_paths, shard_tokens = [], []
    for index, first in enumerate(range(0, 600, 80)):
        stop = min(first + 80, 600)
        shard_paths.append(shards_dir(target) / f"shard-{index}.h5")
        shard_tokens.append(offsets[stop] - offsets[first])
        write_shard(shard_paths[-1], rows[:, offsets[first] : offsets[stop]], LAYERS, {})
    pairs = {"id": [f"p{i}" for i in range(600)], "label": rng.integers(0, 2, size=600), "offset": offsets,
             "second_start": rng.integers(1, 3, size=600), "input_ids": np.zeros(offsets[-1])}
    attrs = {"format": FORMAT, "layers": list(LAYERS), "num_hidden_layers": 2, "split": "train", "lang": "en",
             "dtype": "float16", "hidden_size": WIDTH}
    write_part(target, shard_paths, shard_tokens, pairs, attrs)
    return target


def epoch_pairs(part_path, seed, **settings):
    with FeaturePart(part_path) as part:
        reader = PartReader(part, [2, 0], **settings)
        return [batch.pairs.tolist() for batch in reader.epoch(16, np.random.default_rng(seed))], reader.resident


SMALL = dict(window_pairs=128, memory_bytes=100_000)  # two windows (about 80 KB) fit, the part (166 KB) does not
HALF = dict(window_pairs=128, memory_bytes=250_000)  # the part fits in float16 (166 KB), not in float32 (332 KB)
LARGE = dict(window_pairs=128, memory_bytes=1 << 30)  # held in float32, prepared once
SETTINGS = (SMALL, HALF, LARGE)


def test_every_pair_once_an_epoch_whether_resident_or_streamed(part_path):
    for settings in SETTINGS:
        batches, _ = epoch_pairs(part_path, 0, **settings)
        seen = sorted(pair for batch in batches for pair in batch)
        assert seen == list(range(600))
        assert all(len(batch) <= 16 for batch in batches)


def test_the_order_depends_on_the_seed_only(part_path):
    streamed, resident_flag = epoch_pairs(part_path, 3, **SMALL)
    resident, other_flag = epoch_pairs(part_path, 3, window_pairs=128, memory_bytes=1 << 30)
    assert not resident_flag and other_flag  # one reader streams windows, the other holds the whole part
    assert streamed == resident == epoch_pairs(part_path, 3, **SMALL)[0]
    assert streamed != epoch_pairs(part_path, 4, **SMALL)[0]
    # windows hold whole blocks of consecutive pairs: a batch never mixes more than window_pairs / BLOCK_PAIRS blocks
    assert all(len({pair // BLOCK_PAIRS for pair in batch}) <= 128 // BLOCK_PAIRS for batch in streamed)


def test_batches_equal_a_plain_padded_read(part_path):
    with FeaturePart(part_path) as part:
        for settings in SETTINGS:
            reader = PartReader(part, [2, 0], **settings)
            batches = itertools.chain(itertools.islice(reader.epoch(16, np.random.default_rng(0)), 6),
                                      itertools.islice(reader.in_order(32), 3))
            for batch in batches:  # each checked before the next is built: batches share the reader's buffers
                plain = part.read([2, 0], batch.pairs)
                assert batch.features.shape == (2,) + plain.features[2].shape
                assert batch.features.dtype == torch.float32
                np.testing.assert_array_equal(batch.features[0].numpy(), plain.features[2].astype(np.float32))
                np.testing.assert_array_equal(batch.features[1].numpy(), plain.features[0].astype(np.float32))
                np.testing.assert_array_equal(batch.mask.numpy(), plain.mask)
                np.testing.assert_array_equal(batch.labels.numpy(), plain.labels)
                np.testing.assert_array_equal(batch.second_start.numpy(), plain.second_start)


def test_prediction_order_covers_every_pair_once(part_path):
    with FeaturePart(part_path) as part:
        reader = PartReader(part, [1], **SMALL)
        seen = np.concatenate([batch.pairs for batch in reader.in_order(50)])
    assert sorted(seen.tolist()) == list(range(600))


def test_a_memory_setting_too_small_for_two_windows_is_refused(part_path):
    with FeaturePart(part_path) as part:
        with pytest.raises(XfuseError, match=r"--memory-mb: 0.00477 MiB cannot hold two windows of train-en"):
            PartReader(part, LAYERS, window_pairs=128, memory_bytes=5_000)


def test_a_batch_is_valid_until_the_next_one_and_autograd_notices_misuse(part_path):
    with FeaturePart(part_path) as part:
        reader = PartReader(part, [1], **SMALL)
        batches = reader.epoch(16, np.random.default_rng(0))
        first = next(batches)
        weight = torch.ones(WIDTH, requires_grad=True)
        loss = (first.features[0] @ weight).sum()
        next(batches)  # overwrites the shared buffer
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


def test_channel_moments_and_standardized_batches(part_path):
    with FeaturePart(part_path) as part:
        everything = np.stack([part.read_tokens(layer, 0, len(part)).astype(np.float64) for layer in (2, 0)])
        for settings in SETTINGS:
            reader = PartReader(part, [2, 0], **settings)
            mean, std = reader.channel_moments()
            np.testing.assert_allclose(mean, everything.mean(axis=1), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(std, everything.std(axis=1), rtol=1e-8)
            reader.standardize(mean, std)
            batch = next(reader.epoch(16, np.random.default_rng(0)))
            plain = part.read([2, 0], batch.pairs)
            for position, layer in enumerate((2, 0)):
                expected = (plain.features[layer].astype(np.float64) - mean[position]) / std[position]
                expected[~plain.mask] = 0.0
                np.testing.assert_allclose(batch.features[position].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_a_prepared_part_gives_the_same_batches_bit_for_bit(part_path):
    """Held in float32 and standardized once (LARGE), held in float16 (HALF) or streamed (SMALL): the same numbers."""
    with FeaturePart(part_path) as part:
        mean, std = PartReader(part, [2, 0], **SMALL).channel_moments()
        readers = [PartReader(part, [2, 0], **settings) for settings in SETTINGS + (LARGE,)]
        readers.append(PartReader(part, [2, 0], prepare=False, **LARGE))  # as for a part only predicted
        assert [(reader.resident, reader.prepared) for reader in readers] == [
            (False, False), (True, False), (True, True), (True, True), (True, False)]
        readers[3].load()  # prepared before the statistics were given: standardize must still apply them
        for reader in readers:
            reader.standardize(mean, std)
        compared = 0
        for batches in zip(*[itertools.chain(itertools.islice(reader.epoch(16, np.random.default_rng(5)), 8),
                                             reader.in_order(40)) for reader in readers]):
            first = batches[0]
            for other in batches[1:]:
                np.testing.assert_array_equal(other.pairs, first.pairs)
                assert torch.equal(other.mask, first.mask)
                assert torch.equal(other.features, first.features)  # exact, padding included
            assert first.features.abs().max() > 0
            compared += len(first)
        assert compared == 8 * 16 + 600  # 8 training batches, then every pair predicted


def test_release_frees_the_held_part_and_a_later_epoch_reads_it_again(part_path):
    with FeaturePart(part_path) as part:
        reader = PartReader(part, [2, 0], **LARGE)
        first = [(batch.pairs.copy(), batch.features.clone()) for batch in reader.in_order(100)]
        assert reader._whole is not None
        reader.release()
        assert reader._whole is None and reader._scratch == {}
        again = [(batch.pairs.copy(), batch.features.clone()) for batch in reader.in_order(100)]
    assert len(first) == len(again)
    for (pairs, features), (pairs_again, features_again) in zip(first, again):
        np.testing.assert_array_equal(pairs, pairs_again)
        assert torch.equal(features, features_again)
