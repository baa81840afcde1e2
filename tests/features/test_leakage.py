"""Content-level leakage: prefix filtering against brute force, and the check on copies of the real PAWS-X files."""

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from xfuse.features.data import LANGUAGES, load_protocol, read_pairs
from xfuse.errors import XfuseError
from xfuse.features.leakage import normalise, similar_sets, word_set


def test_normalise_folds_unicode_form_and_spacing_but_keeps_case():
    assert normalise("  Ｔｈｅ\u00a0cat\t sat ") == "The cat sat"
    assert normalise("The cat") != normalise("the cat")
    assert word_set("The cat, the CAT!") == frozenset({"the", "cat"})


@pytest.mark.parametrize("threshold", [0.5, 0.8, 1.0])
def test_prefix_filtering_finds_exactly_what_brute_force_finds(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    vocabulary = [f"w{k}" for k in range(40)]

    def random_sets(count):
        sets = []
        for _ in range(count):
            size = int(rng.integers(0, 9))
            sets.append(frozenset(rng.choice(vocabulary, size=size, replace=False).tolist()))
        return sets

    left, right = random_sets(120), random_sets(150)
    right[:20] = [frozenset(list(s)[:-1]) if len(s) > 4 else s for s in left[:20]]  # near-copies, so matches exist
    expected = sorted((i, j) for (i, a), (j, b) in itertools.product(enumerate(left), enumerate(right))
                      if a and b and len(a & b) / len(a | b) >= threshold)
    assert expected
    assert similar_sets(left, right, threshold) == expected


def _copy_pawsx(source: Path, target: Path) -> Path:
    for lang in LANGUAGES:
        (target / lang).mkdir(parents=True)
        for name in ("dev_2k.tsv", "test_2k.tsv"):
            shutil.copy(source / lang / name, target / lang / name)
    shutil.copy(source / "en" / "train.tsv", target / "en" / "train.tsv")
    return target


def _append_training_row(data_dir: Path, row: str) -> None:
    with open(data_dir / "en" / "train.tsv", "a", encoding="utf-8") as handle:
        handle.write(row + "\n")


def test_real_pawsx_has_no_exact_overlap_and_no_same_family_pair(pawsx_dir):
    train = load_protocol(pawsx_dir, "train", LANGUAGES)[0]
    assert len(train) == 8561
    assert train.leakage["exact_overlaps"] == 0 and train.leakage["same_family_pairs"] == 0
    assert len(train.leakage["per_file"]) == 14 and train.leakage["policy"] == "drop"


def test_a_swapped_word_copy_of_a_test_sentence_is_one_same_family_pair_dropped_by_default(pawsx_dir, tmp_path):
    data = _copy_pawsx(pawsx_dir, tmp_path / "pawsx")
    test = read_pairs(data / "en" / "test_2k.tsv", "test", "en")
    words = test.sentence1[10].split()
    words[1], words[3] = words[3], words[1]
    _append_training_row(data, f"added-1\t{' '.join(words)}\tAn unrelated second sentence about nothing .\t1")
    dropped = load_protocol(data, "train", ("en",))[0]
    assert len(dropped) == 8561 and "added-1" not in dropped.ids
    report = dropped.leakage
    assert report["same_family_pairs"] == 1 and report["flagged_ids"] == ["added-1"]
    entry = report["per_file"][str(data / "en" / "test_2k.tsv")]
    assert entry["pairs"] == 1 and entry["example"] == {"train_line": 8563, "evaluated_line": test.lines[10]}
    # (en dev holds other members of this sentence's family: PAWS-X's dev and test share source families)
    assert all(entry["pairs"] == 0 for entry in report["per_file"].values() if entry["lang"] != "en")
    kept = load_protocol(data, "train", ("en",), same_family="keep")[0]
    assert len(kept) == 8562 and "added-1" in kept.ids
    assert kept.leakage["same_family_pairs"] == 1 and kept.leakage["policy"] == "keep"


def test_an_evaluated_sentence_in_training_is_refused_with_both_places(pawsx_dir, tmp_path):
    data = _copy_pawsx(pawsx_dir, tmp_path / "pawsx")
    german = read_pairs(data / "de" / "test_2k.tsv", "test", "de")
    _append_training_row(data, f"added-2\tSomething else entirely .\t{german.sentence2[5]}\t0")
    with pytest.raises(XfuseError, match=rf"en/train\.tsv:8563: training sentence .* also at .*de/test_2k\.tsv:"
                                         rf"{german.lines[5]};"):
        load_protocol(data, "test", ("de",))
