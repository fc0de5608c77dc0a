#!/usr/bin/env python3
"""test_torch.py - a model trained by the library on real MNIST, opened in PyTorch by
examples/load_in_torch.py, gives the library's predictions on 1,000 test images: the same
argmax for every image and every output within 1e-5. The file itself must hold the net that was
trained: loaded by the library it scores on the test set exactly what the net scored before it
was saved.

    test_torch.py MODEL_OUTPUTS LOAD_IN_TORCH_PY [BACKPROP_CLI]

MODEL_OUTPUTS is tests/model_outputs.c (the library's outputs for a model file). With the CLI
given and offering `train --save`, the CLI trains the model; otherwise model_outputs does.
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
FIRST = 0
TOLERANCE = 1e-5


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


def read_csv(path):
    rows = {}
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            rows[int(fields[0])] = (int(fields[1]), [float(v) for v in fields[2:]])
    return rows


def read_labels(path):
    with open(path, "rb") as f:
        blob = f.read()
    return blob[8:]


def cli_can_save(cli):
    if not cli:
        return False
    r = subprocess.run([cli, "train", "--help"], capture_output=True, text=True)
    return "--save FILE" in r.stdout + r.stderr


def main():
    tool, example = sys.argv[1], sys.argv[2]
    cli = sys.argv[3] if len(sys.argv) > 3 else None
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
        if cli_can_save(cli):
            how = "backprop train --save"
            # Batch norm and dropout after each hidden layer: every mapping of FORMAT.md.
            train = [cli, "train", "--data", data, "--epochs", "1", "--layers", "784,64,32,10",
                     "--hidden-act", "relu", "--output", "softmax", "--cost", "log-likelihood",
                     "--init", "he", "--batchnorm", "--dropout", "0.2", "--eta", "0.1",
                     "--batch", "32", "--summary-json", summary, "--save", model]
        else:
            how = "model_outputs train"
            train = [tool, "train", data, model]
        r = run(train)
        print(f"{'ok' if r.returncode == 0 else 'not ok'} 1 - a model trained on MNIST by {how}")
        if r.returncode != 0:
            return 1
        # The trained net's test accuracy, measured before it went to a file.
        if how.startswith("backprop"):
            with open(summary) as f:
                trained = json.load(f)["test_accuracy"]
        else:
            trained = float(r.stdout.split("test_accuracy")[1].split()[0])

        # The library's outputs for the whole test set from the file, PyTorch's for COUNT of
        # them: the first ties the file to the net that was trained (a writer and a reader
        # that garbled the tensors in the same way would agree with PyTorch and still lose
        # the net), the second is the comparison.
        ours, theirs = os.path.join(tmp, "library.csv"), os.path.join(tmp, "torch.csv")
        labels = read_labels(os.path.join(data, "t10k-labels-idx1-ubyte"))
        r1 = run([tool, "predict", model, images, "0", str(len(labels)), ours])
        r2 = run([TORCH_PYTHON, example, model, "--images", images, "--first", str(FIRST),
                  "--count", str(COUNT), "--out", theirs])
        ok = r1.returncode == 0 and r2.returncode == 0
        print(f"{'ok' if ok else 'not ok'} 2 - the library's and PyTorch's outputs for "
              f"{COUNT} test images (load_state_dict strict)")
        if not ok:
            return 1

        every = read_csv(ours)
        right = sum(every[i][0] == labels[i] for i in every)
        print(f"# test accuracy: {trained:.4f} trained, {right / len(labels):.4f} loaded from "
              f"the file")
        loaded_ok = len(every) == len(labels) and right == round(trained * len(labels))
        print(f"{'ok' if loaded_ok else 'not ok'} 3 - the loaded model scores as the trained "
              f"net did")

        a = {i: every[i] for i in range(FIRST, FIRST + COUNT)}
        b = read_csv(theirs)
        same_rows = sorted(a) == sorted(b) == list(range(FIRST, FIRST + COUNT))
        agree = sum(a[i][0] == b[i][0] for i in a) if same_rows else 0
        print(f"# argmax agrees on {agree} of {COUNT} images")
        print(f"{'ok' if same_rows and agree == COUNT else 'not ok'} 4 - argmax identical")

        worst, where = 0.0, None
        for i in a if same_rows else []:
            if len(a[i][1]) != len(b[i][1]):
                worst, where = float("inf"), (i, "width")
                break
            for k, (x, y) in enumerate(zip(a[i][1], b[i][1])):
                if abs(x - y) > worst:
                    worst, where = abs(x - y), (i, k)
        print(f"# largest |library - torch| = {worst:.3g} (image, output {where})")
        ok = same_rows and worst <= TOLERANCE
        print(f"{'ok' if ok else 'not ok'} 5 - every output within {TOLERANCE:g}")
        return 0 if ok and agree == COUNT and loaded_ok else 1


if __name__ == "__main__":
    sys.exit(main())
