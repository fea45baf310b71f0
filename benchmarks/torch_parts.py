"""Why the PyTorch tutorial's loop is slower than the expert's: its two parts, timed apart.

    python -m benchmarks.torch_parts            (needs torch: pip install -e '.[peers]')

- An epoch of batches from a ``DataLoader`` over a ``TensorDataset`` (32 single-image lookups and
  a ``torch.stack`` per batch), against slicing the epoch's tensor and normalising each slice,
  training nothing.
- One eager training step at 128 hidden units with ``torch.optim.Adam``'s default implementation
  (``foreach``) and with ``fused=True``.

Synthetic images of Fashion-MNIST's shape (timing does not depend on the pixels); the thread
policy of ``bench speed --threads all`` (OpenMP sized to the cores, not spinning). Prints one
JSON line: each part's seconds, every repeat and their median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable, Sequence


def measure(images: int = 60_000, steps: int = 400, repeats: int = 5, hidden: int = 128) -> dict:
    """Seconds of each part: an epoch of ``images`` handed out by a DataLoader or by slicing, and
    ``steps`` training steps with each Adam; ``repeats`` times each, after a warm-up."""
    from benchmarks.common import thread_policy
    from benchmarks.limits import timed

    thread_policy("all")  # before torch starts: OpenMP reads it once
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images, 28, 28), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, 10, (images,), generator=generator)
    order = torch.randperm(images, generator=generator).tolist()
    dataset = TensorDataset(x.to(torch.float32) * (1.0 / 255.0), y)

    def dataloader_epoch():
        for _ in DataLoader(dataset, batch_size=32, sampler=order):
            pass

    def sliced_epoch():
        for start in range(0, images, 32):
            x[start:start + 32].to(torch.float32) * (1.0 / 255.0)

    parts = {"dataloader_epoch_s": dataloader_epoch, "sliced_epoch_s": sliced_epoch,
             "adam_foreach_step_s": _steps_with(x[:32], y[:32], hidden, steps, fused=False),
             "adam_fused_step_s": _steps_with(x[:32], y[:32], hidden, steps, fused=True)}
    result = {"images": images, "steps": steps, "hidden_units": hidden, "torch": torch.__version__,
              "threads": torch.get_num_threads()}
    for name, run in parts.items():
        seconds = timed(run, repeats)  # after one untimed call, which warms up
        if name.endswith("_step_s"):
            seconds = [s / steps for s in seconds]
        result[name] = {"median": statistics.median(seconds), "repeats": seconds}
    return result


def _steps_with(images_u8, labels, hidden: int, steps: int, *, fused: bool) -> Callable[[], None]:
    """``steps`` training steps on one batch, with Adam's fused or foreach update, as a call."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=fused)

    def run():
        for _ in range(steps):
            loss = F.cross_entropy(model(images_u8.to(torch.float32) * (1.0 / 255.0)), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m benchmarks.torch_parts [--images N --steps N --repeats N]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.torch_parts",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60_000, help="images per epoch (default 60000)")
    parser.add_argument("--steps", type=int, default=400, help="training steps per repeat (default 400)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each part (default 5)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.images, args.steps, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
