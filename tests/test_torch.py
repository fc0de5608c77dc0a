#!/usr/bin/env python3
"""test_torch.py - a model trained by `backprop train --save` on real MNIST, opened in PyTorch
by examples/load_in_torch.py, gives `backprop predict`'s outputs on 1,000 test images: the same
argmax for every image and every output within 1e-5. And the file holds the net that was
trained: `backprop predict` on it scores on the 10,000 test images what train reported for the
net before saving it (a writer and a reader that garbled the tensors alike would agree with
PyTorch and still have lost the net).

    test_torch.py BACKPROP_CLI LOAD_IN_TORCH_PY

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


def main():
    cli, example = sys.argv[1], sys.argv[2]
    probe = subprocess.run([TORCH_PYTHON, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"1..0 # SKIP torch is not importable by {TORCH_PYTHON} (install python3-torch): "
              f"{reason}")
        return 0

    data = mnist_dir()
    images = os.path.join(data, "t10k-images-idx3-ubyte")
    print("1..5")
    if not os.path.exists(images):
        print(f"not ok 1 - MNIST is not in {data}: run scripts/fetch-mnist.sh")
        return 1

    with tempfile.TemporaryDirectory(prefix="bp-torch-") as tmp:
        model = os.path.join(tmp, "mnist.safetensors")
        summary = os.path.join(tmp, "summary.json")
        # Batch norm and dropout after each hidden layer: every layer kind of FORMAT.md, and
        # relu and softmax.
        r = run([cli, "train", "--data", data, "--epochs", "1", "--layers", "784,64,32,10",
                 "--hidden-act", "relu", "--output", "softmax", "--cost", "log-likelihood",
                 "--init", "he", "--batchnorm", "--dropout", "0.2", "--eta", "0.1",
                 "--batch", "32", "--summary-json", summary, "--save", model])
        print(f"{'ok' if r.returncode == 0 else 'not ok'} 1 - backprop train --save on MNIST")
        if r.returncode != 0:
            return 1
        with open(summary) as f:
            trained = json.load(f)["test_accuracy"]

        ours, theirs = os.path.join(tmp, "library.csv"), os.path.join(tmp, "torch.csv")
        r1 = run([cli, "predict", "--model", model, "--data", data, "--set", "test",
                  "--out", ours])
        r2 = run([TORCH_PYTHON, example, model, "--images", images, "--first", "0",
                  "--count", str(COUNT), "--out", theirs])
        ok = r1.returncode == 0 and r2.returncode == 0
        print(f"{'ok' if ok else 'not ok'} 2 - backprop predict, and PyTorch on {COUNT} test "
              f"images (load_state_dict strict)")
        if not ok:
            return 1

        every = read_predict_csv(ours)
        right = sum(label == predicted for label, predicted, _ in every.values())
        n = len(every)
        print(f"# test accuracy: {trained:.4f} trained, {right / n:.4f} from the file "
              f"({n} images)")
        loaded_ok = n == 10000 and abs(right - round(trained * n)) <= ACCURACY_SLACK
        print(f"{'ok' if loaded_ok else 'not ok'} 3 - the file scores as the trained net did")

        b = read_example_csv(theirs)
        same_rows = sorted(b) == list(range(COUNT)) and all(i in every for i in b)
        agree = sum(every[i][1] == b[i][0] for i in b) if same_rows else 0
        print(f"# argmax agrees on {agree} of {COUNT} images")
        print(f"{'ok' if same_rows and agree == COUNT else 'not ok'} 4 - argmax identical")

        worst, where = 0.0, None
        for i in b if same_rows else []:
            x, y = every[i][2], b[i][1]
            if len(x) != len(y):
                worst, where = float("inf"), (i, "width")
                break
            for k, (p, q) in enumerate(zip(x, y)):
                if abs(p - q) > worst:
                    worst, where = abs(p - q), (i, k)
        print(f"# largest |library - torch| = {worst:.3g} (image, output {where})")
        ok = same_rows and worst <= TOLERANCE
        print(f"{'ok' if ok else 'not ok'} 5 - every output within {TOLERANCE:g}")
        return 0 if ok and agree == COUNT and loaded_ok else 1


if __name__ == "__main__":
    sys.exit(main())
