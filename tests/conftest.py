"""Test-session settings shared by every test folder.

TRITON_INTERPRET must be set before any @triton.jit function is defined, so it is set
here, before the plugins (which import kernels lazily) are used: to 1 (Triton's interpreter,
the kernels run on CPU tensors) where no CUDA device is visible, to 0 where one is (the GPU
tests run the compiled kernels). An explicit TRITON_INTERPRET in the environment wins.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch  # importing torch defines no Triton kernel

os.environ.setdefault("TRITON_INTERPRET", "0" if torch.cuda.is_available() else "1")
os.environ.setdefault("MAMBA_DETERMINISTIC", "1")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "inductor"))

import pytest  # noqa: E402

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (the CPU path of the same logic is tested separately)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
