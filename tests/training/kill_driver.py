"""Subprocess body of the SIGKILL test: a slowed-down stand-in training run with checkpoints."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


class SlowTask:
    """The MQAR task with a pause per batch, so a kill lands mid-run."""

    def __init__(self, pause: float) -> None:
        from zoo.data import make_task

        self.inner = make_task("mqar", seq_len=32, vocab_size=64, num_items=4, eval_examples=32)
        self.pause = pause
        self.name, self.metric = self.inner.name, self.inner.metric
        self.vocab_size, self.seq_len = self.inner.vocab_size, self.inner.seq_len

    def train_batch(self, step: int, micro: int, batch_size: int):
        time.sleep(self.pause)
        return self.inner.train_batch(step, micro, batch_size)

    def eval_batches(self, batch_size: int):
        return self.inner.eval_batches(batch_size)

    def describe(self):
        return self.inner.describe()


def main() -> None:
    import torch
    from standin import StandinLM

    from zoo.training import TrainConfig, Trainer

    out, steps, pause, resume = (
        sys.argv[1],
        int(sys.argv[2]),
        float(sys.argv[3]),
        "--resume" in sys.argv,
    )
    torch.manual_seed(0)
    config = TrainConfig(
        steps=steps,
        batch_size=8,
        lr=1e-2,
        warmup_steps=3,
        save_every=2,
        keep_last=2,
        compile=False,
        progress=False,
        device="cpu",
    )
    result = Trainer(StandinLM(), SlowTask(pause), config, out_dir=out).fit(resume=resume)
    print(repr(result.final_loss))


if __name__ == "__main__":
    main()
