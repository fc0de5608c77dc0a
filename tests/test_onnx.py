#!/usr/bin/env python3
"""test_onnx.py - models trained by `backprop train --save` on real MNIST, exported by `backprop
export --onnx`, are valid ONNX and compute what backprop computes:

- onnx.checker.check_model (full_check: shape inference too) accepts the export of a dense
  net, a dropout net, a batch norm + dropout net, a conv net (padding, stride, per-channel
  batch norm, max and average pooling, dropout between images), an LSTM reading rows and a
  GRU reading columns, under Debian's /usr/bin/python3
  (python3-onnx; BACKPROP_ONNX_PYTHON overrides), and the graph holds, in order, the operators
  the model's architecture stands for, with the metadata a deployer needs;
- ONNX Runtime (onnxruntime-node, scripts/install-onnxruntime.sh, run by tests/onnx_runtime.js)
  on the first 1,000 test images gives `backprop predict --limit 1000`'s outputs: the same
  argmax for every image and every output within 1e-5.

    test_onnx.py BACKPROP_CLI ONNX_RUNTIME_JS INSTALL_ONNXRUNTIME_SH TRAIN_ARCH_MODEL

The conv net is trained by `backprop train --arch` when the CLI has that flag, else by
TRAIN_ARCH_MODEL (tests/train_arch_model.c: the same one epoch through the public API).

TAP on stdout. Skipped, with the reason, only when the build has no ONNX support or there is
no node; anything else missing (MNIST, python3-onnx, the runtime's install) fails.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

ONNX_PYTHON = os.environ.get("BACKPROP_ONNX_PYTHON", "/usr/bin/python3")
COUNT = 1000
TOLERANCE = 1e-5
PER_MODEL = 7  # TAP tests for each model below

# name: the flags of `backprop train` after --data and --epochs 1. Together: every layer kind
# (dense, dropout, batchnorm) and every activation the export maps (sigmoid, tanh, relu,
# softmax; linear is the batch norm nets' dense layers).
MODELS = {
    "dense": ["--layers", "784,30,10", "--output", "softmax", "--cost", "log-likelihood",
              "--eta", "0.1"],
    "dropout": ["--layers", "784,100,10", "--hidden-act", "tanh", "--dropout", "0.3",
                "--eta", "0.1"],
    "batchnorm": ["--layers", "784,64,32,10", "--hidden-act", "relu", "--output", "softmax",
                  "--cost", "log-likelihood", "--init", "he", "--batchnorm", "--dropout", "0.2",
                  "--eta", "0.1", "--batch", "32"],
    "conv": None,  # CONV_ARCH, by train_conv
    # The recurrent kinds, each reading the other way: sequence reshapes, time-major
    # transposes, the operators' gate orders and the LSTM's one bias against the GRU's two.
    "lstm": ["--arch", "lstm:32,dense:10:softmax", "--sequence", "rows", "--cost",
             "log-likelihood", "--optimizer", "adam", "--eta", "0.01", "--batch", "32"],
    "gru": ["--arch", "gru:24:cols,dense:10:softmax", "--cost", "log-likelihood",
            "--optimizer", "adam", "--eta", "0.01", "--batch", "32"],
}
# Every image kind and option the export maps: a linear conv with padding under per-channel
# batch norm, max pooling, a strided conv, average pooling, dropout between images, the
# Flatten into dense layers.
CONV_ARCH = ("conv:6x5x5:linear:p2,batchnorm:relu,maxpool:2,conv:8x3x3:tanh:s2,avgpool:2,"
             "dropout:0.2,dense:32:sigmoid,dense:10:softmax")

# Run under ONNX_PYTHON: check the model and describe it as JSON on stdout.
CHECK = r"""
import json, sys
import onnx
model = onnx.load(sys.argv[1])
onnx.checker.check_model(model, full_check=True)
g = model.graph
def dims(v):
    return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
print(json.dumps({
    "onnx": onnx.__version__,
    "ir_version": model.ir_version,
    "opsets": {o.domain: o.version for o in model.opset_import},
    "producer": [model.producer_name, model.producer_version],
    "ops": [n.op_type for n in g.node],
    "inputs": {v.name: dims(v) for v in g.input},
    "outputs": {v.name: dims(v) for v in g.output},
    "initializers": sorted(t.name for t in g.initializer),
    "meta": {p.key: p.value for p in model.metadata_props},
}))
"""

ACTIVATION_OPS = {"sigmoid": ["Sigmoid"], "tanh": ["Tanh"], "relu": ["Relu"], "linear": [],
                  "softmax": ["Softmax"]}


def expected_ops(architecture, shaped):
    """The operators an architecture ("dense:30:sigmoid,dropout:0.2,...") stands for, by
    docs/FORMAT.md ("ONNX export"), worked out here independently of the exporter. `shaped`:
    the model has an input_shape of more than one position a plane. The graph's values are
    "flat" ([N, features]) or "image" ([N, C, H, W]); the input is flat but holds images when
    shaped, so per-channel batch norm straight on it needs the Reshape too."""
    ops, form = [], "input" if shaped else "flat"
    for layer in architecture.split(","):
        kind, *args = layer.split(":")
        if kind in ("conv", "maxpool", "avgpool") or (kind == "batchnorm" and form == "input"):
            if form != "image":
                ops.append("Reshape")
            form = "image"
        if kind == "dense":
            if form == "image":
                ops.append("Flatten")
            form = "flat"
            ops += ["Gemm"] + ACTIVATION_OPS[args[1]]
        elif kind == "conv":
            act = [a for a in args[1:] if not (a[:1] in "sp" and a[1:].isdigit())]
            ops += ["Conv"] + ACTIVATION_OPS[act[0] if act else "relu"]
        elif kind in ("maxpool", "avgpool"):
            ops.append("MaxPool" if kind == "maxpool" else "AveragePool")
        elif kind == "batchnorm":
            ops += ["BatchNormalization"] + ACTIVATION_OPS[args[0] if args else "linear"]
        elif kind == "dropout":
            ops += ["Identity"]
        elif kind in ("lstm", "gru"):
            # [N, R, C], time-major, the operator, its last hidden state as [N, H]
            ops += ["Reshape", "Transpose", kind.upper(), "Reshape"]
            form = "flat"
        else:
            ops += [f"<unknown kind {kind}>"]
    return ops + (["Flatten"] if form == "image" else [])


def train_conv(cli, helper, model):
    """CONV_ARCH for one epoch on real MNIST into `model`, by the CLI when it has --arch."""
    r = run([cli, "train", "--help"])
    if r.returncode == 0 and "--arch" in r.stdout + r.stderr:
        return run([cli, "train", "--data", "mnist", "--epochs", "1", "--arch", CONV_ARCH,
                    "--cost", "log-likelihood", "--init", "he", "--eta", "0.05", "--batch",
                    "10", "--save", model])
    print("# backprop train has no --arch: the conv net comes from train_arch_model")
    return run([helper, mnist_dir(), CONV_ARCH, model])


def mnist_dir():
    """Where `--data mnist` finds MNIST (resolve_data_dir in tools/cli.c)."""
    if os.environ.get("BACKPROP_MNIST_DIR"):
        return os.environ["BACKPROP_MNIST_DIR"]
    base = os.environ.get("BACKPROP_DATA_DIR") or os.path.join(os.environ.get("HOME", "."),
                                                              ".cache", "backprop")
    return os.path.join(base, "mnist")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        print(f"# {' '.join(cmd)} exited {r.returncode}")
        for line in (r.stdout + r.stderr).splitlines()[-20:]:
            print(f"#   {line}")
    return r


class Tap:
    def __init__(self, planned):
        self.n, self.failed = 0, 0
        print(f"1..{planned}")

    def check(self, ok, what):
        self.n += 1
        self.failed += not ok
        print(f"{'ok' if ok else 'not ok'} {self.n} - {what}")
        return ok


def read_predict_csv(path):
    """backprop predict's CSV: [(predicted, outputs)] by index."""
    with open(path) as f:
        header = f.readline().strip().split(",")
        assert header[:3] == ["index", "label", "predicted"], header
        rows = [line.strip().split(",") for line in f]
    return {int(v[0]): (int(v[2]), [float(x) for x in v[3:]]) for v in rows}


def read_runtime_csv(path):
    """onnx_runtime.js's CSV: index,predicted,outputs."""
    with open(path) as f:
        rows = [line.strip().split(",") for line in f]
    return {int(v[0]): (int(v[1]), [float(x) for x in v[2:]]) for v in rows}


def compare(ours, theirs):
    """(argmax agreements, largest |difference|, where), over the images both hold."""
    if sorted(ours) != list(range(COUNT)) or sorted(theirs) != list(range(COUNT)):
        return 0, float("inf"), "the rows are not images 0..999"
    agree, worst, where = 0, 0.0, None
    for i in range(COUNT):
        agree += ours[i][0] == theirs[i][0]
        x, y = ours[i][1], theirs[i][1]
        if len(x) != len(y):
            return agree, float("inf"), f"image {i}: {len(x)} and {len(y)} outputs"
        for k, (p, q) in enumerate(zip(x, y)):
            if abs(p - q) > worst:
                worst, where = abs(p - q), f"image {i}, output {k}"
    return agree, worst, where


def check_model(tap, name, onnx_path, info):
    meta = info["meta"]
    tap.check(info["ir_version"] == 8 and info["opsets"] == {"": 13}
              and info["producer"][0] == "backprop",
              f"{name}: IR version 8, opset 13, producer backprop "
              f"(got {info['ir_version']}, {info['opsets']}, {info['producer']})")
    shape = meta.get("input_shape", "1x1x1").split("x")
    want = expected_ops(meta.get("architecture", ""), int(shape[1]) * int(shape[2]) > 1)
    tap.check(info["ops"] == want, f"{name}: operators {info['ops']} are those of "
              f"{meta.get('architecture')!r}" + ("" if info["ops"] == want else f": {want}"))
    ok = (info["inputs"] == {"input": ["N", 784]} and info["outputs"] == {"output": ["N", 10]}
          and meta.get("input_width") == "784" and meta.get("input_rows") == "28"
          and meta.get("input_cols") == "28" and meta.get("input_scale") == "0.00392156886"
          and meta.get("class_names") == "0,1,2,3,4,5,6,7,8,9"
          and meta.get("input_shape") in ("1x28x28", None if name != "conv" else "1x28x28"))
    tap.check(ok, f"{name}: input {info['inputs']}, output {info['outputs']}, metadata "
              f"{meta.get('input_rows')} x {meta.get('input_cols')}, scale "
              f"{meta.get('input_scale')}, classes {meta.get('class_names')}")


def main():
    cli, runtime_js, install_sh, helper = sys.argv[1:5]
    data = mnist_dir()
    images = os.path.join(data, "t10k-images-idx3-ubyte")
    if shutil.which("node") is None:
        print("1..0 # SKIP node is not installed (scripts/install-onnxruntime.sh installs npm "
              "and node)")
        return 0

    with tempfile.TemporaryDirectory(prefix="bp-onnx-") as tmp:
        # Whether this build can export at all, before the trainings.
        probe_model = os.path.join(tmp, "probe.st")
        r = run([cli, "train", "--data", "mnist", "--layers", "784,10", "--epochs", "1",
                 "--save", probe_model])
        if r.returncode == 0:
            r = subprocess.run([cli, "export", "--model", probe_model, "--onnx",
                                os.path.join(tmp, "probe.onnx")], capture_output=True,
                               text=True)
            if r.returncode != 0 and "built without ONNX support" in r.stderr:
                print(f"1..0 # SKIP {r.stderr.strip()}")
                return 0

        tap = Tap(2 + PER_MODEL * len(MODELS))
        if not tap.check(os.path.exists(images), f"MNIST test images in {data} "
                         "(scripts/fetch-mnist.sh)"):
            return 1
        probe = run([ONNX_PYTHON, "-c", "import onnx"])
        if not tap.check(probe.returncode == 0, f"{ONNX_PYTHON} imports onnx (python3-onnx)"):
            return 1
        if "BACKPROP_ONNXRUNTIME_DIR" in os.environ:
            runtime_dir = os.environ["BACKPROP_ONNXRUNTIME_DIR"]
        else:
            r = run(["bash", install_sh])
            runtime_dir = r.stdout.strip().splitlines()[-1] if r.returncode == 0 else ""
        env = dict(os.environ, NODE_PATH=os.path.join(runtime_dir, "node_modules"))

        for name, flags in MODELS.items():
            model, onnx_path = (os.path.join(tmp, f"{name}.{ext}") for ext in ("st", "onnx"))
            if flags is None:
                r = train_conv(cli, helper, model)
            else:
                r = run([cli, "train", "--data", "mnist", "--epochs", "1", *flags, "--save",
                         model])
            if r.returncode == 0:
                r = run([cli, "export", "--model", model, "--onnx", onnx_path])
            if not tap.check(r.returncode == 0, f"{name}: backprop train --save, export "
                             f"--onnx"):
                continue
            print(f"# {name}: {os.path.getsize(model)} bytes as a model file, "
                  f"{os.path.getsize(onnx_path)} as ONNX")

            r = run([ONNX_PYTHON, "-c", CHECK, onnx_path])
            if not tap.check(r.returncode == 0, f"{name}: onnx.checker.check_model "
                             "(full_check) accepts it"):
                continue
            info = json.loads(r.stdout)
            print(f"# {name}: checked by onnx {info['onnx']}")
            check_model(tap, name, onnx_path, info)

            ours, theirs = os.path.join(tmp, f"{name}.csv"), os.path.join(tmp, f"{name}.ort")
            r1 = run([cli, "predict", "--model", model, "--data", "mnist", "--limit",
                      str(COUNT), "--out", ours])
            r2 = run(["node", runtime_js, onnx_path, images, str(COUNT),
                      info["meta"]["input_scale"], theirs], env=env)
            if r2.returncode == 0:
                print(f"# {r2.stdout.strip()}")
            if not tap.check(r1.returncode == 0 and r2.returncode == 0,
                             f"{name}: backprop predict and ONNX Runtime on {COUNT} images"):
                continue
            agree, worst, where = compare(read_predict_csv(ours), read_runtime_csv(theirs))
            print(f"# {name}: argmax agrees on {agree} of {COUNT}; largest |backprop - ONNX "
                  f"Runtime| = {worst:.3g} ({where})")
            tap.check(agree == COUNT and worst <= TOLERANCE,
                      f"{name}: argmax identical and every output within {TOLERANCE:g}")
        return 1 if tap.failed or tap.n != 2 + PER_MODEL * len(MODELS) else 0


if __name__ == "__main__":
    sys.exit(main())
