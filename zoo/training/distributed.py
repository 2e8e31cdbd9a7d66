"""Data-parallel training over several processes with PyTorch's own engine.

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`process_group` turns that into a
process group (NCCL on CUDA, gloo on CPU) and a one-dimensional ``DeviceMesh``;
:func:`prepare_model` applies activation checkpointing, per-block ``torch.compile`` and
FSDP2 (``fully_shard`` on every block, then on the root). Every collective here is
``torch.distributed``'s own: this module decides what runs where, not how bytes move.

Blocks are changed in place (their ``forward`` is replaced), never wrapped, so parameter
names and state-dict keys are the same with or without checkpointing, compile or FSDP: a
checkpoint written by any of them loads into any other.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from zoo.errors import ZooError

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
T = TypeVar("T")
# how long shutdown() leaves the GIL to gloo's worker threads after the last collective
_WORKER_SETTLE_S = 0.1


class RankFailedError(ZooError):
    """A collective failed or timed out: another process of the job died, hung or was stopped."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    mesh: Any  # torch.distributed.device_mesh.DeviceMesh, one dimension ("dp")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_current: Distributed | None = None


def current() -> Distributed | None:
    """The job this process belongs to, or None when it trains alone."""
    return _current


def is_main_process() -> bool:
    return _current is None or _current.is_main


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_ENV)


def _device_for(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        # one GPU per process: torchrun's LOCAL_RANK picks it, whatever index the flag named
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init(device: str = "auto", timeout_s: float = 600.0) -> Distributed:
    """Join the job torchrun started; ``timeout_s`` bounds every collective (a dead or hung
    peer becomes an error on the others after at most that long, not a hang)."""
    global _current
    if _current is not None:
        return _current
    from torch.distributed.device_mesh import init_device_mesh

    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    where = _device_for(device, local_rank)
    backend = "nccl" if where.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        timeout=timedelta(seconds=timeout_s),
        device_id=where if where.type == "cuda" else None,
    )
    mesh = init_device_mesh(where.type, (world_size,), mesh_dim_names=("dp",))
    _current = Distributed(rank, world_size, local_rank, where, mesh)
    return _current


def shutdown() -> None:
    """Leave the job once every rank has finished its collectives.

    A gloo worker thread frees each finished collective after its caller has moved on, and
    freeing a tensor that Python held needs the GIL; a thread that asks for it while the
    interpreter finalises aborts the process (SIGABRT after a successful run; PyTorch's
    GIL acquire in its tensor decref does not check for finalisation). So the last
    collective is a barrier whose Work this thread holds: the pause lets the workers drop
    their references (no GIL needed while ours is alive), and the barrier, with every
    collective it waited for, is then freed here, under the GIL."""
    global _current
    _current = None
    if not dist.is_initialized():
        return
    last = dist.barrier(async_op=True)
    last.wait()
    time.sleep(_WORKER_SETTLE_S)  # releases the GIL
    del last
    dist.destroy_process_group()


def _stop_on_sigterm(signum: int, frame: Any) -> NoReturn:
    rank = os.environ.get("RANK", "?")
    raise RankFailedError(
        f"rank {rank} stopped by {signal.Signals(signum).name}: torchrun stops every rank when one fails"
    )


def _collective_failure(exc: BaseException) -> bool:
    """A failed or timed-out collective: c10d's own errors, DCP's wrapper of them, or a
    backend's RuntimeError (gloo raises plain ones) from inside torch.distributed."""
    from torch.distributed.checkpoint.api import CheckpointException

    if isinstance(exc, (dist.DistError, CheckpointException)):
        return True
    if not isinstance(exc, RuntimeError) or exc.__traceback__ is None:
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return f"torch{os.sep}distributed{os.sep}" in frames[-1].filename


@contextlib.contextmanager
def process_group(device: str = "auto", timeout_s: float = 600.0) -> Iterator[Distributed | None]:
    """Under torchrun: join the job for the block and leave it after; else yield None.

    A collective that fails (a peer died: gloo sees the closed socket at once; a peer hangs:
    after ``timeout_s``) comes out as one :class:`RankFailedError` line, and so does the
    SIGTERM with which torchrun stops the surviving ranks."""
    if not launched_by_torchrun():
        yield None
        return
    context = init(device, timeout_s)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    failed = False
    try:
        yield context
        shutdown()  # its barrier is a collective too: a peer lost now is reported as any other
    except BaseException as exc:
        failed = True
        if not _collective_failure(exc) or os.environ.get("ZOO_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RankFailedError(
            f"rank {context.rank} of {context.world_size}: a collective failed ({first}); "
            "another rank died, hung past --dist-timeout or was stopped"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if failed:
            # Leaving the group is itself a collective on some backends: after a failure,
            # let the process exit instead of waiting for peers that will not come; the
            # pause still lets gloo's workers free the failed collectives (see shutdown()).
            global _current
            _current = None
            time.sleep(_WORKER_SETTLE_S)


def exec_torchrun(nproc: int, argv: Sequence[str]) -> NoReturn:
    """Replace this process with ``torchrun --standalone --nproc_per_node N -m zoo ARGV``."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "zoo",
        *argv,
    ]
    print(f"launching: {shlex.join(command[1:])}", file=sys.stderr, flush=True)
    os.execv(sys.executable, command)


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N`` (the children must not launch again)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


# ---------------------------------------------------------------- the model


def checkpointed_blocks(n_blocks: int, policy: str | int) -> list[int]:
    """Indices of the blocks whose activations are recomputed: none, all (``full``,
    ``selective`` and ``cheap``), or every k-th."""
    if policy == "none":
        return []
    if policy in ("full", "selective", "cheap"):
        return list(range(n_blocks))
    return [i for i in range(n_blocks) if i % int(policy) == int(policy) - 1]


def _run_block(block: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
    # the class's forward: the instance attribute is what prepare_model puts in its place
    return type(block).forward(block, *args, **kwargs)


def _recomputed_runner(context_fn: Any = None) -> Any:
    """A block runner under ``torch.utils.checkpoint``: full recomputation, or selective with
    a policy's ``context_fn`` (zoo.training.recompute)."""
    from torch.utils.checkpoint import checkpoint

    extra = {} if context_fn is None else {"context_fn": context_fn}

    def _run_block_recomputed(block: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        # non-reentrant: a higher-order op under torch.compile, and compatible with FSDP2's hooks
        return checkpoint(_run_block, block, *args, use_reentrant=False, **extra, **kwargs)

    return _run_block_recomputed


def prepare_model(
    model: nn.Module,
    *,
    context: Distributed | None,
    activation_checkpointing: str | int = "none",
    compile: bool = False,
    param_dtype: torch.dtype | None = None,
    recompile_limit: int | None = None,
    compile_backend: str = "inductor",
) -> nn.Module:
    """Activation checkpointing, per-block compile and FSDP2 on ``model.blocks``, in place.

    Order matters: checkpointing goes inside the compiled region (torch.compile sees the
    recomputation), and FSDP's all-gather hooks stay outside it, on the block's ``__call__``.
    All blocks share one compiled region, so blocks of one shape compile once.
    ``activation_checkpointing``: ``none``; ``full`` (a block keeps only its input and runs
    again in the backward); ``selective`` (every block keeps its matmul, attention and SSD
    outputs and recomputes the rest: :mod:`zoo.training.recompute`); ``cheap`` (every block
    recomputes only the custom ops its backends declare cheap, the Triton conv and norm); k
    (``full`` on every k-th block).
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ZooError(
            f"{type(model).__name__} has no .blocks ModuleList; activation checkpointing and FSDP "
            "work per block and need one"
        )
    recomputed = set(checkpointed_blocks(len(blocks), activation_checkpointing))
    plain = _run_block
    if activation_checkpointing in ("selective", "cheap"):
        from zoo.training.recompute import policy_context

        recompute = _recomputed_runner(policy_context(activation_checkpointing))
    else:
        recompute = _recomputed_runner()
    if compile:
        from zoo.compile import compiled

        name = getattr(getattr(model, "spec", None), "name", None) or "the model"
        limit = recompile_limit or 8 + 2 * len(blocks)
        options = {"recompile_limit": limit, "backend": compile_backend}
        if len(recomputed) < len(blocks):
            plain = compiled(_run_block, what=f"the blocks of {name} one by one", **options)
        if recomputed:
            recompute = compiled(recompute, what=f"the recomputed blocks of {name}", **options)
    for index, block in enumerate(blocks):
        if index in recomputed:
            block.forward = functools.partial(recompute, block)
        elif compile:
            block.forward = functools.partial(plain, block)
    if context is None:
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for index, block in enumerate(blocks):
        # the last block's parameters are needed again at once by the backward pass
        fully_shard(block, mesh=context.mesh, mp_policy=policy, reshard_after_forward=index < len(blocks) - 1)
    fully_shard(model, mesh=context.mesh, mp_policy=policy)
    return model


# ---------------------------------------------------------------- the step


def data_parallel_mean(loss_sum: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """This rank's share of the global mean cross-entropy, from its loss summed over its scored
    positions (from logits or the model's chunked loss, ``reduction="sum"``): ``loss_sum *
    world size / scored positions of every rank``. FSDP averages gradients over ranks, so the
    gradient is that of the one-process mean over the whole global batch."""
    count = (targets != ignore_index).sum().to(loss_sum.dtype)
    dist.all_reduce(count)  # stays on the device: no host sync
    return loss_sum * dist.get_world_size() / count


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def grad_norm(parameters: Sequence[nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """The global gradient norm over sharded (DTensor) gradients; clips to ``max_norm`` if given."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    if hasattr(total, "full_tensor"):  # a DTensor with a pending reduction over the shards
        total = total.full_tensor()
    if max_norm is not None:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)
    return total


def all_finite(parameters: Sequence[nn.Parameter]) -> bool:
    """Every shard on every rank holds only finite values."""
    local = [p.to_local() if hasattr(p, "to_local") else p for p in parameters]
    bad = torch.stack([~t.detach().isfinite().all() for t in local]).sum().to(torch.long)
    dist.all_reduce(bad)
    return int(bad) == 0


def from_main(compute: Callable[[], T]) -> T:
    """Run ``compute`` on rank 0 and give every rank its result (or its ZooError, raised on
    every rank, so that no rank waits in a collective for a rank that gave up)."""
    if _current is None:
        return compute()
    payload: list[Any] = [None]
    if _current.is_main:
        try:
            payload[0] = ("ok", compute())
        except ZooError as exc:
            payload[0] = ("error", exc)
    dist.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if kind == "error":
        raise value
    return value


def barrier() -> None:
    if _current is not None:
        dist.barrier()


def describe_batch(batch_size: int, grad_accum: int, context: Distributed | None) -> str:
    world = context.world_size if context is not None else 1
    return (
        f"global batch {batch_size * world * grad_accum} sequences "
        f"(per rank {batch_size} x {world} ranks x {grad_accum} accumulation)"
    )


def eval_share(
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]], context: Distributed, ignore_index: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Rank ``r``'s evaluation batches: ``r``, ``r + W``, ... Every rank runs the same number of
    forwards (FSDP's are collective): a rank short of one runs a copy of the first batch with
    every target ignored, which scores nothing."""
    rounds = -(-len(batches) // context.world_size)
    share = []
    for index in range(context.rank, rounds * context.world_size, context.world_size):
        if index < len(batches):
            share.append(batches[index])
        else:
            inputs, targets = batches[0]
            share.append((inputs, torch.full_like(targets, ignore_index)))
    return share
