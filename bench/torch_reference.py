#!/usr/bin/python3
"""torch_reference.py - the same training epochs in PyTorch, for side-by-side numbers in
docs/PERFORMANCE.md. Not part of any test; needs Debian's python3-torch, run with Debian's own
interpreter (/usr/bin/python3), which uses the same OpenBLAS as backprop.

    /usr/bin/python3 bench/torch_reference.py [--threads 1] [--batches 1,10,128,1024] [--big]
                                              [--optimizer sgd|adam] [--conv] [--lstm] [--gru]

Each epoch is 60,000 samples: a shuffled index per epoch, the mini-batch gathered from one float
tensor, forward, backward, the optimiser's step (plain SGD, or torch.optim.Adam with its default
betas and eps, the counterpart of bench_features' adam line), as a minimal hand-written PyTorch
loop does.

--conv times Nielsen's two-stage network3 with ReLU instead, the counterpart of
bench_conv_epoch: Conv2d(1, 20, 5), ReLU, MaxPool2d(2), Conv2d(20, 40, 5), ReLU, MaxPool2d(2),
Linear(640, 100), ReLU, Linear(100, 10), LogSoftmax with NLLLoss, SGD at lr 0.03 with
Nielsen's L2 of lambda 0.1 over n = 50,000 as weight_decay (applied to every parameter, as
SGD's weight_decay does; ours spares the biases, a difference too small to time). Its epochs
are 50,000 images, as bench_conv_epoch's are, and it warms up for 50 steps: the first steps of
oneDNN's convolutions are several times slower than the rest.

--lstm times row-by-row MNIST with nn.LSTM(28, 128) (each image 28 steps of 28 pixels), its
last step's hidden state into Linear(128, 10) and LogSoftmax with NLLLoss, plain SGD: the
counterpart of `bench_conv_epoch --arch lstm:128,dense:10:softmax`, 50,000
images an epoch after 50 warm-up steps. --gru does the same with nn.GRU(28, 128), against
`--arch gru:128,dense:10:softmax`.
"""
import argparse
import os
import time

import numpy as np
import torch


def load_mnist():
    d = os.environ.get("BACKPROP_MNIST_DIR",
                       os.path.join(os.environ.get("BACKPROP_DATA_DIR",
                                                   os.path.expanduser("~/.cache/backprop")),
                                    "mnist"))
    with open(os.path.join(d, "train-images-idx3-ubyte"), "rb") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with open(os.path.join(d, "train-labels-idx1-ubyte"), "rb") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))


def epoch_seconds(model, loss_fn, one_hot, x, y, batch, max_samples, optimizer="sgd"):
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    elif optimizer == "nielsen-l2":
        opt = torch.optim.SGD(model.parameters(), lr=0.03, weight_decay=0.1 / 50000)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
    n = min(len(x), max_samples)
    order = torch.randperm(len(x))[:n]
    t0 = time.perf_counter()
    for s in range(0, n - batch + 1, batch):
        idx = order[s:s + batch]
        xb, yb = x[idx], y[idx]
        target = torch.nn.functional.one_hot(yb, 10).float() if one_hot else yb
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), target)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) * len(x) / (n // batch * batch), n < len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="1,10,32,128,1024")
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--conv", action="store_true")
    ap.add_argument("--lstm", action="store_true")
    ap.add_argument("--gru", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = load_mnist()
    if args.conv:
        return conv_epochs(args, x[:50000].reshape(-1, 1, 28, 28).contiguous(), y[:50000])
    if args.lstm or args.gru:
        return recurrent_epochs(args, "gru" if args.gru else "lstm",
                                x[:50000].reshape(-1, 28, 28).contiguous(), y[:50000])
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"blas: {torch.__config__.show().count('OpenBLAS') and 'OpenBLAS' or 'other'}")
    for b in [int(v) for v in args.batches.split(",")]:
        if args.big:
            model = torch.nn.Sequential(torch.nn.Linear(784, 1024), torch.nn.ReLU(),
                                        torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                        torch.nn.Linear(1024, 10), torch.nn.LogSoftmax(dim=1))
            loss_fn, one_hot, name = torch.nn.NLLLoss(), False, "784-1024-1024-10"
            limit = 60000 if b >= 32 else 3000
        else:
            model = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.Sigmoid(),
                                        torch.nn.Linear(100, 10), torch.nn.Sigmoid())
            loss_fn, one_hot, name = torch.nn.BCELoss(reduction="sum"), True, "784-100-10"
            limit = 60000 if b >= 10 else 12000
        epoch_seconds(model, loss_fn, one_hot, x, y, b, 20 * b, args.optimizer)  # warm-up
        s, scaled = epoch_seconds(model, loss_fn, one_hot, x, y, b, limit, args.optimizer)
        print(f"{name:17s} torch {args.optimizer:4s} {args.threads} thr  B={b:5d}  "
              f"{s:8.3f} s/epoch  "
              f"{60000 / s:9.0f} samples/s{'  scaled' if scaled else ''}", flush=True)


def conv_epochs(args, x, y):
    nn = torch.nn
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"mkldnn (oneDNN) {torch.backends.mkldnn.is_available()}")
    for b in [int(v) for v in args.batches.split(",")]:
        torch.manual_seed(1)
        model = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(20, 40, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                              nn.Linear(640, 100), nn.ReLU(), nn.Linear(100, 10),
                              nn.LogSoftmax(dim=1))
        loss_fn = nn.NLLLoss()
        epoch_seconds(model, loss_fn, False, x, y, b, 50 * b, "nielsen-l2")  # warm-up
        s, _ = epoch_seconds(model, loss_fn, False, x, y, b, len(x), "nielsen-l2")
        print(f"network3-relu     torch sgd  {args.threads} thr  B={b:5d}  {s:8.3f} s/epoch  "
              f"{len(x) / s:9.0f} samples/s", flush=True)


class LastStep(torch.nn.Module):
    """nn.LSTM or nn.GRU over the rows, then the classifier on the last step's hidden state."""

    def __init__(self, kind, hidden=128):
        super().__init__()
        self.rnn = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(28, hidden,
                                                                       batch_first=True)
        self.out = torch.nn.Linear(hidden, 10)

    def forward(self, x):
        _, state = self.rnn(x)
        h = state if isinstance(self.rnn, torch.nn.GRU) else state[0]
        return torch.log_softmax(self.out(h[-1]), dim=1)


def recurrent_epochs(args, kind, x, y):
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for b in [int(v) for v in args.batches.split(",")]:
        torch.manual_seed(1)
        model = LastStep(kind)
        loss_fn = torch.nn.NLLLoss()
        epoch_seconds(model, loss_fn, False, x, y, b, 50 * b)  # warm-up
        s, _ = epoch_seconds(model, loss_fn, False, x, y, b, len(x))
        print(f"{kind}128-rows      torch sgd  {args.threads} thr  B={b:5d}  {s:8.3f} s/epoch  "
              f"{len(x) / s:9.0f} samples/s", flush=True)


if __name__ == "__main__":
    main()
