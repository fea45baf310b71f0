"""The PyTorch peer: the loop a PyTorch user writes, eager and with ``torch.compile``.

- ``torch eager``: ``nn.Sequential(Flatten, Linear, ReLU, Linear)``, ``F.cross_entropy`` of the
  logits (peers.LOSS), ``torch.optim.Adam`` at Keras' settings (peers.ADAM), one Python call per
  batch; nothing is read back until the epoch ends (PyTorch on the CPU runs each op as it is
  called, so the epoch's end is also where the work ends).
- ``torch compile``: the same step function (forward, backward and the optimizer's update)
  through ``torch.compile`` (TorchInductor, which writes and compiles C++ for the CPU; the first
  epoch pays for it). If compiling fails on this machine, the row says so in its note and times
  nothing.

PyTorch's threads follow bench speed's thread policy (benchmarks/common.py thread_policy: as
many as the cores the process may use, ``OMP_WAIT_POLICY=PASSIVE``), set here explicitly with
``torch.set_num_threads`` and recorded in the row. Left at its defaults on shared cores, its
threads spin and wait for each other: measured on a loaded 2-core machine, one eager step took
0.8 ms with one thread and 25-37 ms with two.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.peers import ADAM, batches, epoch_order


def train(implementation: str, mode: str, config: dict, weights: list[np.ndarray], data) -> dict:
    """Train one PyTorch row; epoch seconds, test accuracy and versions."""
    import torch
    import torch.nn.functional as F

    # The thread policy's size (OMP_NUM_THREADS, set before torch was imported), made explicit.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    x, y, x_test, y_test = data
    batch_size, seed = config["batch_size"], config["seed"]
    w1, b1, w2, b2 = weights
    hidden = w1.shape[1]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(w1.shape[0], hidden),
                                torch.nn.ReLU(), torch.nn.Linear(hidden, w2.shape[1]))
    with torch.no_grad():  # Keras keeps a kernel as (in, out), PyTorch as (out, in)
        for layer, kernel, bias in ((model[1], w1, b1), (model[3], w2, b2)):
            layer.weight.copy_(torch.from_numpy(kernel.T.copy()))
            layer.bias.copy_(torch.from_numpy(bias))
    optimizer = torch.optim.Adam(model.parameters(), lr=ADAM["learning_rate"],
                                 betas=(ADAM["beta_1"], ADAM["beta_2"]), eps=ADAM["epsilon"])

    def step(x_u8, labels):
        images = x_u8.to(torch.float32) * (1.0 / 255.0)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    train_step = step
    if mode == "compile":
        train_step = torch.compile(step)
    # Every epoch's order before any timing, as the TensorFlow rows build theirs before fit().
    orders = [epoch_order(x, y, seed, epoch) for epoch in range(config["epochs"])]
    orders = [(torch.from_numpy(xs), torch.from_numpy(ys.astype(np.int64))) for xs, ys in orders]
    seconds = []
    try:
        for xs, ys in orders:
            start = time.perf_counter()
            for part in batches(len(xs), batch_size):
                train_step(xs[part], ys[part])
            seconds.append(time.perf_counter() - start)
    except Exception as e:  # torch.compile needs a working C++ toolchain; say why it failed
        if mode != "compile":
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        return {"epoch_seconds": [], "test_accuracy": float("nan"),
                "note": f"torch.compile failed here: {type(e).__name__}: {first}",
                "environment": {"torch": torch.__version__}}
    with torch.no_grad():
        images = torch.from_numpy(x_test).to(torch.float32) * (1.0 / 255.0)
        predicted = model(images).argmax(dim=1).numpy()
    return {"epoch_seconds": seconds, "test_accuracy": float(np.mean(predicted == y_test)),
            "note": "", "environment": {"torch": torch.__version__},
            "threads": {"torch": torch.get_num_threads()}}
