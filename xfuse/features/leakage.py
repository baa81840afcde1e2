"""Content-level leakage between the training pairs and the evaluated ones.

Ids cannot show a leak: a training file's ids need not be PAWS-X's, and PAWS
builds several pairs from one source sentence (by swapping words and by
back-translation), so a training pair can share a sentence, or its source
family, with an evaluated pair under another id. Two checks compare texts:

- **Exact overlap** is an error. Texts are compared after Unicode NFKC and
  whitespace collapsing (``normalise``): multilingual-e5's SentencePiece
  tokenizer applies NFKC and both it and mBERT's WordPiece split on
  whitespace, so two texts that differ only in Unicode form or spacing reach
  the encoder as one; case is kept, as both tokenizers keep it. A training
  sentence equal to a sentence of any evaluated file, in any language, stops
  with both files and lines.
- **Same source family** is counted, and by default such training pairs are
  dropped. Two sentences belong to one family when the Jaccard similarity of
  their word sets is at least ``threshold`` (0.8)::

      J(a, b) = |W(a) & W(b)| / |W(a) | W(b)|,   W(s) = set of casefolded \\w+ runs of normalise(s)

  A word swap, PAWS's main construction, keeps the word set (J = 1); a
  back-translated variant of a 15-word sentence that changes one word in
  each direction has J = 14/16 = 0.875; unrelated sentences on one topic
  share far fewer words. This is the measure with which ``../shared/pawsx``
  removed 169 such pairs; it was chosen there and is kept here for the same
  reason. Scripts without spaces (ja, zh) make one long \\w+ run per clause,
  so only near-identical sentences match there, which is what a translation
  of an English training sentence can never be: the check is in effect one
  of English against English.

Candidate pairs are found by prefix filtering (Bayardo et al. 2007,
"Scaling up all pairs similarity search"): with words ordered rarest first,
two sets with J >= t share a word among the first ``|W| - ceil(t |W|) + 1`` of
each, so one sparse product of prefix indicators yields every candidate, and
each candidate is then checked exactly.

Usage::

    report = leakage_report(train, evaluated, threshold=0.8)   # raises XfuseError on exact overlap
    print(report["same_family_pairs"], report["per_file"])
"""

import math
import re
import unicodedata
from typing import Sequence

import numpy as np
import scipy.sparse

from xfuse.errors import XfuseError

FAMILY_THRESHOLD = 0.8
_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """NFKC, whitespace runs collapsed to one space, stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def word_set(text: str) -> frozenset:
    """The casefolded word runs of a normalised text."""
    return frozenset(_WORD.findall(normalise(text).casefold()))


def check_exact_overlap(train, evaluated: Sequence) -> None:
    """Raise when a training sentence equals (after ``normalise``) a sentence of an evaluated file."""
    seen = {}
    for pairs in evaluated:
        for line, first, second in zip(pairs.lines, pairs.sentence1, pairs.sentence2):
            for text in (first, second):
                seen.setdefault(normalise(text), (pairs.path, line))
    for line, first, second in zip(train.lines, train.sentence1, train.sentence2):
        for text in (first, second):
            where = seen.get(normalise(text))
            if where is not None:
                raise XfuseError(
                    f"{train.path}:{line}: training sentence {text[:60]!r} also at {where[0]}:{where[1]}; "
                    "training must not see an evaluated sentence (remove that training pair)"
                )


def similar_sets(left: Sequence[frozenset], right: Sequence[frozenset], threshold: float) -> list:
    """All (i, j) with Jaccard(left[i], right[j]) >= threshold, by prefix filtering; empty sets never match."""
    if not 0 < threshold <= 1:
        raise XfuseError(f"same-family threshold: expected a number in (0, 1], got {threshold}")
    counts = {}
    for words in list(left) + list(right):
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    rank = {word: position for position, word in enumerate(sorted(counts, key=lambda w: (counts[w], w)))}

    def prefix_matrix(sets):
        rows, cols = [], []
        for row, words in enumerate(sets):
            if not words:
                continue
            ordered = sorted(rank[word] for word in words)
            keep = len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1
            rows.extend([row] * keep)
            cols.extend(ordered[:keep])
        data = np.ones(len(rows), dtype=np.int32)
        return scipy.sparse.csr_matrix((data, (rows, cols)), shape=(len(sets), max(len(rank), 1)))

    candidates = (prefix_matrix(left) @ prefix_matrix(right).T).tocoo()
    found = []
    for i, j in zip(candidates.row.tolist(), candidates.col.tolist()):
        a, b = left[i], right[j]
        if len(a & b) >= threshold * len(a | b) - 1e-9:
            found.append((i, j))
    return sorted(found)


def same_family(train, evaluated: Sequence, threshold: float = FAMILY_THRESHOLD) -> tuple:
    """Training pairs with a sentence in the source family of an evaluated sentence.

    Returns ``(flagged, per_file)``: the sorted positions of flagged training
    pairs, and for each evaluated file (by its path) how many training pairs
    it flags, with the first example (training line, evaluated line).
    """
    train_sets = [word_set(text) for text in train.sentence1 + train.sentence2]
    evaluated_sets, owner = [], []  # owner: (file position, row) of each evaluated sentence
    for position, pairs in enumerate(evaluated):
        evaluated_sets.extend(word_set(text) for text in pairs.sentence1 + pairs.sentence2)
        owner.extend((position, row % len(pairs)) for row in range(2 * len(pairs)))
    hits = {}
    for i, j in similar_sets(train_sets, evaluated_sets, threshold):
        position, row = owner[j]
        hits.setdefault(position, []).append((i % len(train), row))
    per_file = {}
    for position, pairs in enumerate(evaluated):
        found = sorted(hits.get(position, []))
        example = ({"train_line": train.lines[found[0][0]], "evaluated_line": pairs.lines[found[0][1]]}
                   if found else None)
        per_file[str(pairs.path)] = {"split": pairs.split, "lang": pairs.lang,
                                     "pairs": len({i for i, _ in found}), "example": example}
    flagged = sorted({i for found in hits.values() for i, _ in found})
    return flagged, per_file


def leakage_report(train, evaluated: Sequence, threshold: float = FAMILY_THRESHOLD) -> dict:
    """Check exact overlap (raises) and count same-family training pairs against every evaluated file."""
    check_exact_overlap(train, evaluated)
    flagged, per_file = same_family(train, evaluated, threshold)
    return {"train_file": str(train.path), "exact_overlaps": 0, "threshold": threshold,
            "measure": "word-set Jaccard after NFKC, whitespace collapsing and casefolding",
            "same_family_pairs": len(flagged), "flagged_ids": [train.ids[i] for i in flagged],
            "flagged_positions": flagged, "per_file": per_file}
