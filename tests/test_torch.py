#!/usr/bin/env python3
"""test_torch.py - a model trained by `backprop train --save` on real MNIST, opened in PyTorch
by examples/load_in_torch.py, gives `backprop predict`'s outputs on 1,000 test images: the same
argmax for every image and every output within 1e-5. Four times: a dense net with batch norm
and dropout; a conv net (CONV_ARCH: Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d), trained by
`backprop train --arch` when the CLI has the flag, else by TRAIN_ARCH_MODEL
(tests/train_arch_model.c, one epoch through the public API); and the recurrent layers
(RECURRENT: nn.LSTM reading the image by rows, nn.GRU by columns). And the file holds the net
that was trained: `backprop predict` on it scores on the 10,000 test images what train
reported for the net before saving it (a writer and a reader that garbled the tensors alike
would agree with PyTorch and still have lost the net).

    test_torch.py BACKPROP_CLI LOAD_IN_TORCH_PY TRAIN_ARCH_MODEL

PyTorch runs under Debian's /usr/bin/python3 (python3-torch; BACKPROP_TORCH_PYTHON overrides),
which need not be the python3 that runs this script. TAP on stdout; a skip with its reason
when torch cannot be imported there.
"""
import json
import os
import subprocess
import sys
import tempfile

TORCH_PYTHON = os.environ.get("BACKPROP_TORCH_PYTHON", "/usr/bin/python3")
COUNT = 1000
TOLERANCE = 1e-5
# train evaluates in batches of 256 and predict one sample at a time, which may round an
# output's last bit differently (predict's usage says so) and so flip a near-tie: allow that
# many images of 10,000. A garbled file loses thousands.
ACCURACY_SLACK = 2
# The image layers and their options in one stack (the same as test_onnx.py's conv net):
# Conv2d with padding and with stride, BatchNorm2d, MaxPool2d, AvgPool2d, dropout between
# images, the flattening into Linear.
CONV_ARCH = ("conv:6x5x5:linear:p2,batchnorm:relu,maxpool:2,conv:8x3x3:tanh:s2,avgpool:2,"
             "dropout:0.2,dense:32:sigmoid,dense:10:softmax")
# Each recurrent kind on one of the two readings of an image, and each reading asked for in
# one of the two ways: the LSTM by rows through --sequence (the file's architecture then says
# plain lstm:32, the default), the GRU by columns through its own ':cols' (which the file keeps,
# and which load_in_torch.py must turn into a transpose). One epoch of Adam over all 50,000
# training images is about a second at 32 units, so no fewer are needed. A 28-step recursion
# in float32 keeps within TOLERANCE: measured 8.5e-7 (LSTM) and 1.4e-6 (GRU), against the conv
# net's 6.2e-7; reading the GRU's image by rows instead of by columns is off by up to 0.9999.
RECURRENT = [("lstm", "lstm:32,dense:10:softmax", ["--sequence", "rows"]),
             ("gru", "gru:32:cols,dense:10:softmax", [])]
RECURRENT_OPTIONS = ["--cost", "log-likelihood", "--optimizer", "adam", "--eta", "0.01"]


def mnist_dir():
    if os.environ.get("BACKPROP_MNIST_DIR"):
        return os.environ["BACKPROP_MNIST_DIR"]
    base = os.environ.get("BACKPROP_DATA_DIR") or os.path.join(os.environ.get("HOME", "."),
                                                              ".cache", "backprop")
    return os.path.join(base, "mnist")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"# {' '.join(cmd)} exited {r.returncode}")
        for line in (r.stdout + r.stderr).splitlines()[-20:]:
            print(f"#   {line}")
    return r


def read_predict_csv(path):
    """backprop predict's CSV: {index: (label, predicted, outputs)}."""
    rows = {}
    with open(path) as f:
        header = f.readline().strip().split(",")
        assert header[:3] == ["index", "label", "predicted"], header
        for line in f:
            v = line.strip().split(",")
            rows[int(v[0])] = (int(v[1]), int(v[2]), [float(x) for x in v[3:]])
    return rows


def read_example_csv(path):
    """load_in_torch.py's CSV: {index: (predicted, outputs)}."""
    rows = {}
    with open(path) as f:
        for line in f:
            v = line.strip().split(",")
            rows[int(v[0])] = (int(v[1]), [float(x) for x in v[2:]])
    return rows


def train_arch(cli, data, arch, options, model):
    """(ok, test accuracy the trainer reported) for `backprop train --arch ARCH` trained one
    epoch into `model`."""
    summary = model + ".json"
    r = run([cli, "train", "--data", data, "--epochs", "1", "--arch", arch, *options,
             "--summary-json", summary, "--save", model])
    if r.returncode != 0:
        return False, None
    with open(summary) as f:
        return True, json.load(f)["test_accuracy"]


def train_conv(cli, helper, data, model):
    """(ok, test accuracy the trainer reported) for CONV_ARCH trained into `model`."""
    r = run([cli, "train", "--help"])
    if r.returncode == 0 and "--arch" in r.stdout + r.stderr:
        return train_arch(cli, data, CONV_ARCH, ["--cost", "log-likelihood", "--init", "he",
                                                 "--eta", "0.05", "--batch", "10"], model)
    print("# backprop train has no --arch: the conv net comes from train_arch_model")
    r = run([helper, data, CONV_ARCH, model])
    if r.returncode != 0:
        return False, None
    return True, json.loads(r.stdout)["test_accuracy"]


def check_model(cli, example, data, images, tmp, name, model, trained, first):
    """Tests first..first+3 on a saved model: predict and PyTorch run, the file scores as the
    trained net did, argmax identical, outputs within TOLERANCE. True when all pass."""
    ours, theirs = (os.path.join(tmp, f"{name}-{who}.csv") for who in ("library", "torch"))
    r1 = run([cli, "predict", "--model", model, "--data", data, "--set", "test",
              "--out", ours])
    r2 = run([TORCH_PYTHON, example, model, "--images", images, "--first", "0",
              "--count", str(COUNT), "--out", theirs])
    ok = r1.returncode == 0 and r2.returncode == 0
    print(f"{'ok' if ok else 'not ok'} {first} - {name}: backprop predict, and PyTorch on "
          f"{COUNT} test images (load_state_dict strict)")
    if not ok:
        for k in range(first + 1, first + 4):
            print(f"not ok {k} - {name}: not run")
        return False

    every = read_predict_csv(ours)
    right = sum(label == predicted for label, predicted, _ in every.values())
    n = len(every)
    print(f"# {name}: test accuracy: {trained:.4f} trained, {right / n:.4f} from the file "
          f"({n} images)")
    loaded_ok = n == 10000 and abs(right - round(trained * n)) <= ACCURACY_SLACK
    print(f"{'ok' if loaded_ok else 'not ok'} {first + 1} - {name}: the file scores as the "
          "trained net did")

    b = read_example_csv(theirs)
    same_rows = sorted(b) == list(range(COUNT)) and all(i in every for i in b)
    agree = sum(every[i][1] == b[i][0] for i in b) if same_rows else 0
    print(f"# {name}: argmax agrees on {agree} of {COUNT} images")
    print(f"{'ok' if same_rows and agree == COUNT else 'not ok'} {first + 2} - {name}: argmax "
          "identical")

    worst, where = 0.0, None
    for i in b if same_rows else []:
        x, y = every[i][2], b[i][1]
        if len(x) != len(y):
            worst, where = float("inf"), (i, "width")
            break
        for k, (p, q) in enumerate(zip(x, y)):
            if abs(p - q) > worst:
                worst, where = abs(p - q), (i, k)
    print(f"# {name}: largest |library - torch| = {worst:.3g} (image, output {where})")
    ok = same_rows and worst <= TOLERANCE
    print(f"{'ok' if ok else 'not ok'} {first + 3} - {name}: every output within {TOLERANCE:g}")
    return ok and agree == COUNT and loaded_ok


def main():
    cli, example, helper = sys.argv[1], sys.argv[2], sys.argv[3]
    probe = subprocess.run([TORCH_PYTHON, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"1..0 # SKIP torch is not importable by {TORCH_PYTHON} (install python3-torch): "
              f"{reason}")
        return 0

    data = mnist_dir()
    images = os.path.join(data, "t10k-images-idx3-ubyte")
    print(f"1..{10 + 5 * len(RECURRENT)}")
    if not os.path.exists(images):
        print(f"not ok 1 - MNIST is not in {data}: run scripts/fetch-mnist.sh")
        return 1

    with tempfile.TemporaryDirectory(prefix="bp-torch-") as tmp:
        model = os.path.join(tmp, "mnist.safetensors")
        summary = os.path.join(tmp, "summary.json")
        # Batch norm and dropout after each hidden layer: every dense layer kind of FORMAT.md,
        # and relu and softmax.
        r = run([cli, "train", "--data", data, "--epochs", "1", "--layers", "784,64,32,10",
                 "--hidden-act", "relu", "--output", "softmax", "--cost", "log-likelihood",
                 "--init", "he", "--batchnorm", "--dropout", "0.2", "--eta", "0.1",
                 "--batch", "32", "--summary-json", summary, "--save", model])
        print(f"{'ok' if r.returncode == 0 else 'not ok'} 1 - backprop train --save on MNIST")
        if r.returncode != 0:
            return 1
        with open(summary) as f:
            trained = json.load(f)["test_accuracy"]
        dense_ok = check_model(cli, example, data, images, tmp, "dense", model, trained, 2)

        conv = os.path.join(tmp, "conv.safetensors")
        ok, trained = train_conv(cli, helper, data, conv)
        print(f"{'ok' if ok else 'not ok'} 6 - {CONV_ARCH}: trained and saved on MNIST")
        conv_ok = ok and check_model(cli, example, data, images, tmp, "conv", conv, trained, 7)
        if not ok:
            for k in range(7, 11):
                print(f"not ok {k} - conv: not run")

        # The recurrent nets need --arch and --sequence, which came with them: no fallback.
        recurrent_ok, first = True, 11
        for name, arch, flags in RECURRENT:
            path = os.path.join(tmp, f"{name}.safetensors")
            ok, trained = train_arch(cli, data, arch, flags + RECURRENT_OPTIONS, path)
            print(f"{'ok' if ok else 'not ok'} {first} - {' '.join([arch] + flags)}: trained "
                  "and saved on MNIST")
            if ok:
                ok = check_model(cli, example, data, images, tmp, name, path, trained, first + 1)
            else:
                for k in range(first + 1, first + 5):
                    print(f"not ok {k} - {name}: not run")
            recurrent_ok, first = recurrent_ok and ok, first + 5
        return 0 if dense_ok and conv_ok and recurrent_ok else 1


if __name__ == "__main__":
    sys.exit(main())
