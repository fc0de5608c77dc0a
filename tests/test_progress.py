#!/usr/bin/env python3
"""test_progress.py - `backprop train`'s live bar and its Ctrl-C, on real MNIST.

    test_progress.py BACKPROP_CLI

The bar: on a terminal (a pty, and a tmux pane as a person sees it) it is drawn inside each
epoch and wiped before each epoch's line; into a pipe it is not, unless --progress always;
--progress never, or --quiet, draws none on a terminal. Ctrl-C: the first SIGINT in the middle
of an epoch stops training after the mini-batch, writes the summary and the checkpoint of
where it stopped, and exits 130 (SIGTERM: 143); `--resume` of that checkpoint ends with the net of the run that
was never interrupted, to the bit (one thread). A second SIGINT while the checkpoint is being
written ends the process by the signal and leaves the checkpoint whole and no temporary file.
No test here depends on how fast anything runs: every wait is for an event, under a bound only
there to end a hung run.

TAP on stdout; skips with the reason when MNIST is missing (tmux's case when tmux is).
"""
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

HUNG = 300  # seconds after which a run that shows no sign of the awaited event is a failure
# Epochs long enough that the bar (10 redraws a second at most) is drawn in each: a hidden
# layer of 200 on one thread trains MNIST at well under 500,000 samples a second.
NET = ["--layers", "784,200,10", "--threads", "1"]
BAR = re.compile(r"\repoch (\d+)/(\d+) \[[#.]+\] +\d+/50000 +\d+ samples/s  ETA [0-9:?]+, run ")
CLEAR = "\r\033[K"

results = []


def ok(cond, what, notes=()):
    results.append(bool(cond))
    print(f"{'ok' if cond else 'not ok'} {len(results)} - {what}")
    if not cond:
        for n in notes:
            for line in str(n).splitlines()[-25:]:
                print(f"#   {line}")
    sys.stdout.flush()
    return cond


def mnist_dir():
    if os.environ.get("BACKPROP_MNIST_DIR"):
        return os.environ["BACKPROP_MNIST_DIR"]
    base = os.environ.get("BACKPROP_DATA_DIR") or os.path.join(os.environ.get("HOME", "."),
                                                              ".cache", "backprop")
    return os.path.join(base, "mnist")


def on_pty(cmd):
    """Run cmd with stdout and stderr on a pseudo-terminal 100 columns wide: (status, text)."""
    master, slave = pty.openpty()
    import fcntl
    import termios
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], HUNG)
        if not ready:
            p.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(), b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def piped(cmd):
    """cmd with stdout and stderr on pipes: (status, stdout, stderr), carriage returns kept."""
    r = subprocess.run(cmd, capture_output=True)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def epoch_lines(text):
    return len(re.findall(r"^epoch \d+/\d+  validation", text, re.M))


def bar_checks(text, label):
    """The bar is drawn in every epoch and wiped just before each epoch's line."""
    epochs = sorted({int(m.group(1)) for m in BAR.finditer(text)})
    ok(epochs == [1, 2], f"{label}: the bar is drawn inside both epochs", [repr(text[-600:])])
    lines = [m.start() for m in re.finditer(r"epoch \d+/2  validation", text)]
    ok(len(lines) == 2 and all(text[:i].endswith(CLEAR) for i in lines),
       f"{label}: the bar is wiped before each epoch line", [repr(text[-600:])])


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: test_progress.py BACKPROP_CLI")
    cli = os.path.abspath(sys.argv[1])
    data = mnist_dir()
    if not os.path.exists(os.path.join(data, "train-images-idx3-ubyte")) and \
            not os.path.exists(os.path.join(data, "train-images-idx3-ubyte.gz")):
        print(f"1..0 # SKIP no MNIST in {data} (scripts/fetch-mnist.sh)")
        return 0
    tmp = tempfile.mkdtemp(prefix="bp-progress-")
    base = [cli, "train", "--data", data] + NET

    # ---- the bar ----------------------------------------------------------------------
    rc, text = on_pty(base + ["--epochs", "2"])
    ok(rc == 0, "train on a terminal exits 0", [text])
    bar_checks(text, "on a terminal")
    ok("test accuracy" in text and not BAR.search(text.split("epoch 2/2  validation")[-1]),
       "on a terminal: no bar after the last epoch line", [repr(text[-400:])])

    rc, text = on_pty(base + ["--epochs", "2", "--progress", "never"])
    ok(rc == 0 and "\r" not in text and "\033[" not in text and epoch_lines(text) == 2,
       "--progress never: a terminal gets the lines alone", [repr(text[-400:])])

    rc, text = on_pty(base + ["--epochs", "2", "--quiet"])
    ok(rc == 0 and "\r" not in text and "\033[" not in text and epoch_lines(text) == 0 and
       "test accuracy" in text, "--quiet: a terminal gets no bar and no epoch lines, the "
       "results only", [repr(text[-400:])])

    rc, text, err = piped(base + ["--epochs", "2"])
    ok(rc == 0 and "\r" not in text and "\033[" not in text and epoch_lines(text) == 2 and
       "\r" not in err, "into a pipe: the lines alone, no bar and no escapes", [text, err])

    rc, text, err = piped(base + ["--epochs", "2", "--progress", "always"])
    bar_checks(text, "--progress always into a pipe")

    r = subprocess.run([cli, "train", "--progress", "sometimes"], capture_output=True,
                       text=True)
    ok(r.returncode == 2 and "--progress: 'sometimes' is not auto, always or never" in r.stderr,
       "--progress sometimes is a usage error (exit 2)", [r.returncode, r.stderr])

    tmux_check(cli, data, tmp)

    # ---- Ctrl-C -----------------------------------------------------------------------
    straight = os.path.join(tmp, "straight.st")
    r = subprocess.run(base + ["--epochs", "3", "--save", straight], capture_output=True,
                       text=True)
    ok(r.returncode == 0, "the uninterrupted run", [r.stdout, r.stderr])
    for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        interrupt_and_resume(base, tmp, sig, status, straight)

    second_sigint_during_checkpoint(cli, data, tmp)

    shutil.rmtree(tmp, ignore_errors=True)
    print(f"1..{len(results)}")
    return 0 if all(results) else 1


def tmux_check(cli, data, tmp):
    """What a person sees in a terminal: the bar on the screen while an epoch runs, and when the
    run is over the epoch lines with no bar left among them."""
    if not shutil.which("tmux"):
        ok(True, "tmux pane # SKIP tmux is not installed")
        return
    sock = f"bp-progress-{os.getpid()}"
    done = os.path.join(tmp, "tmux-done")
    cmd = " ".join([cli, "train", "--data", data] + NET + ["--epochs", "3"]) + \
        f"; echo $? > {done}; sleep {HUNG}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    subprocess.run(tmux + ["new-session", "-d", "-s", "bar", "-x", "120", "-y", "30", cmd],
                   check=True)
    try:
        seen_bar, screen = False, ""
        deadline = time.monotonic() + HUNG
        while time.monotonic() < deadline and not os.path.exists(done):
            screen = subprocess.run(tmux + ["capture-pane", "-p", "-t", "bar"],
                                    capture_output=True, text=True).stdout
            if re.search(r"^epoch \d/3 \[[#.]+\] +\d+/50000 .* samples/s  ETA ", screen, re.M):
                seen_bar = True
            time.sleep(0.02)
        while not os.path.exists(done) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
        screen = subprocess.run(tmux + ["capture-pane", "-p", "-t", "bar"],
                                capture_output=True, text=True).stdout
        ok(seen_bar, "tmux: the bar is on the screen while an epoch trains", [screen])
        lines = [l for l in screen.splitlines() if l.startswith("epoch ")]
        ok(len(lines) == 3 and all("validation" in l and "[" not in l for l in lines) and
           "ETA" not in screen and open(done).read().strip() == "0",
           "tmux: afterwards the screen holds the three epoch lines and no bar", [screen])
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True)


def wait_for(path, pattern, proc):
    """Until the file at path matches pattern (True), or proc ended or hung (False)."""
    deadline = time.monotonic() + HUNG
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(path, "rb") as f:  # bytes: text mode would turn the bar's \r into \n
                if re.search(pattern, f.read().decode(errors="replace")):
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    return False


def tensors(path):
    """A model file's tensor bytes by name (the safetensors header's data_offsets)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    return {k: data[v["data_offsets"][0]:v["data_offsets"][1]]
            for k, v in header.items() if k != "__metadata__"}


def temporaries(d):
    return [f for f in os.listdir(d) if ".tmp-" in f]


def interrupt_and_resume(base, tmp, sig, status, straight):
    name = signal.Signals(sig).name
    d = os.path.join(tmp, name)
    os.mkdir(d)
    ckpt, summary, out = (os.path.join(d, f) for f in ("run.ckpt", "summary.json", "out"))
    # A checkpoint only at epoch 100: the one there after the signal is the interruption's.
    with open(out, "w") as f:
        p = subprocess.Popen(base + ["--epochs", "3", "--checkpoint", ckpt,
                                     "--checkpoint-every", "100", "--summary-json", summary],
                             stdout=f, stderr=subprocess.STDOUT)
    started = wait_for(out, r"epoch 1/3  validation", p)
    p.send_signal(sig)
    rc = p.wait(HUNG)
    text = open(out).read()
    m = re.search(rf"^interrupted by {name}: stopped in epoch 2 after (\d+) of 50000 samples; "
                  rf"the run is in {re.escape(ckpt)}", text, re.M)
    ok(started and rc == status and m, f"{name} in epoch 2: stops there and exits {status}",
       [rc, text])
    try:
        s = json.load(open(summary))
    except (OSError, ValueError) as e:
        s = {"error": str(e)}
    ok(s.get("interrupted") == name and s.get("epochs") == 1 and "test_accuracy" in s,
       f"{name}: the summary is written and says so", [s])
    ok(os.path.exists(ckpt) and not temporaries(d), f"{name}: the checkpoint, no temporary file",
       [os.listdir(d)])
    stopped_at = int(m.group(1)) if m else -1
    ok(0 < stopped_at < 50000 and stopped_at % 10 == 0,
       f"{name}: stopped between mini-batches of the epoch ({stopped_at} samples)")

    resumed = os.path.join(d, "resumed.st")
    r = subprocess.run([base[0], "train", "--data", base[3], "--threads", "1", "--resume", ckpt,
                        "--save", resumed], capture_output=True, text=True)
    ok(r.returncode == 0 and "epoch 2/3" in r.stdout and "epoch 3/3" in r.stdout,
       f"{name}: --resume goes on from the middle of epoch 2", [r.stdout, r.stderr])
    same = os.path.exists(resumed) and tensors(resumed) == tensors(straight)
    ok(same, f"{name}: the resumed run ends with the uninterrupted run's net, to the bit")


def second_sigint_during_checkpoint(cli, data, tmp):
    """A net of 1.8 million parameters under Adam: a checkpoint of 22 MB, long enough to write
    that a second SIGINT sent once its temporary file is seen arrives while it is written."""
    d = os.path.join(tmp, "second")
    os.mkdir(d)
    ckpt, out = os.path.join(d, "big.ckpt"), os.path.join(d, "out")
    landed = 0
    for attempt in range(5):
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        with open(out, "w") as f:
            p = subprocess.Popen([cli, "train", "--data", data, "--layers", "784,1000,1000,10",
                                  "--threads", "1", "--optimizer", "adam", "--eta", "0.001",
                                  "--epochs", "2", "--checkpoint", ckpt,
                                  "--checkpoint-every", "100", "--progress", "always",
                                  "--summary-json", os.path.join(d, "s.json")],
                                 stdout=f, stderr=subprocess.STDOUT)
        # Training has begun when the bar is first drawn.
        started = wait_for(out, r"\repoch 1/2 \[", p)
        p.send_signal(signal.SIGINT)
        seen = False
        deadline = time.monotonic() + HUNG
        while p.poll() is None and time.monotonic() < deadline:
            if temporaries(d):
                p.send_signal(signal.SIGINT)
                seen = bool(temporaries(d))  # still there once the signal was sent
                break
        rc = p.wait(HUNG)
        left = temporaries(d)
        whole = subprocess.run([cli, "inspect", "--model", ckpt], capture_output=True,
                               text=True) if os.path.exists(ckpt) else None
        ok(started and rc == -signal.SIGINT and not left and whole and whole.returncode == 0,
           f"second SIGINT {'during' if seen else 'around'} the checkpoint's write (try "
           f"{attempt + 1}): ended by the signal, the checkpoint whole, no temporary file",
           [rc, left, open(out, "rb").read().decode(errors="replace")[-500:],
            whole.stderr if whole else "no checkpoint"])
        if seen:
            landed += 1
            break
    ok(landed, "a second SIGINT reached the process while the temporary file existed")


if __name__ == "__main__":
    sys.exit(main())
