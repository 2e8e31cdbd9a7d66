"""Multi-process training (torchrun + FSDP2 on gloo, CPU, fp32, eager) against one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import zoo
from zoo.checkpoint import list_checkpoints, open_checkpoint
from zoo.errors import ZooError
from zoo.training import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4
TRAIN = ["transmamba-tiny", "--task", "mqar", "--seq-len", "32", "--vocab", "32", "--num-items", "4"] + [
    "--steps",
    str(STEPS),
    "--save-every",
    "2",
    "--no-compile",
    "--no-progress",
    "--warmup",
    "1",
    "--seed",
    "3",
]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _zoo_train(out: Path, batch_size: int, nproc: int = 1, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "zoo", "train", *TRAIN, "--batch-size", str(batch_size), "--out", str(out)]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    result = subprocess.run(command + list(extra), capture_output=True, text=True, env=_env(), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _losses(run: Path) -> list[float]:
    return [row["loss"] for row in read_jsonl(run / "metrics.jsonl")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One process with batch 6, two processes with batch 3 each: the same global batch."""
    root = tmp_path_factory.mktemp("dist")
    _zoo_train(root / "one", 6)
    two = _zoo_train(root / "two", 3, 2)
    assert "global batch 6 sequences (per rank 3 x 2 ranks x 1 accumulation)" in two.stderr
    return {"one": root / "one", "two": root / "two"}


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(runs) -> None:
    one, two = _losses(runs["one"]), _losses(runs["two"])
    assert len(one) == len(two) == STEPS
    assert one == pytest.approx(two, rel=1e-5, abs=1e-6)
    # rank 0 alone logs: one row per step, and a sharded checkpoint of both ranks' files
    checkpoint = open_checkpoint(runs["two"])
    assert checkpoint.sharded and checkpoint.manifest["world_size"] == 2
    assert {"model/__0_0.distcp", "model/__1_0.distcp", "optimizer/.metadata"} <= set(checkpoint.manifest["files"])
    assert not open_checkpoint(runs["one"]).sharded  # one process: the single-file form, as before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "nproc", "batch_size"), [("two", 1, 6), ("two", 3, 2), ("one", 2, 3)], ids=["2to1", "2to3", "1to2"]
)
def test_resume_on_another_world_size_continues_the_loss_sequence(runs, tmp_path, source, nproc, batch_size) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs[source], run)
    shutil.rmtree(run / "checkpoints" / "step-00000004")  # as if the job died after step 2's save
    assert open_checkpoint(run).sharded == (source == "two")
    _zoo_train(run, batch_size, nproc, "--resume")
    assert _losses(run) == pytest.approx(_losses(runs[source]), rel=1e-5, abs=1e-6)
    assert open_checkpoint(run).sharded == (nproc > 1)


@pytest.mark.slow
def test_sharded_checkpoint_loads_and_exports_to_the_single_file_form(runs, tmp_path) -> None:
    ids = torch.randint(0, 32, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sharded = zoo.load(runs["two"])(ids)
        reference = zoo.load(runs["one"])(ids)  # trained on one process: equal up to fp32 rounding
    result = subprocess.run(
        [sys.executable, "-m", "zoo", "export", str(runs["two"]), str(tmp_path / "single")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    exported = open_checkpoint(tmp_path / "single")
    assert not exported.sharded and exported.step == STEPS
    assert exported.has("model.safetensors") and exported.has("optimizer.safetensors")
    with torch.no_grad():
        assert torch.equal(zoo.load(tmp_path / "single")(ids), sharded)
    # Both runs' gradients agree to fp32 rounding (test_sharded_gradients_match_one_process);
    # four AdamW steps then grow that rounding, most where a gradient is near zero and Adam's
    # update is its sign: up to 3.6e-5 apart here.
    torch.testing.assert_close(sharded, reference, rtol=1e-3, atol=1e-4)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_rank(rank: int, port: int, out: Path, timeout_s: float) -> subprocess.Popen:
    """One rank started by hand with torchrun's variables, so the test owns every process."""
    env = {
        **_env(),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    command = [sys.executable, "-m", "zoo", "train", *TRAIN, "--steps", "400", "--batch-size", "2", "--out", str(out)]
    command += ["--dist-timeout", str(timeout_s)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_a_failed_rank_ends_the_others_with_one_line_and_the_checkpoint_resumes(tmp_path, fault) -> None:
    timeout_s = 8.0
    out = tmp_path / "run"
    port = _free_port()
    ranks = [_start_rank(rank, port, out, timeout_s) for rank in (0, 1)]
    try:
        deadline = time.monotonic() + 180
        while not list_checkpoints(out) and time.monotonic() < deadline:
            assert ranks[0].poll() is None, ranks[0].communicate()[1][-2000:]
            time.sleep(0.2)
        assert list_checkpoints(out), "no checkpoint within 180 s"
        os.kill(ranks[1].pid, fault)
        hit = time.monotonic()
        _, stderr = ranks[0].communicate(timeout=timeout_s + 60)
        waited = time.monotonic() - hit
    finally:
        for proc in ranks:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert ranks[0].returncode == 2
    assert waited < timeout_s + 30
    if fault == signal.SIGSTOP:
        assert waited >= timeout_s * 0.8  # the hung peer is waited for, for --dist-timeout
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "rank 0 of 2: a collective failed" in errors[0], stderr[-2000:]
    assert "Traceback" not in stderr
    latest = open_checkpoint(list_checkpoints(out)[-1])  # verifies every shard's sha256
    assert latest.sharded and latest.step >= 2
    resumed = subprocess.run(
        [sys.executable, "-m", "zoo", "train", *TRAIN, "--steps", str(latest.step + 1), "--batch-size", "4"]
        + ["--out", str(out), "--resume", "--warmup", "1"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["step"] == latest.step + 1
    assert [row["step"] for row in read_jsonl(out / "metrics.jsonl")] == list(range(1, latest.step + 2))


_SHARDED_GRADIENTS = """
import sys
import torch
import zoo
from zoo.overrides import spec_with_backends
from zoo.training import distributed
from zoo.training.runs import resolve_spec

def loss_of(model, ids):
    return torch.nn.functional.cross_entropy(model(ids).flatten(0, 1).float(), ids.flatten())

ids = torch.randint(0, 32, (6, 32), generator=torch.Generator().manual_seed(0))
with distributed.process_group("cpu") as job:
    for output in ("save", "recompute"):
        spec, _ = spec_with_backends(resolve_spec("transmamba-tiny"), {"norm": f"torch:output={output}"})
        torch.manual_seed(0)
        whole = zoo.build(spec)
        loss_of(whole, ids).backward()  # every rank: the whole batch on one process
        torch.manual_seed(0)
        sharded = distributed.prepare_model(zoo.build(spec), context=job)
        loss_of(sharded, ids.chunk(job.world_size)[job.rank]).backward()  # FSDP2 averages the ranks' gradients
        for (name, param), reference in zip(sharded.named_parameters(), whole.parameters(), strict=True):
            torch.testing.assert_close(param.grad.full_tensor(), reference.grad, rtol=1e-5, atol=1e-6, msg=name)
        print(f"rank {job.rank} norm output {output}: gradients match", file=sys.stderr)
"""


@pytest.mark.slow
def test_sharded_gradients_match_one_process(tmp_path) -> None:
    """FSDP2 over two ranks, half the batch each, gives one process's gradients to fp32 rounding,
    with the norm's output kept and recomputed (its checkpoint runs inside FSDP's hooks)."""
    script = tmp_path / "sharded_gradients.py"
    script.write_text(_SHARDED_GRADIENTS)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    result = subprocess.run(launch, capture_output=True, text=True, env=_env(), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("gradients match") == 4


_LAST_COLLECTIVE_THEN_EXIT = """
import torch.distributed as dist
from zoo.training import distributed

with distributed.process_group("cpu") as job:  # job (and its mesh) lives on into finalisation
    for _ in range(3):
        payload = [{"step": 3}] if job.is_main else [None]
        dist.broadcast_object_list(payload, src=0)
"""


@pytest.mark.slow
def test_a_job_that_ends_on_a_collective_exits_cleanly_every_time(tmp_path) -> None:
    """A gloo worker that frees a finished broadcast while the interpreter finalises aborts the
    process; without the settling barrier in shutdown() about half of these jobs exit -6."""
    script = tmp_path / "last_collective.py"
    script.write_text(_LAST_COLLECTIVE_THEN_EXIT)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    for attempt in range(8):
        result = subprocess.run(launch, capture_output=True, text=True, env=_env(), timeout=120)
        assert result.returncode == 0, f"attempt {attempt}: {result.stderr[-2000:]}"


def test_activation_checkpointing_is_validated_in_one_line() -> None:
    from zoo.cli.train import make_train_config

    with pytest.raises(
        ZooError, match=r"^--activation-checkpointing 'some': .*none, full, selective, cheap or a block interval"
    ):
        make_train_config({"activation_checkpointing": "some"})
    for bad in (0, -2, True, 1.5):
        with pytest.raises(ZooError, match="activation-checkpointing"):
            make_train_config({"activation_checkpointing": bad})
    assert make_train_config({"activation_checkpointing": "3"}).activation_checkpointing == 3
    assert make_train_config({"activation_checkpointing": "selective"}).activation_checkpointing == "selective"


def _ac_model_and_task():
    from zoo.data import make_task
    from zoo.training.runs import build_for_task, resolve_spec

    task = make_task("mqar", seq_len=32, vocab_size=32, num_items=4)
    spec = resolve_spec("transmamba-tiny")
    spec["layers"] = spec["layers"][:4]
    torch.manual_seed(0)
    return build_for_task(spec, task), task


@pytest.mark.parametrize("policy", ["full", 2, "selective", "cheap"])
def test_activation_checkpointing_keeps_losses_and_gradients(policy) -> None:
    from zoo.training import TrainConfig, Trainer

    results = []
    for mode in ("none", policy):
        model, task = _ac_model_and_task()
        config = TrainConfig(activation_checkpointing=mode, compile=False, progress=False, device="cpu", batch_size=4)
        trainer = Trainer(model, task, config)
        calls = [0] * len(model.blocks)

        def count(index: int, calls: list[int] = calls):
            return lambda *_: calls.__setitem__(index, calls[index] + 1)

        for index, block in enumerate(model.blocks):
            block.mixer.register_forward_hook(count(index))
        inputs, targets = task.train_batch(0, 0, 4)
        loss = trainer.loss(inputs, targets)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        results.append((loss.detach(), grads, calls, set(model.state_dict())))
    (loss0, grads0, calls0, keys0), (loss1, grads1, calls1, keys1) = results
    assert calls0 == [1, 1, 1, 1]
    # recomputed blocks run their forward again in backward: checkpointing really happened
    assert calls1 == ([1, 2, 1, 2] if policy == 2 else [2, 2, 2, 2])
    assert torch.equal(loss0, loss1)
    assert keys0 == keys1  # the same state-dict keys: checkpoints do not depend on it
    for name, grad in grads0.items():
        torch.testing.assert_close(grads1[name], grad, rtol=1e-6, atol=1e-7, msg=name)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > boom.txt",))


def test_sharded_checkpoint_index_is_unpickled_through_an_allow_list(tmp_path) -> None:
    import pickle

    from zoo.checkpoint_shards import load_model_shards, read_index
    from zoo.errors import CheckpointError

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / ".metadata").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(CheckpointError, match=r"posix.system is not allowed|os.system is not allowed"):
        read_index(folder)
    with pytest.raises(CheckpointError, match="unreadable or unsafe"):
        load_model_shards(torch.nn.Linear(2, 2), folder)
    assert not (Path.cwd() / "boom.txt").exists() and not (tmp_path / "boom.txt").exists()


def test_sharded_manifest_names_stay_inside_the_checkpoint(tmp_path) -> None:
    from zoo.checkpoint_checks import check_manifest
    from zoo.errors import CheckpointError

    entry = {"bytes": 1, "sha256": "0" * 64}
    good = {"model/.metadata": entry, "model/__0_0.distcp": entry, "trainer_state.json": entry}
    check_manifest({"step": 1, "layout": "sharded", "files": good}, tmp_path / "MANIFEST.json")
    for bad in ("optimizer/../x", "other/.metadata", "model/a/b", "/etc/passwd", "model/.hidden"):
        manifest = {"step": 1, "layout": "sharded", "files": {**good, bad: entry}}
        with pytest.raises(CheckpointError, match="outside the checkpoint"):
            check_manifest(manifest, tmp_path / "MANIFEST.json")
    with pytest.raises(CheckpointError, match="outside the checkpoint"):  # single-file: no folders at all
        check_manifest({"step": 1, "files": {**good, "model.safetensors": entry}}, tmp_path / "MANIFEST.json")


@pytest.mark.slow
def test_per_block_compile_with_checkpointing_is_one_graph_per_block_shape(monkeypatch) -> None:
    """fullgraph compile around the recomputation (backend "eager": the graph-break check),
    blocks sharing graphs, and the eager numbers."""
    from torch._dynamo.utils import counters

    import zoo.compile
    from zoo.training import distributed

    options = zoo.compile.compile_options
    monkeypatch.setattr(zoo.compile, "compile_options", lambda **kw: options(**{**kw, "backend": "eager"}))
    torch._dynamo.reset()
    counters.clear()
    results = []
    for compile in (False, True):
        model, task = _ac_model_and_task()
        distributed.prepare_model(model, context=None, activation_checkpointing=2, compile=compile)
        inputs, targets = task.train_batch(0, 0, 4)
        logits = model(inputs, transpoints=[8] * len(model.blocks))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    # 4 blocks, 2 kinds (recomputed or not), one TransPoint: 2 graphs, not 4
    assert counters["stats"]["unique_graphs"] == 2
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-6, atol=1e-6)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, rtol=1e-5, atol=1e-6, msg=name)
