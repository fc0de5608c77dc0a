#!/usr/bin/env python3
"""test_plot.py - `backprop plot`: the PNGs it writes, read back here with zlib and struct (a
decoder of our own, so no third-party module decides what a valid PNG is), and every way its
command line and its inputs can be wrong.

    test_plot.py BACKPROP_CLI with-plot|without-plot

The curves come from two short real trainings on MNIST (BACKPROP_MNIST_DIR, as the other
suites find it) and from logs written here; the weight grid from a model one of them saved.
A build without cairo (meson said so: without-plot) is checked for its message alone.
TAP on stdout.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

# tab10, the colours runs take in order (plot's usage says so).
RUN_COLOURS = [(0x1f, 0x77, 0xb4), (0xff, 0x7f, 0x0e), (0x2c, 0xa0, 0x2c)]
# The weight map's ends (plot_weights.c): blue negative, red positive, from near-white at 0.
NEGATIVE, ZERO, POSITIVE = (0x21, 0x66, 0xac), (0xf7, 0xf7, 0xf7), (0xb2, 0x18, 0x2b)

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok' if ok else 'not ok'} {len(results)} - {name}")
    if not ok and detail:
        for line in str(detail).splitlines()[-15:]:
            print(f"#   {line}")
    return ok


def mnist_dir():
    if os.environ.get("BACKPROP_MNIST_DIR"):
        return os.environ["BACKPROP_MNIST_DIR"]
    base = os.environ.get("BACKPROP_DATA_DIR") or os.path.join(os.environ.get("HOME", "."),
                                                              ".cache", "backprop")
    return os.path.join(base, "mnist")


# Under AddressSanitizer, fontconfig's own leak is not ours (the file says which it is).
SUPPRESSIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fontconfig.supp")
ENV = dict(os.environ, LSAN_OPTIONS=":".join(
    filter(None, [os.environ.get("LSAN_OPTIONS"), f"suppressions={SUPPRESSIONS}"])))


def run(cli, *args):
    return subprocess.run([cli, *args], capture_output=True, text=True, env=ENV)


# ---- PNG ----------------------------------------------------------------------------------

class PngError(Exception):
    pass


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def unfilter(raw, width, height, bpp):
    """The scanlines of a decompressed IDAT stream, filters undone (PNG spec, 9.2)."""
    stride = width * bpp
    if len(raw) != height * (stride + 1):
        raise PngError(f"image data is {len(raw)} bytes, {height * (stride + 1)} expected")
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                up_left = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + paeth(left, prev[i], up_left)) & 255
        elif kind != 0:
            raise PngError(f"row {y}: filter type {kind}")
        rows.append(bytes(line))
        prev = line
    return rows


def read_png(path):
    """(width, height, rows of (r, g, b) tuples); PngError for anything not a valid PNG of 8-bit
    RGB or RGBA, every chunk's CRC checked."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise PngError("no PNG signature")
    pos, chunks = 8, []
    while pos < len(data):
        if pos + 12 > len(data):
            raise PngError("a truncated chunk")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc, = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if len(body) != length or zlib.crc32(kind + body) != crc:
            raise PngError(f"chunk {kind!r}: bad length or CRC")
        chunks.append((kind, body))
        pos += 12 + length
        if kind == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND" or pos != len(data):
        raise PngError("not IHDR first and IEND last")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if depth != 8 or colour not in (2, 6) or interlace != 0:
        raise PngError(f"depth {depth}, colour type {colour}, interlace {interlace}")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = unfilter(raw, width, height, bpp)
    pixels = [[tuple(r[x * bpp:x * bpp + 3]) for x in range(width)] for r in rows]
    return width, height, pixels


def near(p, colour, tol=12):
    return all(abs(a - b) <= tol for a, b in zip(p, colour))


def colour_spread(pixels, colour):
    """How many pixels are the colour, and in how many columns: a curve across the plot spans
    most of them, a legend swatch a few dozen."""
    count, columns = 0, set()
    for row in pixels:
        for x, p in enumerate(row):
            if near(p, colour):
                count += 1
                columns.add(x)
    return count, len(columns)


def plot_ok(cli, name, out, args, size, colours, absent=()):
    """plot with args succeeds, writes a valid PNG of size, each of colours drawn in at least a
    quarter of the picture's columns (a run drawn over by the next hides part of its curve;
    the legend's swatch is a few dozen) and none of absent anywhere to speak of."""
    r = run(cli, "plot", *args, "-o", out)
    if not check(f"{name}: exit 0", r.returncode == 0, r.stdout + r.stderr):
        return None
    try:
        w, h, pixels = read_png(out)
    except (PngError, zlib.error, OSError) as e:
        check(f"{name}: a valid PNG", False, e)
        return None
    check(f"{name}: a valid PNG of {size[0]}x{size[1]}", (w, h) == size, f"{w}x{h}")
    for c in colours:
        count, columns = colour_spread(pixels, c)
        check(f"{name}: #{bytes(c).hex()} drawn ({count} pixels in {columns} columns)",
              count >= w // 4 and columns >= w // 4)
    for c in absent:
        count, _ = colour_spread(pixels, c)
        check(f"{name}: #{bytes(c).hex()} (no such run) not drawn ({count} pixels)", count < 10)
    return pixels


# ---- the weight grid ----------------------------------------------------------------------

def first_weight(model):
    """layers.0.weight of a safetensors model file, as floats."""
    with open(model, "rb") as f:
        n, = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        t = header["layers.0.weight"]
        assert t["dtype"] == "F32", t
        begin, end = t["data_offsets"]
        f.seek(8 + n + begin)
        data = f.read(end - begin)
    return struct.unpack(f"<{len(data) // 4}f", data)


def check_weights(cli, tmp, model):
    out = os.path.join(tmp, "w.png")
    r = run(cli, "plot", "--weights", model, "-o", out, "--size", "900x600")
    if not check("--weights: exit 0", r.returncode == 0, r.stdout + r.stderr):
        return
    w, h, pixels = read_png(out)
    check(f"--weights: a valid PNG of 900x600 ({w}x{h})", (w, h) == (900, 600))
    # The colour of weight w is ZERO + |t| (END - ZERO), t = w / max |w| and END the colour
    # of its sign, each channel rounded. Each weight is a block of the same number of pixels,
    # so the pixels well to the blue and to the red come in the proportion of the weights
    # whose colours are. Counted from the first row of the tiles' outlines down, below the
    # caption's colour bar.
    weights = first_weight(model)
    top = max(abs(v) for v in weights)

    def colour(v):
        end = NEGATIVE if v < 0 else POSITIVE
        return tuple(round(z + abs(v) / top * (e - z)) for z, e in zip(ZERO, end))

    def bluish(p):
        return p[2] - p[0] > 40

    def reddish(p):
        return p[0] - p[2] > 40

    neg = sum(bluish(colour(v)) for v in weights)
    pos = sum(reddish(colour(v)) for v in weights)
    first = next((y for y, row in enumerate(pixels)
                  if sum(near(p, (0x90, 0x90, 0x90), 3) for p in row) > w // 10), h)
    blue = sum(bluish(p) for row in pixels[first:] for p in row)
    red = sum(reddish(p) for row in pixels[first:] for p in row)
    print(f"# weights coloured well to a side: {neg} blue, {pos} red; "
          f"pixels from row {first}: {blue} blue, {red} red")
    check("--weights: tiles outlined below the caption", 0 < first < h // 5)
    check("--weights: both signs' colours", blue > 1000 and red > 1000)
    ratio = (blue / red) / (neg / pos) if red and pos and neg else 0
    check(f"--weights: blue and red pixels in the weights' proportion ({ratio:.3f})",
          abs(ratio - 1) < 0.02)


def record(epoch, eta=0.5, train=None, vcost=1.0, acc=0.5, norms=None):
    r = {"epoch": epoch, "eta": eta, "train_cost": train, "validation_cost": vcost,
         "validation_accuracy": acc, "seconds": 1.0, "samples_per_second": 1000.0}
    if norms is not None:
        r["grad_norms"] = norms
    return json.dumps(r)


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def synthetic_logs(tmp):
    # A schedule halving eta, and one that rolls back (epoch 3 twice: the later one counts).
    a = [record(e, eta=1.0 / 2 ** (e // 3), train=None if e == 0 else 1 / (e + 1),
                vcost=1.2 / (e + 1), acc=0.5 + e / 40, norms={"layers.0.weight": 1 / (e + 1)})
         for e in range(12)]
    b = [record(e, eta=0.8, train=None if e == 0 else 0.9 / (e + 1), vcost=1.1 / (e + 1),
                acc=0.4 + e / 30, norms={"layers.0.weight": 2 / (e + 1)}) for e in range(4)]
    b += [record(3, eta=0.4, train=0.3, vcost=0.35, acc=0.52, norms={"layers.0.weight": 0.5})]
    b += [record(e, eta=0.4, train=0.9 / (e + 1), vcost=1.1 / (e + 1), acc=0.4 + e / 30,
                 norms={"layers.0.weight": 2 / (e + 1)}) for e in range(4, 12)]
    return (write(tmp, "a.jsonl", "\n".join(a) + "\n"),
            write(tmp, "b.jsonl", "\n".join(b) + "\n\n"))


def check_usage(cli, tmp, a, b, model):
    """Each mistake: its exit status and a message that says what is wrong."""
    out = os.path.join(tmp, "u.png")
    bad = {
        "not-json.jsonl": record(0) + "\n{\"epoch\": 1, \n",
        "array.jsonl": "[1, 2]\n",
        "two.jsonl": record(0) + " " + record(1) + "\n",
        "no-epoch.jsonl": record(0) + "\n" + json.dumps({"eta": 1}) + "\n",
        "neg-epoch.jsonl": record(-1) + "\n",
        "no-vcost.jsonl": record(0) + "\n" + json.dumps({"epoch": 1, "train_cost": 1,
                                                         "validation_accuracy": 0.5}) + "\n",
        "text-acc.jsonl": record(0) + "\n" + json.dumps({"epoch": 1,
                                                          "validation_accuracy": "high"}) + "\n",
        "empty.jsonl": "\n\n",
        "null-acc.jsonl": record(0, acc=None) + "\n" + record(1, acc=None) + "\n",
        "no-norms.jsonl": record(0) + "\n",
        "zero-acc.jsonl": record(0, acc=0) + "\n" + record(1, acc=0) + "\n",
        "short.csv": "epoch,eta,validation_accuracy\n0,1,0.5\n1,1\n",
        "word.csv": "epoch,eta,validation_accuracy\n0,1,0.5\n1,fast,0.6\n",
        "quote.csv": "epoch,\"eta\n0,1\n",
    }
    p = {k: write(tmp, k, v) for k, v in bad.items()}
    missing = os.path.join(tmp, "missing.jsonl")
    nine = ",".join(["eta"] * 9)
    cases = [
        (2, "no logs", ["-o", out], "which logs?"),
        (2, "no -o", [a], "-o: where should the PNG go?"),
        (2, "-o without a value", [a, "-o"], "-o needs a value"),
        (2, "--size without x", [a, "-o", out, "--size", "1200"], "is not WIDTHxHEIGHT"),
        (2, "--size not numbers", [a, "-o", out, "--size", "axb"], "not a whole number"),
        (2, "--size out of range", [a, "-o", out, "--size", "100x800"], "out of range (200..16384)"),
        (2, "--size with a sign", [a, "-o", out, "--size", "+800x600"], "not a whole number"),
        (2, "--size too small for the panels", [a, "-o", out, "--size", "200x200", "--metric",
                                                ",".join(["eta"] * 8)], "too small for 8 panels"),
        (2, "unknown metric", [a, "-o", out, "--metric", "bogus"], "unknown metric 'bogus'"),
        (2, "unknown tensor", [a, "-o", out, "--metric", "layers.7.weight"],
         "unknown metric 'layers.7.weight'"),
        (2, "an empty metric", [a, "-o", out, "--metric", "eta,"], "an empty name in 'eta,'"),
        (2, "nine panels", [a, "-o", out, "--metric", nine], "more than 8 panels"),
        (2, "a norm no log has", [p["no-norms.jsonl"], "-o", out, "--metric", "layers.0.weight"],
         "none in these logs"),
        (2, "labels for logs", [a, b, "-o", out, "--label", "x"], "--label: 1 label for 2 logs"),
        (2, "an empty label", [a, "-o", out, "--label", ""], "--label: an empty name"),
        (2, "eleven logs", [a] * 11 + ["-o", out], "at most 10 runs"),
        (2, "logs and --weights", [a, "--weights", model, "-o", out], "--weights draws a model"),
        (2, "--weights and --metric", ["--weights", model, "--metric", "eta", "-o", out],
         "--metric is for curves"),
        (2, "an unknown option", [a, "-o", out, "--colour", "red"], "unknown option '--colour'"),
        (2, "an empty log name", ["", "-o", out], "log 1: an empty file name"),
        (1, "a log that is not there", [missing, "-o", out], f"'{missing}': no such file"),
        (1, "a directory as a log", [tmp, "-o", out], "is a directory"),
        (1, "a line that is not JSON", [a, p["not-json.jsonl"], "-o", out],
         "not-json.jsonl:2: not JSON"),
        (1, "a line that is not an object", [p["array.jsonl"], "-o", out],
         "array.jsonl:1: not a JSON object"),
        (1, "two records on a line", [p["two.jsonl"], "-o", out],
         "two.jsonl:1: more than one JSON value on the line"),
        (1, "a record without its epoch", [p["no-epoch.jsonl"], "-o", out],
         "no-epoch.jsonl:2: no \"epoch\" in the record"),
        (1, "a negative epoch", [p["neg-epoch.jsonl"], "-o", out],
         "neg-epoch.jsonl:1: \"epoch\" is not a whole number >= 0"),
        (1, "a record without the metric", [p["no-vcost.jsonl"], "-o", out],
         "no-vcost.jsonl:2: no field validation_cost"),
        (1, "a metric that is text", [p["text-acc.jsonl"], "-o", out, "--metric", "accuracy"],
         "text-acc.jsonl:2: not a number: validation_accuracy"),
        (1, "a log without epochs", [p["empty.jsonl"], "-o", out], "empty.jsonl: no epochs"),
        (1, "a metric null throughout", [p["null-acc.jsonl"], "-o", out, "--metric", "accuracy"],
         "validation_accuracy is null in every record"),
        (2, "--weights and --log-y", ["--weights", model, "--log-y", "-o", out],
         "--log-y is for curves"),
        (1, "--log-y of values that are all 0", [p["zero-acc.jsonl"], "-o", out, "--log-y",
                                                 "--metric", "accuracy"],
         "zero-acc.jsonl: --log-y: no value of validation_accuracy is above 0"),
        (1, "a norm one of the logs lacks", [a, p["no-norms.jsonl"], "-o", out, "--metric",
                                             "layers.0.weight"],
         "no-norms.jsonl:1: no gradient norm of layers.0.weight"),
        (1, "a CSV row that is short", [p["short.csv"], "-o", out, "--metric", "eta"],
         "short.csv:3: fewer cells than the header has"),
        (1, "a CSV cell that is no number", [p["word.csv"], "-o", out, "--metric", "eta"],
         "word.csv:3: eta: 'fast' is not a number"),
        (1, "a CSV header quote that does not end", [p["quote.csv"], "-o", out],
         "quote.csv:1: a quoted cell that does not end"),
        (1, "--weights of a missing model", ["--weights", missing, "-o", out],
         f"--weights: '{missing}': no such file"),
        (1, "--weights of a log", ["--weights", a, "-o", out], a),
        (1, "-o in a missing directory", [a, "-o", os.path.join(tmp, "none", "x.png")], "-o: "),
        (1, "-o a directory", [a, "-o", tmp], "-o: "),
    ]
    for status, name, args, message in cases:
        r = run(cli, "plot", *args)
        said = message in r.stderr and (status != 2 or "usage: backprop plot" in r.stderr)
        check(f"{name}: exit {status}, says so", r.returncode == status and said,
              f"exit {r.returncode}, expected '{message}' in:\n{r.stderr}")
    check("no output left by the failures", not os.path.exists(out))

    # A failure replaces nothing: the old picture stays whole.
    with open(out, "wb") as f:
        f.write(b"old picture")
    r = run(cli, "plot", p["not-json.jsonl"], "-o", out)
    with open(out, "rb") as f:
        kept = f.read() == b"old picture"
    check("a failed plot leaves the old file as it was", r.returncode == 1 and kept)
    leftovers = [n for n in os.listdir(tmp) if n.startswith(".u.png") or n.startswith("u.png.")]
    check("and no temporary file", not leftovers, leftovers)


def check_help(cli):
    r = run(cli, "plot", "--help")
    check("plot --help: exit 0, every flag", r.returncode == 0 and all(
        f in r.stdout for f in ("--out", "--metric", "--label", "--size", "--weights",
                                "--log-y")), r.stderr)
    r = run(cli, "help", "plot")
    check("backprop help plot", r.returncode == 0 and "--weights MODEL" in r.stdout, r.stderr)


# ---- the curves ---------------------------------------------------------------------------

def check_curves(cli, tmp, real_a, real_b, a, b):
    blue, orange, green = RUN_COLOURS
    plot_ok(cli, "two MNIST runs, cost and accuracy", os.path.join(tmp, "c.png"),
            [real_a, real_b], (1200, 800), [blue, orange], absent=[green])
    plot_ok(cli, "one run", os.path.join(tmp, "one.png"), [real_a, "--size", "640x480"],
            (640, 480), [blue], absent=[orange, green])
    plot_ok(cli, "--metric eta (a halving schedule, a rolled-back run)",
            os.path.join(tmp, "eta.png"), [a, b, "--metric", "eta", "--label", "halving",
                                           "--label", "rolled back"], (1200, 800), [blue, orange])
    plot_ok(cli, "--metric layers.0.weight (MNIST runs' gradient norms)",
            os.path.join(tmp, "norm.png"), [real_a, real_b, "--metric", "layers.0.weight",
                                            "--size", "800x500"], (800, 500), [blue, orange])
    plot_ok(cli, "--metric grad_norm:layers.1.bias,seconds --metric train_cost",
            os.path.join(tmp, "three.png"), [real_a, real_b, "--metric",
                                             "grad_norm:layers.1.bias,seconds", "--metric",
                                             "train_cost"], (1200, 800), [blue, orange])
    plot_ok(cli, "--log-y (costs and a gradient norm)", os.path.join(tmp, "log.png"),
            [real_a, real_b, "--log-y", "--metric", "cost,layers.0.weight"], (1200, 800),
            [blue, orange])
    csv = os.path.join(tmp, "c.csv")
    with open(csv, "w") as f:  # a CSV log as train writes it: a header, empty cells for null
        f.write("epoch,eta,train_cost,validation_cost,validation_accuracy,"
                "\"grad_norm:layers.0.weight\"\n0,3,nan,2.5,0.1,1.5\n")
        for e in range(1, 12):
            f.write(f"{e},3,{1 / e},{'' if e == 5 else 0.9 / e},{0.9 - 0.5 / e},{0.1 / e}\n")
    plot_ok(cli, "a CSV log beside a JSON Lines one", os.path.join(tmp, "csv.png"),
            [a, csv, "--metric", "cost,layers.0.weight"], (1200, 800), [blue, orange])


def train(cli, data, tmp, name, eta, extra=()):
    log = os.path.join(tmp, name + ".jsonl")
    r = run(cli, "train", "--data", data, "--epochs", "3", "--layers", "784,16,10", "--eta",
            eta, "--log", log, "--norm-samples", "200", *extra)
    check(f"train --log {name}.jsonl on MNIST", r.returncode == 0, r.stdout + r.stderr)
    return log


def main():
    cli, mode = sys.argv[1], sys.argv[2]
    if mode == "without-plot":
        print("# this build has no cairo: only the command's refusal is checked")
        r = run(cli, "plot", "x.jsonl", "-o", "x.png")
        check("plot without cairo: exit 1, says how to get it", r.returncode == 1 and
              "built without plotting: install libcairo2-dev" in r.stderr, r.stderr)
        r = run(cli, "plot", "--help")
        check("plot --help without cairo: exit 0, says what a build without it does",
              r.returncode == 0 and "A build without cairo" in r.stdout, r.stdout + r.stderr)
        r = run(cli, "plot", "x.jsonl")
        check("plot without cairo: usage errors are still usage errors", r.returncode == 2 and
              "-o: where should the PNG go?" in r.stderr, r.stderr)
        print(f"1..{len(results)}")
        return 0 if all(results) else 1

    data = mnist_dir()
    with tempfile.TemporaryDirectory(prefix="bp-plot-") as tmp:
        if not os.path.exists(os.path.join(data, "train-images-idx3-ubyte")) and \
                not os.path.exists(os.path.join(data, "train-images-idx3-ubyte.gz")):
            check(f"MNIST is in {data} (run scripts/fetch-mnist.sh)", False)
        else:
            model = os.path.join(tmp, "m.safetensors")
            real_a = train(cli, data, tmp, "eta0.5", "0.5", ["--save", model])
            real_b = train(cli, data, tmp, "eta3", "3")
            a, b = synthetic_logs(tmp)
            check_curves(cli, tmp, real_a, real_b, a, b)
            check_weights(cli, tmp, model)
            check_usage(cli, tmp, a, b, model)
            check_help(cli)
    print(f"1..{len(results)}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
