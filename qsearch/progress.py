"""A terminal progress bar for one training run, fed by the learners' progress callback."""
from __future__ import annotations

import sys

from tqdm import tqdm


class TrainProgress:
    def __init__(self, total_steps: int):
        self.bar = tqdm(total=total_steps, unit="step", file=sys.stderr, dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
        self.last_return = None

    def update(self, metrics: dict) -> None:
        self.bar.update(metrics["step"] - self.bar.n)
        if metrics.get("eval_return_mean") is not None:
            self.last_return = metrics["eval_return_mean"]
        postfix = {}
        if metrics.get("steps_per_s"):
            postfix["steps/s"] = f"{metrics['steps_per_s']:.0f}"
        if self.last_return is not None:
            postfix["eval return"] = f"{self.last_return:.1f}"
        self.bar.set_postfix(postfix, refresh=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
