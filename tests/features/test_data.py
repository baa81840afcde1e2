import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from xfuse.features.data import (LANGUAGES, check_no_leakage, download_pawsx, load_protocol, protocol_parts, read_pairs,
                        resolve_data_dir)
from xfuse.errors import XfuseError

HEADER = "id\tsentence1\tsentence2\tlabel\n"

# From ../shared/pawsx/README.md: NS rows and unresolved (-1) labels in each test file.
TEST_NOT_TRANSLATED = {"en": 0, "de": 32, "es": 1, "fr": 14, "ja": 54, "ko": 28, "zh": 25}
TEST_UNLABELLED = {"en": 3, "es": 3, "fr": 2, "ja": 1, "de": 0, "ko": 0, "zh": 0}


def write(path: Path, text) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


@pytest.mark.parametrize("lang", LANGUAGES)
def test_real_test_files_drop_and_count_ns_and_unlabelled_rows(pawsx_dir, lang):
    pairs = read_pairs(pawsx_dir / lang / "test_2k.tsv", "test", lang)
    assert pairs.dropped_not_translated == TEST_NOT_TRANSLATED[lang]
    assert pairs.dropped_unlabelled == TEST_UNLABELLED[lang]
    assert len(pairs) == 2000 - TEST_NOT_TRANSLATED[lang] - TEST_UNLABELLED[lang]
    assert "NS" not in pairs.sentence1 and "NS" not in pairs.sentence2
    assert set(np.unique(pairs.labels)) <= {0, 1}


def test_real_training_file_has_opaque_string_ids(pawsx_dir):
    pairs = read_pairs(pawsx_dir / "en" / "train.tsv", "train", "en")
    assert len(pairs) == 8561  # ../shared/pawsx/README.md: 169 same-family pairs removed from 8,730
    assert pairs.ids[0] == "pawstest-1"


def test_full_protocol_reads_fifteen_files_without_leakage(pawsx_dir):
    parts = load_protocol(pawsx_dir, "all", LANGUAGES)
    assert [(p.split, p.lang) for p in parts] == protocol_parts("all", LANGUAGES)
    assert len(parts) == 15 and parts[0].name == "train-en"


def test_protocol_parts_train_is_english_only():
    assert protocol_parts("train", ("de", "fr")) == [("train", "en")]
    assert protocol_parts("test", ("de", "fr")) == [("test", "de"), ("test", "fr")]


def test_kept_rows_keep_file_order_and_fields(tmp_path):
    path = write(tmp_path / "f.tsv", HEADER + "b7\tone\ttwo\t1\nx\tNS\tthree\t0\na1\tfour\tfive\t0\nq\tsix\tseven\t-1\nz\ta\tb\t\n")
    pairs = read_pairs(path, "dev", "de")
    assert pairs.ids == ("b7", "a1")
    assert pairs.sentence2 == ("two", "five")
    assert pairs.labels.tolist() == [1, 0]
    assert (pairs.dropped_not_translated, pairs.dropped_unlabelled) == (1, 2)


@pytest.mark.parametrize("content, message", [
    (HEADER + "1\ta\tb\t1\n2\ta\tb\n", r"f\.tsv:3: expected 4 tab-separated fields .* found 3"),
    (HEADER + "1\ta\tb\t1\n2\ta\tb\tyes\n", r"f\.tsv:3: label 'yes' is not 0, 1 or -1"),
    (HEADER.encode() + b"1\ta\tb\t1\n2\ta\xff\tb\t0\n", r"f\.tsv:3: invalid UTF-8 \(byte 0xff at byte 4\)"),
    ("id\ts1\ts2\tlabel\n1\ta\tb\t1\n", r"f\.tsv:1: expected the header"),
    (HEADER + "1\ta\tb\t1\n1\tc\td\t0\n", r"f\.tsv:3: duplicate id '1' \(first at line 2\)"),
    (HEADER + "1\tNS\tb\t0\n", r"no labelled pairs left"),
    ("", r"f\.tsv: the file is empty \(no header\)"),
    ("\n \n", r"f\.tsv: the file is empty \(no header\)"),
])
def test_malformed_rows_name_file_and_line(tmp_path, content, message):
    with pytest.raises(XfuseError, match=message):
        read_pairs(write(tmp_path / "f.tsv", content), "dev", "en")


def test_evaluated_id_in_training_fails(tmp_path):
    write(tmp_path / "en" / "train.tsv", HEADER + "t1\ta\tb\t1\n7\tc\td\t0\n")
    write(tmp_path / "de" / "test_2k.tsv", HEADER + "5\te\tf\t1\n7\tg\th\t0\n")
    with pytest.raises(XfuseError, match=r"test_2k\.tsv: 1 evaluated id\(s\) also in .*train\.tsv \('7'\)"):
        load_protocol(tmp_path, "test", ("de",))


def test_check_no_leakage_passes_disjoint_ids(tmp_path):
    evaluated = read_pairs(write(tmp_path / "t.tsv", HEADER + "5\te\tf\t1\n"), "test", "de")
    check_no_leakage(["t1", "t2"], tmp_path / "train.tsv", [evaluated])


def test_missing_training_file_is_named(tmp_path):
    write(tmp_path / "en" / "dev_2k.tsv", HEADER + "1\ta\tb\t1\n")
    write(tmp_path / "en" / "test_2k.tsv", HEADER + "2\ta\tb\t1\n")
    with pytest.raises(XfuseError, match=r"missing PAWS-X file: .*en/train\.tsv \(the zero-shot protocol trains on en/train\.tsv"):
        load_protocol(tmp_path, "all", ("en",))
    assert [p.name for p in load_protocol(tmp_path, "test", ("en",))] == ["test-en"]


def test_missing_data_dir_and_unknown_language(tmp_path):
    with pytest.raises(XfuseError, match=r"data directory not found: .*nowhere"):
        load_protocol(tmp_path / "nowhere", "all", LANGUAGES)
    with pytest.raises(XfuseError, match=r"--langs: unknown language xx; expected some of en,de,es,fr,ja,ko,zh"):
        protocol_parts("test", ("de", "xx"))


def _archive(tmp_path: Path) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = (HEADER + "1\ta\tb\t1\n").encode()
        info = tarfile.TarInfo("x-final/de/test_2k.tsv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return write(tmp_path / "x-final.tar.gz", buffer.getvalue())


def test_download_unpacks_the_archive_once(tmp_path):
    url = _archive(tmp_path / "server").as_uri()
    unpacked = download_pawsx(url, tmp_path / "cache" / "data")
    assert read_pairs(unpacked / "de" / "test_2k.tsv", "test", "de").ids == ("1",)
    (tmp_path / "server" / "x-final.tar.gz").unlink()
    assert download_pawsx(url, tmp_path / "cache" / "data") == unpacked


def test_download_failure_says_to_pass_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("XFUSE_DATA_DIR", raising=False)
    with pytest.raises(XfuseError, match=r"could not download PAWS-X from .*; pass --data-dir DIR"):
        resolve_data_dir(None, tmp_path, url="http://127.0.0.1:9/x-final.tar.gz")
    assert not list((tmp_path / "data").glob("*.part"))


def test_data_dir_option_beats_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XFUSE_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None, tmp_path) == tmp_path / "env"
    assert resolve_data_dir(str(tmp_path / "opt"), tmp_path) == tmp_path / "opt"


def _copy_with(source: Path, target: Path, transform) -> Path:
    """A copy of a real PAWS-X file with a defect written into its bytes."""
    return write(target, transform(source.read_bytes()))


def test_a_byte_order_mark_is_accepted_and_stripped(pawsx_dir, tmp_path):
    original = read_pairs(pawsx_dir / "en" / "dev_2k.tsv", "dev", "en")
    copy = _copy_with(pawsx_dir / "en" / "dev_2k.tsv", tmp_path / "en" / "dev_2k.tsv", lambda data: b"\xef\xbb\xbf" + data)
    marked = read_pairs(copy, "dev", "en")
    assert marked.ids == original.ids and marked.sentence1 == original.sentence1
    assert marked.labels.tolist() == original.labels.tolist()


def test_crlf_line_endings_stay_accepted(pawsx_dir, tmp_path):
    original = read_pairs(pawsx_dir / "de" / "test_2k.tsv", "test", "de")
    copy = _copy_with(pawsx_dir / "de" / "test_2k.tsv", tmp_path / "t.tsv", lambda data: data.replace(b"\n", b"\r\n"))
    crlf = read_pairs(copy, "test", "de")
    assert crlf.sentence2 == original.sentence2 and crlf.dropped_not_translated == original.dropped_not_translated


def test_an_empty_or_blank_sentence_is_dropped_and_counted_like_ns(pawsx_dir, tmp_path):
    lines = (pawsx_dir / "de" / "test_2k.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    original = read_pairs(pawsx_dir / "de" / "test_2k.tsv", "test", "de")
    emptied = []
    for number in (2, 3):  # data rows 1 and 2: one empty first sentence, one whitespace-only second sentence
        fields = lines[number - 1].split("\t")
        fields[1 if number == 2 else 2] = "" if number == 2 else "  \u3000 "
        lines[number - 1] = "\t".join(fields)
        emptied.append(fields[0])
    pairs = read_pairs(write(tmp_path / "t.tsv", "".join(lines)), "test", "de")
    assert pairs.dropped_empty == 2 and pairs.dropped_not_translated == original.dropped_not_translated
    assert len(pairs) == len(original) - 2 and not set(emptied) & set(pairs.ids)
    assert pairs.lines[0] == 4  # kept rows remember their line in the file


def test_kept_rows_remember_their_lines(tmp_path):
    path = write(tmp_path / "f.tsv", HEADER + "a\tone\ttwo\t1\nb\tNS\tx\t0\nc\tthree\tfour\t0\n")
    assert read_pairs(path, "dev", "en").lines == (2, 4)
