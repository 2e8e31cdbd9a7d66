"""The lm-eval adapter (zoo.lm_eval.ZooLM): its three LM methods through lm_eval's own objects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.data.tokenizer import ByteTokenizer

lm_eval = pytest.importorskip("lm_eval", reason="lm_eval is not installed (pip install 'zoo[eval]'; not in dev)")
from lm_eval.api.instance import Instance  # noqa: E402

from zoo.lm_eval import ZooLM  # noqa: E402

SPEC = {
    "vocab_size": 300,
    "d_model": 32,
    "layers": [
        {"mixer": {"name": "mamba2", "params": {"d_state": 8, "headdim": 16}}, "mlp": {"kind": "none"}},
        {"mixer": {"name": "attention", "params": {"n_heads": 2}}, "mlp": {"kind": "none"}},
    ],
}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return zoo.build(SPEC).eval()


def _instances(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


@torch.no_grad()
def _reference(model, context: list[int], continuation: list[int]) -> float:
    """log p(continuation | context) from one unbatched forward."""
    ids = torch.tensor([context + continuation])
    logprobs = F.log_softmax(model(ids[:, :-1]).float(), -1)[0, len(context) - 1 :]
    return float(logprobs.gather(-1, torch.tensor(continuation)[:, None]).sum())


PAIRS = [("The cat", " sat"), ("a", "bcdefgh"), ("", "hello"), ("long context " * 4, " end"), ("x ", "y")]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_loglikelihood_matches_an_unbatched_reference(model, batch_size) -> None:
    tok = ByteTokenizer()
    lm = ZooLM(model=model, tokenizer=tok, batch_size=batch_size)
    results = lm.loglikelihood(_instances("loglikelihood", PAIRS))
    for (context, continuation), (score, _) in zip(PAIRS, results, strict=True):
        # trailing spaces of the context move to the continuation; an empty context is <bos>
        stripped = context.rstrip(" ")
        ctx = tok.encode(stripped) or [tok.bos_id]
        assert score == pytest.approx(
            _reference(model, ctx, tok.encode(context[len(stripped) :] + continuation)), abs=1e-4
        )


def test_is_greedy() -> None:
    model = zoo.build({**SPEC, "tie_embeddings": False}).eval()
    with torch.no_grad():
        model.lm_head.weight[128:] = 0  # logits of non-ASCII ids are 0: the greedy id is an ASCII byte
    lm = ZooLM(model=model, tokenizer=ByteTokenizer())
    with torch.no_grad():
        greedy = model(torch.tensor([list(b"abc")])).argmax(-1)[0, -1].item()
    assert greedy < 128
    (_, is_greedy), (_, not_greedy) = lm.loglikelihood(
        _instances("loglikelihood", [("abc", chr(greedy)), ("abc", chr(greedy ^ 1))])
    )
    assert is_greedy and not not_greedy


def test_loglikelihood_rolling_scores_every_token_once(model) -> None:
    tok = ByteTokenizer()
    text = "rolling windows over a short document"
    full = ZooLM(model=model, tokenizer=tok, max_length=64).loglikelihood_rolling(
        _instances("loglikelihood_rolling", [(text,)])
    )[0]
    assert full == pytest.approx(_reference(model, [tok.bos_id], tok.encode(text)), abs=1e-4)
    # Windows of 8 tokens: each token is still predicted once, from a shorter context.
    windows = ZooLM(model=model, tokenizer=tok, max_length=8).loglikelihood_rolling(
        _instances("loglikelihood_rolling", [(text,)])
    )[0]
    ids = tok.encode(text)
    expected = _reference(model, [tok.bos_id], ids[:8])
    for start in range(8, len(ids), 8):
        end = min(start + 8, len(ids))  # the last window conditions on up to 8 earlier tokens
        expected += _reference(model, ids[end - 9 : start], ids[start:end])
    assert windows == pytest.approx(expected, abs=1e-4) and windows != pytest.approx(full, abs=1e-3)


def test_generate_until_is_greedy_and_stops(model) -> None:
    tok = ByteTokenizer()
    lm = ZooLM(model=model, tokenizer=tok, max_gen_toks=12)
    context = "Once upon"
    new = zoo.generate(model, torch.tensor([tok.encode(context)]), 12, eos_id=tok.eos_id)[0].tolist()
    expected = tok.decode(t for t in new if t != tok.eos_id)
    (plain,) = lm.generate_until(_instances("generate_until", [(context, {"until": []})]))
    assert plain == expected
    stop = expected[3:5]
    if not stop:
        pytest.skip("the random model generated fewer than five characters")
    (cut,) = lm.generate_until(_instances("generate_until", [(context, {"until": [stop], "max_gen_toks": 12})]))
    assert cut == expected.split(stop, 1)[0]


def test_bad_arguments_are_named(model) -> None:
    with pytest.raises(zoo.ZooError, match="pretrained=DIR or model"):
        ZooLM()
    with pytest.raises(zoo.ZooError, match="batch_size"):
        ZooLM(model=model, tokenizer=ByteTokenizer(), batch_size="auto")
    if not torch.cuda.is_available():
        with pytest.raises(zoo.ZooError, match="--device cpu"):
            ZooLM(model=model, tokenizer=ByteTokenizer(), device="cuda:0")


def _task(tmp_path: Path) -> Path:
    docs = [
        {"question": "1 + 1 =", "choices": [" 2", " 3"], "answer": 0},
        {"question": "The sky is", "choices": [" green", " blue"], "answer": 1},
        {"question": "Cats say", "choices": [" meow", " woof"], "answer": 0},
    ]
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "zoo_tiny.yaml").write_text(f"""task: zoo_tiny
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {tmp_path / "hf-cache"}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""")
    return tasks


@pytest.mark.slow
def test_simple_evaluate_on_a_local_task(model, tmp_path) -> None:
    from lm_eval.tasks import TaskManager

    tasks = _task(tmp_path)
    lm = ZooLM(model=model, tokenizer=ByteTokenizer(), batch_size=2)
    results = lm_eval.simple_evaluate(model=lm, tasks=["zoo_tiny"], task_manager=TaskManager(include_path=str(tasks)))
    acc = results["results"]["zoo_tiny"]["acc,none"]
    # the accuracy lm-eval reports is the adapter's own choice by log-likelihood
    picks = []
    for question, choices, answer in [
        ("1 + 1 =", [" 2", " 3"], 0),
        ("The sky is", [" green", " blue"], 1),
        ("Cats say", [" meow", " woof"], 0),
    ]:
        scores = lm.loglikelihood(_instances("loglikelihood", [(question + " ", c.lstrip(" ")) for c in choices]))
        picks.append(max(range(2), key=lambda i: scores[i][0]) == answer)
    assert acc == pytest.approx(sum(picks) / 3)


@pytest.mark.slow
def test_cli_runs_the_registered_model(model, tmp_path) -> None:
    model.save_pretrained(tmp_path / "m")
    tasks = _task(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "zoo.lm_eval",
            "run",
            "--model",
            "zoo",
            "--model_args",
            f"pretrained={tmp_path / 'm'}",
            "--device",
            "cpu",
            "--batch_size",
            "2",
            "--tasks",
            "zoo_tiny",
            "--include_path",
            str(tasks),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "zoo_tiny" in out.stdout and "acc" in out.stdout


def test_transmamba_scores_at_its_training_transpoints_whatever_the_padding() -> None:
    """Absolute training TransPoints: a row scores the same alone and right-padded in a batch
    (a relative schedule evaluated at the padded width would move every row's P)."""
    from zoo.inference import TransPointWarning

    torch.manual_seed(0)
    model = zoo.build("transmamba-tiny").eval()
    model.record_training_transpoints(64)
    tok = ByteTokenizer()
    lm = ZooLM(model=model, tokenizer=tok, batch_size=len(PAIRS))
    scores = [score for score, _ in lm.loglikelihood(_instances("loglikelihood", PAIRS))]
    for (context, continuation), score in zip(PAIRS, scores, strict=True):
        stripped = context.rstrip(" ")
        ctx = tok.encode(stripped) or [tok.bos_id]
        reference = _reference(model, ctx, tok.encode(context[len(stripped) :] + continuation))
        assert score == pytest.approx(reference, abs=1e-4)
    with pytest.warns(TransPointWarning, match="trained at"):
        ssm = ZooLM(model=model, tokenizer=tok, batch_size=len(PAIRS), transpoints="0")
    assert ssm.transpoints == [0] * model.n_layers
    assert [score for score, _ in ssm.loglikelihood(_instances("loglikelihood", PAIRS))] != pytest.approx(scores)


def test_a_model_without_a_record_scores_a_row_the_same_in_any_batch() -> None:
    """No training record: the schedule is fixed once at max_length (absolute P), so padding a
    row into a wider batch never moves its TransPoints."""
    torch.manual_seed(0)
    model = zoo.build("transmamba-tiny").eval()
    assert model.trained_transpoints is None
    tok = ByteTokenizer()
    requests = _instances("loglikelihood", PAIRS)
    alone = [s for s, _ in ZooLM(model=model, tokenizer=tok, batch_size=1, max_length=64).loglikelihood(requests)]
    batched = ZooLM(model=model, tokenizer=tok, batch_size=len(PAIRS), max_length=64)
    assert batched.transpoints == model.transpoints_for(64)
    assert [s for s, _ in batched.loglikelihood(requests)] == pytest.approx(alone, abs=1e-5)
