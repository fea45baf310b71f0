"""The PyTorch peer (``train``): the loop a PyTorch expert writes, eager and compiled, and the
one of PyTorch's own tutorial as a reference (docs/benchmarks.md's table of the peers).

- ``eager``: ``nn.Sequential``, ``F.cross_entropy`` of the logits, ``torch.optim.Adam(fused=True)``
  (one kernel updates every parameter), batches sliced from the epoch's uint8 tensor; nothing
  read back until the epoch ends (on the CPU each op runs as it is called).
- ``compile``: the same step through ``torch.compile``. Dynamo cannot put ``loss.backward()`` in
  its graph (torch 2.13), so the step is two graphs with a break between them; the row's note
  names what Dynamo counted in this very run, or why compiling failed here.
- ``dataloader``: the tutorial's loop over a ``DataLoader`` of float32 images (its sampler given
  the shared order), ``torch.optim.Adam``'s default implementation.

Its threads follow bench speed's thread policy (benchmarks/common.py thread_policy), set here
with ``torch.set_num_threads``: at its defaults on shared cores, one eager step took 0.8 ms with
one thread and 25-37 ms with two (a loaded 2-core machine).
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.peer_common import ADAM, batches, epoch_order, normalize
from shared.order import epoch_permutation


def train(mode: str, config: dict, weights: list[np.ndarray], data) -> dict:
    """Train one PyTorch row; epoch seconds, test accuracy and versions."""
    import torch
    import torch.nn.functional as F

    # The thread policy's size (OMP_NUM_THREADS, set before torch was imported), made explicit.
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    x, y, x_test, y_test = data
    batch_size, seed = config["batch_size"], config["seed"]
    model = _model(weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=ADAM["learning_rate"],
                                 betas=(ADAM["beta_1"], ADAM["beta_2"]), eps=ADAM["epsilon"],
                                 fused=mode != "dataloader")
    # Every epoch's order before any timing, as the TensorFlow rows build theirs before fit().
    if mode == "dataloader":
        return _dataloader(model, optimizer, config, data)

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
    orders = [epoch_order(x, y, seed, epoch) for epoch in range(config["epochs"])]
    orders = [(torch.from_numpy(xs), torch.from_numpy(ys.astype(np.int64))) for xs, ys in orders]
    try:
        seconds = _timed_epochs(train_step, orders, batch_size)
    except Exception as e:  # torch.compile needs a working C++ toolchain; say why it failed
        if mode != "compile":
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        return {"epoch_seconds": [], "test_accuracy": float("nan"),
                "note": f"torch.compile failed here: {type(e).__name__}: {first}",
                "environment": {"torch": torch.__version__}}
    return _answer(model, x_test, y_test, seconds, _graph_breaks() if mode == "compile" else "")


def _model(weights: list[np.ndarray]):
    """The tutorial's model in PyTorch, holding the Keras model's initial ``weights``."""
    import torch

    w1, b1, w2, b2 = weights
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(w1.shape[0], w1.shape[1]),
                                torch.nn.ReLU(), torch.nn.Linear(w1.shape[1], w2.shape[1]))
    with torch.no_grad():  # Keras keeps a kernel as (in, out), PyTorch as (out, in)
        for layer, kernel, bias in ((model[1], w1, b1), (model[3], w2, b2)):
            layer.weight.copy_(torch.from_numpy(kernel.T.copy()))
            layer.bias.copy_(torch.from_numpy(bias))
    return model


def _timed_epochs(train_step, orders, batch_size: int) -> list[float]:
    """Seconds of each epoch: ``train_step`` on each batch of that epoch's order."""
    seconds = []
    for xs, ys in orders:
        start = time.perf_counter()
        for part in batches(len(xs), batch_size):
            train_step(xs[part], ys[part])
        seconds.append(time.perf_counter() - start)
    return seconds


def _graph_breaks() -> str:
    """What Dynamo counted while this process compiled the step: its graphs and graph breaks."""
    from torch._dynamo.utils import counters

    breaks = counters["graph_break"]
    reasons = "; ".join(f"{reason.splitlines()[0][:60]} x{n}" for reason, n in breaks.items())
    return (f"torch.compile: {counters['stats']['unique_graphs']} graph(s), {sum(breaks.values())} "
            f"graph break(s)" + (f": {reasons}" if reasons else ""))


def _dataloader(model, optimizer, config: dict, data) -> dict:
    """The reference row: the tutorial's loop over a DataLoader, in the shared order."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    x, y, x_test, y_test = data
    dataset = TensorDataset(torch.from_numpy(normalize(x)), torch.from_numpy(y.astype(np.int64)))
    seconds = []
    for epoch in range(config["epochs"]):
        order = epoch_permutation(config["seed"], epoch, len(x)).tolist()  # outside the timer
        start = time.perf_counter()
        for images, labels in DataLoader(dataset, batch_size=config["batch_size"], sampler=order):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return _answer(model, x_test, y_test, seconds, "")


def _answer(model, x_test: np.ndarray, y_test: np.ndarray, seconds: list[float], note: str) -> dict:
    """A row's answer: epoch seconds, test accuracy, versions and threads."""
    import torch

    with torch.no_grad():
        predicted = model(torch.from_numpy(normalize(x_test))).argmax(dim=1).numpy()
    return {"epoch_seconds": seconds, "test_accuracy": float(np.mean(predicted == y_test)),
            "note": note, "environment": {"torch": torch.__version__},
            "threads": {"torch": torch.get_num_threads()}}
