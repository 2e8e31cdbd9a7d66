from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zoo.data import (
    IGNORE,
    ByteTokenizer,
    load_corpus,
    make_task,
    mqar_batch,
    seeded_generator,
    selective_copy_batch,
    split_text,
    tokenizer_from_json,
)
from zoo.errors import ZooError


def test_byte_tokenizer_round_trip() -> None:
    tok = ByteTokenizer()
    text = "héllo wörld ∑ 🙂"
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == 259 and max(tok.encode(text)) < 256
    assert tok.decode([tok.bos_id, *tok.encode("a"), tok.eos_id]) == "a"
    assert isinstance(tokenizer_from_json(tok.to_json()), ByteTokenizer)


def test_bpe_tokenizer_trains_and_round_trips() -> None:
    pytest.importorskip("tokenizers")
    from zoo.data import BPETokenizer

    corpus = load_corpus("builtin:topics")
    tok = BPETokenizer.train([corpus.train[:200_000]], vocab_size=512)
    assert tok.vocab_size == 512
    text = corpus.validation[:300]
    assert tok.decode(tok.encode(text)) == text
    again = tokenizer_from_json(tok.to_json())
    assert again.encode(text) == tok.encode(text)


def test_pylib_corpus_is_the_standard_library_without_tests_idle_or_installed_packages() -> None:
    import sysconfig

    from zoo.data.corpora import PYLIB_SKIP, pylib_files

    root = Path(sysconfig.get_paths()["stdlib"])
    files = pylib_files()
    relative = [f.relative_to(root) for f in files]
    assert {"os.py", "argparse.py"} <= {r.name for r in relative}
    assert any(r.parts[0] == "json" for r in relative)  # packages come with their modules
    assert not [r for r in relative if PYLIB_SKIP.intersection(r.parts[:-1])]
    assert relative == sorted(relative, key=lambda r: r.as_posix())
    assert len(files) > 100


def test_an_unknown_builtin_part_names_the_parts() -> None:
    with pytest.raises(ZooError, match="builtin:pylib"):
        load_corpus("builtin:everything")


def test_builtin_corpus_split_is_deterministic_and_disjoint() -> None:
    a, b = load_corpus(), load_corpus("builtin")
    assert a.train == b.train and a.validation == b.validation
    assert 0.03 < len(a.validation) / (len(a.train) + len(a.validation)) < 0.07
    assert a.validation[:4096] != a.train[:4096]


def test_split_text_covers_everything() -> None:
    text = "".join(chr(65 + i % 26) for i in range(10_000))
    train, val = split_text(text, val_every=4, block_chars=100)
    assert len(train) + len(val) == len(text) and len(val) == 2500


def test_corpus_from_file_dir_and_glob(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha " * 200)
    (tmp_path / "sub" / "b.md").write_text("beta " * 200)
    assert "alpha" in load_corpus(tmp_path / "a.txt").train
    both = load_corpus(tmp_path)
    assert "beta" in both.train + both.validation and "alpha" in both.train + both.validation
    assert load_corpus(str(tmp_path / "**" / "*.md")).train.startswith("beta")
    with pytest.raises(ZooError, match="no text files"):
        load_corpus(tmp_path / "missing*.txt")


def test_mqar_targets_are_the_values_of_the_queried_keys() -> None:
    inputs, targets = mqar_batch(8, 64, 8, 64, seeded_generator(0, "t"))
    assert inputs.shape == targets.shape == (8, 64)
    for row_in, row_t in zip(inputs.tolist(), targets.tolist(), strict=True):
        pairs = dict(zip(row_in[0:16:2], row_in[1:16:2], strict=True))
        assert len(pairs) == 8 and all(1 <= k < 32 <= v < 64 for k, v in pairs.items())
        scored = [(pos, t) for pos, t in enumerate(row_t) if t != IGNORE]
        assert len(scored) == 8
        assert sorted(row_in[pos] for pos, _ in scored) == sorted(pairs)
        assert all(pairs[row_in[pos]] == t for pos, t in scored)
    with pytest.raises(ValueError, match="seq_len"):
        mqar_batch(1, 30, 8, 64, seeded_generator(0))


def test_selective_copy_targets_are_the_data_tokens_in_order() -> None:
    inputs, targets = selective_copy_batch(4, 40, 8, 16, seeded_generator(1))
    for row_in, row_t in zip(inputs.tolist(), targets.tolist(), strict=True):
        data = [t for t in row_in[:32] if t >= 2]
        assert row_in[32] == 1 and row_t[32:] == data and set(row_t[:32]) == {IGNORE}


def test_batches_are_a_function_of_seed_step_micro() -> None:
    task = make_task("mqar", seq_len=32, vocab_size=32, num_items=4, seed=3)
    x1, _ = task.train_batch(5, 1, 4)
    x2, _ = task.train_batch(5, 1, 4)
    x3, _ = task.train_batch(6, 1, 4)
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    text = make_task("text", data="builtin:topics", seq_len=32, seed=3)
    a, b = text.train_batch(2, 0, 3)
    assert torch.equal(a[:, 1:], b[:, :-1])
    assert torch.equal(a, text.train_batch(2, 0, 3)[0])
    eval_batches = text.eval_batches(16)
    assert sum(x.shape[0] for x, _ in eval_batches) == 64
