#!/usr/bin/env python3
"""test_gan.py - examples/gan.c as CI can afford it: a few steps, on real MNIST when
BACKPROP_MNIST_DIR names it, else on a small synthetic IDX set written here, so the example is
built and run in every build with cairo.

    test_gan.py GAN BACKPROP_CLI

Checks that the run exits 0, reports finite losses and discriminator outputs in [0, 1], writes
valid PNGs of the grid's size that are not blank, and is the same run again for the same seed
(1 thread); that it fails, saying why, for a missing data directory, an unwritable output and
bad flags; and, on real MNIST, the evaluation: a classifier `backprop train --save` made in a
second labels the samples, the shares are printed, and --require fails, since that classifier
is far from 99%. TAP on stdout.
"""
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_plot import PngError, read_png  # noqa: E402 (the project's own PNG decoder)

GRID_SIDE = 10 * 28 * 2 + 11 * 2  # GRID tiles of SIDE * SCALE pixels and GRID + 1 gaps
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok' if ok else 'not ok'} {len(results)} - {name}")
    if not ok and detail:
        for line in str(detail).splitlines()[-15:]:
            print(f"#   {line}")
    return ok


def skip(name, reason):
    results.append(True)
    print(f"ok {len(results)} - {name} # SKIP {reason}")


SUPPRESSIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fontconfig.supp")
ENV = dict(os.environ, LSAN_OPTIONS=":".join(
    filter(None, [os.environ.get("LSAN_OPTIONS"), f"suppressions={SUPPRESSIONS}"])))


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=ENV)


def real_mnist():
    d = os.environ.get("BACKPROP_MNIST_DIR")
    if d and all(os.path.isfile(os.path.join(d, f)) for f in MNIST_FILES):
        return d
    return None


def write_synthetic(d, n=512):
    """n 28 x 28 images of a bright bar whose place and angle follow the label, and the labels:
    enough for the example's machinery, which only needs IDX files of MNIST's shape."""
    labels = bytes(i % 10 for i in range(n))
    images = bytearray()
    for i in range(n):
        k = labels[i]
        img = bytearray(784)
        for t in range(20):
            r = 4 + t
            c = min(27, max(0, 4 + k * 2 + (t * (k - 5)) // 10))
            img[r * 28 + c] = 255
            img[r * 28 + min(27, c + 1)] = 200
        images += img
    for name in MNIST_FILES:
        with open(os.path.join(d, name), "wb") as f:
            if "images" in name:
                f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(images))
            else:
                f.write(struct.pack(">II", 0x801, n) + labels)


EPOCH_LINE = re.compile(r"^epoch +(\d+): D loss (\S+)  G loss (\S+)  D\(real\) (\S+)  "
                        r"D\(fake\) (\S+)  (\d+) steps", re.M)


def png_ok(name, path):
    try:
        w, h, pixels = read_png(path)
    except (PngError, zlib.error, OSError) as e:
        return check(f"{name}: a valid PNG", False, e)
    check(f"{name}: a valid PNG of {GRID_SIDE} x {GRID_SIDE}", (w, h) == (GRID_SIDE, GRID_SIDE),
          f"{w} x {h}")
    # The first tile's pixels, gaps excluded: a generator's output is never one flat grey.
    tile = {pixels[y][x] for y in range(2, 2 + 56) for x in range(2, 2 + 56)}
    check(f"{name}: the first sample is not blank", len(tile) > 8, f"{len(tile)} colours")
    return True


def main():
    if len(sys.argv) != 3:
        print("usage: test_gan.py GAN BACKPROP_CLI", file=sys.stderr)
        return 2
    gan, cli = sys.argv[1], sys.argv[2]
    mnist = real_mnist()
    with tempfile.TemporaryDirectory() as tmp:
        data = mnist
        if not data:
            data = os.path.join(tmp, "synthetic")
            os.mkdir(data)
            write_synthetic(data)
        print(f"# data: {'real MNIST in ' + mnist if mnist else 'synthetic IDX files'}")
        steps = 20
        base = ["--mnist", data, "--steps", steps, "--every", 1, "--seed", 3, "--threads", 1]

        out = os.path.join(tmp, "a")
        r = run(gan, *base, "--out", out)
        check(f"gan --steps {steps}: exit 0", r.returncode == 0, r.stdout + r.stderr)
        # The synthetic set has 8 steps an epoch, MNIST 937: one epoch line or several.
        epochs = EPOCH_LINE.findall(r.stdout)
        if check("it reports its epochs", len(epochs) >= 1, r.stdout):
            values = [[float(v) for v in e[1:5]] for e in epochs]
            check("D and G losses are finite and positive",
                  all(math.isfinite(v) and v > 0 for e in values for v in e[:2]), epochs)
            check("D's mean outputs on real and fake are in [0, 1]",
                  all(0 <= v <= 1 for e in values for v in e[2:]), epochs)
            check(f"its epochs had {steps} steps in all",
                  sum(int(e[5]) for e in epochs) == steps, epochs)
        check(f"it says it trained {steps} steps",
              re.search(rf"^trained {steps} steps in ", r.stdout, re.M) is not None, r.stdout)
        png_ok("the final grid", out + ".png")
        png_ok("the epoch-1 grid", out + "-epoch-001.png")

        # One thread, one seed: the same run, bit for bit.
        again = os.path.join(tmp, "b")
        r2 = run(gan, *base, "--out", again)
        strip = re.compile(r"  [\d.]+ s$|in [\d.]+ s$|^wrote .*$", re.M)
        same_text = r2.returncode == 0 and strip.sub("", r.stdout) == strip.sub("", r2.stdout)
        check("the same seed gives the same losses", same_text, r.stdout + r2.stdout)
        try:
            with open(out + ".png", "rb") as f1, open(again + ".png", "rb") as f2:
                same_png = f1.read() == f2.read()
        except OSError as e:
            same_png = False
            print(f"#   {e}")
        check("... and the same grid", same_png)
        r3 = run(gan, *base[:-4], "--seed", 4, "--threads", 1, "--out", os.path.join(tmp, "c"))
        check("another seed gives other losses",
              r3.returncode == 0 and strip.sub("", r.stdout) != strip.sub("", r3.stdout),
              r3.stdout + r3.stderr)

        # The other options: D's tanh layers, packs of two images (the same memory read with
        # twice the leading dimension), instance noise and G's parameter average.
        r = run(gan, *base, "--out", os.path.join(tmp, "f"), "--d-act", "tanh", "--pack", 2,
                "--input-noise", "0.1", "--ema", "0.99")
        epochs = EPOCH_LINE.findall(r.stdout)
        check("--d-act tanh --pack 2 --input-noise 0.1 --ema 0.99: exit 0, finite losses, "
              "D of 1568 inputs",
              r.returncode == 0 and epochs and
              all(math.isfinite(float(v)) for e in epochs for v in e[1:5]) and
              "discriminator 1568 -> dense:512:tanh" in r.stdout, r.stdout + r.stderr)
        r = run(gan, *base, "--d-act", "leaky")
        check("an unknown activation: exit 1 with the library's message",
              r.returncode == 1 and "leaky" in r.stderr, r.stderr)

        # Failures: exit 1 with the reason, or 2 for the command line.
        missing = os.path.join(tmp, "no-such-dir")
        r = run(gan, "--mnist", missing, "--steps", 1)
        check("a missing MNIST directory: exit 1 naming the file",
              r.returncode == 1 and missing in r.stderr, r.stderr)
        r = run(gan, *base, "--out", os.path.join(tmp, "no", "such", "dir", "g"))
        check("an unwritable output: exit 1, cairo's reason",
              r.returncode == 1 and "cairo_surface_write_to_png" in r.stderr, r.stderr)
        for bad in (["--epochs", "0"], ["--lr", "nan"], ["--batch", "x"], ["--frobnicate", "1"],
                    ["--steps"], ["--pack", "3"]):
            r = run(gan, "--mnist", data, *bad)
            check(f"gan {' '.join(bad)}: exit 2 with a message",
                  r.returncode == 2 and r.stderr.startswith("gan: "), r.stderr)
        env_less = dict(ENV)
        env_less.pop("BACKPROP_MNIST_DIR", None)
        r = subprocess.run([gan, "--steps", "1"], capture_output=True, text=True, env=env_less)
        check("no --mnist and no BACKPROP_MNIST_DIR: exit 2 saying so",
              r.returncode == 2 and "BACKPROP_MNIST_DIR" in r.stderr, r.stderr)
        r = run(gan, *base, "--out", os.path.join(tmp, "d"), "--classifier",
                os.path.join(tmp, "none.safetensors"))
        check("a missing classifier: exit 1 naming it",
              r.returncode == 1 and "none.safetensors" in r.stderr, r.stderr)

        # The evaluation, with a classifier of a few seconds (softmax regression, one epoch).
        name = "the evaluation labels the samples and prints the shares"
        if not mnist:
            skip(name, "needs real MNIST (BACKPROP_MNIST_DIR)")
            skip("--require fails with a classifier below 99%", "needs real MNIST")
        else:
            model = os.path.join(tmp, "softmax.safetensors")
            t = run(cli, "train", "--data", mnist, "--layers", "784,10", "--output", "softmax",
                    "--cost", "log-likelihood", "--eta", "0.5", "--epochs", "1", "--threads",
                    "1", "--progress", "never", "--save", model)
            if check("backprop train --save makes a small classifier", t.returncode == 0,
                     t.stdout + t.stderr):
                ev = [*base, "--out", os.path.join(tmp, "e"), "--classifier", model,
                      "--samples", 300]
                r = run(gan, *ev)
                shares = [float(s) for s in re.findall(r"^  \d: +([\d.]+)%$", r.stdout, re.M)]
                top = re.search(r"^mean top-class probability: ([\d.]+) ", r.stdout, re.M)
                acc = re.search(r"^classifier test accuracy: ([\d.]+)%", r.stdout, re.M)
                check(name, r.returncode == 0 and len(shares) == 10 and
                      abs(sum(shares) - 100) < 0.6 and top is not None and
                      0.1 <= float(top.group(1)) <= 1 and acc is not None and
                      80 < float(acc.group(1)) < 99, r.stdout + r.stderr)
                r = run(gan, *ev, "--require")
                check("--require fails with a classifier below 99%",
                      r.returncode == 1 and "evaluation: FAILED" in r.stdout and
                      "--require" in r.stderr, r.stdout + r.stderr)
    print(f"1..{len(results)}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
