"""Layer-wise alignment: CKA against its formula and invariances, its debiased value and mismatched baseline on
independent data, retrieval on a synthetic pair of languages, pooling, missing pairs, clear errors."""

import csv
import json

import numpy as np
import pytest
from scipy.linalg import expm
from scipy.stats import ortho_group

from xfuse.errors import XfuseError
from xfuse.features.align import (AlignConfig, _sentence_spans, align, debiased_cka, family_interval, linear_cka,
                                  longest_prefix,
                                  nearest, prefix_tokens, read_alignment, source_families,
                                  unbiased_hsic_gram)

from tiny import write_feature_store


def cka_by_formula(x, y):
    """Kornblith et al. 2019, eq. 1 with the linear kernel: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), H centring."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_cka_equals_its_formula_on_random_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8))
    y = x @ rng.standard_normal((8, 5)) + rng.standard_normal((60, 5))
    assert linear_cka(x, y) == pytest.approx(cka_by_formula(x, y), rel=1e-10)


def test_the_debiased_cka_in_feature_space_equals_the_gram_matrix_form():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 6))
    y = x[:, :4] @ rng.standard_normal((4, 9)) + rng.standard_normal((40, 9))
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    by_gram = unbiased_hsic_gram(xc @ xc.T, yc @ yc.T) / np.sqrt(
        unbiased_hsic_gram(xc @ xc.T, xc @ xc.T) * unbiased_hsic_gram(yc @ yc.T, yc @ yc.T))
    assert debiased_cka(x, y) == pytest.approx(by_gram, rel=1e-10)


def test_cka_is_one_under_rotation_and_isotropic_scaling():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 16)) + 3.0
    rotated = 2.5 * x @ ortho_group.rvs(16, random_state=2)
    assert linear_cka(x, rotated) == pytest.approx(1.0, abs=1e-10)
    assert debiased_cka(x, rotated) == pytest.approx(1.0, abs=1e-10)


def test_on_independent_data_at_the_real_ratio_plain_cka_is_biased_and_the_references_show_it():
    """The real parts have about 5 examples per dimension (1,970 pairs, 384 channels): so does this data."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((510, 100)), rng.standard_normal((510, 100))
    plain = linear_cka(x, y)
    assert plain > 0.1  # the upward bias the references are there for
    assert abs(debiased_cka(x, y)) < 0.02
    assert linear_cka(x, y[rng.permutation(510)]) == pytest.approx(plain, abs=0.02)  # mismatched: the same level


def small_rotation(width: int, angle: float, seed: int) -> np.ndarray:
    """An orthogonal matrix exp(angle * A), A skew-symmetric of unit spectral norm: a modest change of basis.

    Cosine retrieval, unlike CKA, is not invariant to an arbitrary rotation (a random one scrambles any
    nearest-neighbour search): languages that differ by a modest rotation are the case it is built for."""
    a = np.random.default_rng(seed).standard_normal((width, width))
    a = a - a.T
    return expm(angle * a / np.linalg.norm(a, 2))


def test_retrieval_after_a_rotation_and_offset_is_perfect_once_centred_and_at_chance_for_independent_data():
    rng = np.random.default_rng(4)
    english = rng.standard_normal((200, 12))
    target = english @ small_rotation(12, 0.3, 5) + 40.0  # a rotation plus a per-language offset
    assert np.mean(nearest(target, english, centre=True) == np.arange(200)) == 1.0
    assert np.mean(nearest(target, english, centre=False) == np.arange(200)) < 0.5  # the offset hides it
    independent = nearest(rng.standard_normal((2000, 12)), rng.standard_normal((2000, 12)), centre=True)
    assert np.mean(independent == np.arange(2000)) < 0.005  # chance is 1 / 2000


def test_source_families_join_word_swaps_and_the_interval_resamples_families():
    first = ["the cat sat on the mat", "on the mat the cat sat", "a dog ran far away", "birds sing at dawn"]
    second = ["x y z", "p q r", "far away a dog ran", "dawn birds at sing today now"]
    families = source_families(first, second)
    assert families[0] == families[1] and families[2] != families[0] and families[3] not in families[:3]
    hits = np.array([1, 1, 0, 1])
    low, high = family_interval(hits, families, 500, 0)
    assert 0 <= low <= 0.75 <= high <= 1


def test_prefix_tokens_and_sentence_spans_leave_out_specials_and_the_prefix():
    prefix = prefix_tokens([[41, 1294, 12, 7, 8], [41, 1294, 12, 9], [41, 1294, 5, 6]])
    assert prefix == (41, 1294, 12)
    tokens = np.array([0, 41, 1294, 12, 7, 8, 2, 2, 41, 1294, 12, 9, 2])  # <s> q : _ 7 8 </s></s> q : _ 9 </s>
    assert _sentence_spans(tokens, 8, prefix) == [(4, 6), (11, 12)]
    merged = np.array([0, 41, 1294, 77, 2, 2, 41, 1294, 12, 9, 2])  # "▁" merged with the word: only q : skipped
    assert _sentence_spans(merged, 6, prefix) == [(3, 4), (9, 10)]
    assert prefix_tokens([[5, 6], [7, 8], [9]]) == ()  # no prefix (mBERT)


PREFIX = [41, 1294, 12]


def _pair_tokens(rng, content_a: int, content_b: int) -> list:
    return [0] + PREFIX + list(rng.integers(100, 200, content_a)) + [2, 2] + PREFIX + \
        list(rng.integers(100, 200, content_b)) + [2]


def synthetic_store(tmp_path, drop_target=(), extra_target=0, with_english_test=True):
    """Two layers (0 and 1) over 80 pairs: layer 1 of de is English's pair latent rotated plus an offset, layer 0 is
    independent noise; special and prefix tokens carry one large vector in every language (pooling must skip it)."""
    rng = np.random.default_rng(0)
    n, width = 80, 16
    latent = rng.standard_normal((n, width)) * 3
    rotation = small_rotation(width, 0.3, 1)
    special = np.full(width, 50.0)
    data_dir = tmp_path / "data"
    (data_dir / "en").mkdir(parents=True)
    english_file = data_dir / "en" / "test_2k.tsv"
    english_file.write_text("id\tsentence1\tsentence2\tlabel\n" + "".join(
        f"p{i}\tword{i} alpha{i} beta{i}\tgamma{i} delta{i} word{i}\t{i % 2}\n" for i in range(n)))

    def part(ids, transform, data_file=None):
        tokens, lengths, second, rows = [], [], [], []
        for pair_id in ids:
            index = int(pair_id[1:]) if pair_id.startswith("p") else None
            pair = _pair_tokens(rng, 3 + 2 * (index % 2 if index is not None else 0), 4)  # 17 or 19 tokens
            start = pair.index(2) + 2
            vectors = []
            for position, token in enumerate(pair):
                is_content = token >= 100
                if is_content and index is not None:
                    vectors.append(np.stack([rng.standard_normal(width), transform(latent[index])]))
                elif is_content:
                    vectors.append(np.stack([rng.standard_normal(width), rng.standard_normal(width)]))
                else:
                    vectors.append(np.stack([special, special]))
            tokens += pair
            lengths.append(len(pair))
            second.append(start)
            rows.append(np.stack(vectors, axis=1) + 0.05 * rng.standard_normal((2, len(pair), width)))
        extra = {"ids": list(ids), "input_ids": np.array(tokens), "second_start": second}
        if data_file:
            extra["data_file"] = data_file
        return np.concatenate(rows, axis=1), np.array(lengths), np.array([0, 1] * (len(ids) // 2) + [0] * (len(ids) % 2)), extra

    english_ids = [f"p{i}" for i in range(n)]
    target_ids = [pair_id for pair_id in english_ids if pair_id not in drop_target] + [f"x{i}" for i in range(extra_target)]
    parts = {("train", "en"): part([f"t{i}" for i in range(40)], lambda z: z),
             ("test", "de"): part(target_ids, lambda z: z @ rotation + 7.0)}
    if with_english_test:
        parts[("test", "en")] = part(english_ids, lambda z: z, english_file)
    return write_feature_store(tmp_path / "store", parts, num_hidden_layers=1), data_dir


def _values(rows, layer, measure, view="raw"):
    (row,) = [r for r in rows if r["layer"] == layer and r["measure"] == measure and r["features"] == view]
    return row


def test_align_end_to_end_on_a_synthetic_store(tmp_path):
    store, data_dir = synthetic_store(tmp_path, drop_target={"p3", "p10"}, extra_target=2)
    out = tmp_path / "out"
    result = align(AlignConfig(store=str(store), n_resamples=200), out, progress=False, log=lambda line: None)
    rows = result["rows"]
    assert result["prefix_tokens"] == PREFIX
    assert result["counts"]["de"] == {"pairs": 78, "missing": 2, "truncated": 0, "unmatched_target": 2}
    assert all(row["pairs"] == 78 and row["missing"] == 2 for row in rows)
    aligned, independent = _values(rows, 1, "retrieval_centred"), _values(rows, 0, "retrieval_centred")
    assert aligned["value"] == 1.0 and aligned["low"] <= 1.0 <= aligned["high"]
    assert independent["value"] < 0.1  # chance is 1 / 80
    assert _values(rows, 1, "cka_debiased")["value"] > 0.95
    assert abs(_values(rows, 0, "cka_debiased")["value"]) < 0.1
    assert _values(rows, 0, "cka_mismatched")["value"] < 0.6
    # files written, readable, the same rows
    assert {p.name for p in out.iterdir()} == {"alignment.csv", "alignment.json", "alignment.png"}
    read = read_alignment(out / "alignment.csv")
    assert len(read) == len(rows) == 2 * 2 * 7  # layers x views x measures, one language
    assert read[0]["value"] == pytest.approx(rows[0]["value"])
    facts = json.loads((out / "alignment.json").read_text())
    assert facts["counts"]["de"]["missing"] == 2 and "rows" not in facts


def test_pairs_cut_at_the_maximum_length_are_left_out_and_counted(tmp_path):
    store, _ = synthetic_store(tmp_path)
    settings = json.loads((store / "store.json").read_text())
    (store / "store.json").write_text(json.dumps({**settings, "max_length": 19}))  # the odd pairs have 19 tokens
    result = align(AlignConfig(store=str(store), n_resamples=100), tmp_path / "out", progress=False,
                   log=lambda line: None)
    assert result["counts"]["de"] == {"pairs": 40, "missing": 0, "truncated": 40, "unmatched_target": 0}
    assert _values(result["rows"], 1, "retrieval_centred")["value"] == 1.0


def test_the_longest_of_nested_prefixes_is_stripped_where_it_matches():
    assert longest_prefix([(41, 1294, 12), (41, 1294, 12, 6), (41, 1294, 12)], (41, 1294, 12)) == (41, 1294, 12, 6)
    assert longest_prefix([(41, 1294, 12), (7, 8, 9, 10)], (41, 1294, 12)) == (41, 1294, 12)  # not nested
    tokens = np.array([0, 41, 1294, 12, 6, 7, 2, 2, 41, 1294, 12, 9, 2])  # a bare 6 in one sentence only
    assert _sentence_spans(tokens, 8, (41, 1294, 12, 6)) == [(5, 6), (11, 12)]


def test_pooling_leaves_out_the_special_and_prefix_tokens(tmp_path):
    """Special tokens are one large vector in every language: were they pooled, the raw retrieval of the
    independent layer would still be at chance but raw CKA of layer 1 would be swamped; exact recovery shows not."""
    store, _ = synthetic_store(tmp_path)
    result = align(AlignConfig(store=str(store), n_resamples=100), tmp_path / "out", progress=False,
                   log=lambda line: None)
    assert _values(result["rows"], 1, "cka", "raw")["value"] > 0.95


def test_a_store_without_english_test_features_is_one_clear_error(tmp_path):
    store, _ = synthetic_store(tmp_path, with_english_test=False)
    with pytest.raises(XfuseError, match=r"no English test features \(part test-en\)"):
        align(AlignConfig(store=str(store)), tmp_path / "out", progress=False, log=lambda line: None)
    assert not (tmp_path / "out").exists()


def test_a_changed_english_file_is_refused(tmp_path):
    store, data_dir = synthetic_store(tmp_path)
    (data_dir / "en" / "test_2k.tsv").write_text("id\tsentence1\tsentence2\tlabel\np0\ta\tb\t0\n")
    with pytest.raises(XfuseError, match="not the file the store was made from"):
        align(AlignConfig(store=str(store)), tmp_path / "out", progress=False, log=lambda line: None)


def test_a_bad_alignment_csv_names_its_line(tmp_path):
    path = tmp_path / "alignment.csv"
    path.write_text("layer,language,features,measure,value,low,high,pairs,missing\n1,de,raw,cka,abc,,,3,0\n")
    with pytest.raises(XfuseError, match="alignment.csv, line 2"):
        read_alignment(path)


def test_options_are_checked():
    with pytest.raises(XfuseError, match="--split"):
        AlignConfig(store="x", split="train").validate()
    with pytest.raises(XfuseError, match="--bootstrap"):
        AlignConfig(store="x", n_resamples=5).validate()
