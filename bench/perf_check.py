#!/usr/bin/env python3
"""perf_check.py - the performance regression check behind `meson test --suite perf`.

Two kinds of evidence, neither of them a wall-clock threshold:

1. Instruction counts. bench_step (a fixed 20-step training run plus one evaluation on synthetic
   data, one thread) runs under `valgrind --tool=callgrind`; the inclusive instruction count of
   each op of the training step is compared with bench/baseline.json. Counts do not depend on the
   machine's load. Tolerance: 3% per op (compiler or library updates move counts by a fraction of
   that; a lost fusion or vectorisation moves them by tens of percent).

2. Ratios measured in one run of bench_train (same process, same data, same moment): the epoch
   as a multiple of its GEMM floor, the blas backend's speed-up over the naive loops (its
   baseline kept per OpenBLAS core, since it measures the core's kernels), and the
   saturated net's epoch time over the unsaturated one's ([784,30,10] at eta 3 against eta 0.5,
   B = 10: about 1.0 while the library flushes subnormals inside its steps, 2-6x if it stops).
   On a shared machine such ratios still wander by +-25%, so a regression is flagged at 1.5x the
   baseline ratio (epoch/floor, saturated/unsaturated) or below 0.5x the baseline speed-up. The
   saturation ratio also fails when fewer than SATURATED_SHARE of the eta 3 net's activations
   are below FLT_MIN: then the case was not saturated and its ratio proves nothing.

Usage: perf_check.py --build DIR [--update] [--skip-ratios]
  --update   rewrite bench/baseline.json from this run (the documented refresh command is
             `python3 bench/perf_check.py --build build --update`).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = os.path.join(HERE, "baseline.json")

# op name -> regular expression over callgrind function names; the op's count is the largest
# inclusive count among matching functions (the outermost one).
OPS = {
    "step (whole training step)": r"^bp_train_step$",
    "sgemm (all GEMM calls)": r"^cblas_sgemm$",
    "bias+activation": r"bias_act",
    "derivative (.) delta": r"act_bwd",
    "row sums (BP3)": r"rowsum",
    "bias update (axpy)": r"axpy",
    "BP1 (output delta)": r"^bp_loss_delta$",
    "cost value": r"^bp_loss_value$",
    "mini-batch gather": r"^bp_dataset_gather",
    "evaluation pass": r"^bp_evaluate$",
}
# The training features, each counted as a whole step of its own bench_step run: what momentum,
# Adam, dropout and batch norm add to the fused SGD step (bench_features measures the same in
# time; docs/PERFORMANCE.md has both).
VARIANTS = ("momentum", "adam", "dropout", "batchnorm")
IR_TOLERANCE = 0.03
RATIO_TOLERANCE = 1.5
SPEEDUP_TOLERANCE = 0.5
SATURATED_SHARE = 0.01
SATURATION = "saturated/unsaturated epoch time, 784-30-10, B=10"


def callgrind_counts(build, variant="sgd"):
    exe = os.path.join(build, "bench", "bench_step")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        # meson sets MALLOC_PERTURB_, which makes glibc fill each allocation: that would be
        # counted against whichever op allocated. Valgrind emulates no AVX-512, so a core that
        # scripts/test.sh exports for the native runs (SkylakeX) would die of SIGILL here;
        # the counts are taken with the Haswell kernels, the ones valgrind's CPU gets anyway.
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_PERTURB_"}
        env["OPENBLAS_CORETYPE"] = "Haswell"
        subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, exe,
                        "blas", variant],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out],
                              check=True, capture_output=True, text=True).stdout
    funcs = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\([^)]*\)\s+(?:\S*:)?([^\s\[]+)", line)
        if m:
            name = m.group(2).split(":")[-1]
            funcs[name] = max(funcs.get(name, 0), int(m.group(1).replace(",", "")))
    counts = {}
    for op, pattern in OPS.items():
        matches = [n for n in funcs if re.search(pattern, n)]
        counts[op] = max((funcs[n] for n in matches), default=0)
    return counts


def ratios(build):
    exe = os.path.join(build, "bench", "bench_train")
    # Two threads too: at B = 128 the step is split across the library's own team of threads,
    # and its ratio to the 2-thread GEMM floor guards that split.
    text = subprocess.run([exe, "--json", "--quick", "--small", "--threads", "1,2", "--batches",
                           "10,128"], check=True, capture_output=True, text=True).stdout
    rows = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
    core = next((r["openblas_core"] for r in rows if "openblas_core" in r), "unknown")
    out, shares = {}, {}
    naive = {r["batch"]: r for r in rows if r.get("variant") == "naive"}
    for r in rows:
        if r.get("variant") == "saturation":
            t = r["threads"]
            name = f"{SATURATION}, {t} thread{'s' if t > 1 else ''}"
            out[name] = r["ratio"]
            shares[name] = r["saturated_share"]
            continue
        if r.get("variant") != "blas":
            continue
        b, t = r["batch"], r["threads"]
        out[f"epoch/floor, 784-100-10, B={b}, {t} thread{'s' if t > 1 else ''}"] = r["x_floor"]
        if t == 1 and b in naive:
            out[f"blas speed-up over naive, B={b}"] = naive[b]["epoch_s"] / r["epoch_s"]
    return out, shares, core


# The speed-up over the naive loops is the one ratio that depends on which kernels OpenBLAS
# runs (Zen's AVX2 kernels 20x at B = 10, SkylakeX's AVX-512 ones 39x, the SSE3 Prescott
# fallback 9x: docs/PERFORMANCE.md), so its baselines are kept per OpenBLAS core. The other
# ratios divide by the same core's own GEMM floor and hold on every core.
def split_by_core(ratios_now):
    shared = {k: v for k, v in ratios_now.items() if not k.startswith("blas speed-up")}
    per_core = {k: v for k, v in ratios_now.items() if k.startswith("blas speed-up")}
    return shared, per_core


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--update", action="store_true")
    ap.add_argument("--skip-ratios", action="store_true")
    args = ap.parse_args()

    counts = callgrind_counts(args.build)
    for variant in VARIANTS:
        counts[f"step, {variant}"] = callgrind_counts(args.build, variant)[
            "step (whole training step)"]
    measured = {"instructions": counts}
    shares, core = {}, "unknown"
    if not args.skip_ratios:
        measured["ratios"], shares, core = ratios(args.build)

    with open(BASELINE) as f:
        base = json.load(f)
    core_base = base.get("speed_ups_by_openblas_core", {})

    if args.update:
        out = {"instructions": counts, "ratios": base.get("ratios", {}),
               "speed_ups_by_openblas_core": core_base}
        if not args.skip_ratios:
            out["ratios"], core_base[core] = split_by_core(measured["ratios"])
        with open(BASELINE, "w") as f:
            json.dump(out, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"# baseline written to {BASELINE} (speed-ups for OpenBLAS core {core})")
        return 0

    # The core-specific baselines for this run's core join the shared ones; a core never
    # measured has none to regress from, and says so.
    wanted = dict(base.get("ratios", {}))
    if not args.skip_ratios:
        if core in core_base:
            wanted.update(core_base[core])
        else:
            print(f"# no speed-up baseline for OpenBLAS core {core} (have: "
                  f"{', '.join(sorted(core_base)) or 'none'}); measured "
                  + ", ".join(f"{k} = {v:.3g}" for k, v in measured["ratios"].items()
                              if k.startswith("blas speed-up"))
                  + "; record them with --update")
    failures = 0
    n = 0
    for op, want in base["instructions"].items():
        got = counts.get(op, 0)
        n += 1
        change = (got - want) / want if want else float("inf")
        ok = want > 0 and got > 0 and change <= IR_TOLERANCE
        failures += not ok
        print(f"{'ok' if ok else 'not ok'} {n} - instructions of {op}: {got:,} "
              f"(baseline {want:,}, {change:+.1%}, tolerance +{IR_TOLERANCE:.0%})")
        if change < -IR_TOLERANCE:
            print(f"# {op} got cheaper by {-change:.1%}: refresh the baseline to keep the gain")
    for name, want in wanted.items():
        if args.skip_ratios:
            break
        got = measured["ratios"].get(name)
        n += 1
        note = ""
        if got is None:
            ok = False
        elif name.startswith("epoch/floor"):
            ok = got <= want * RATIO_TOLERANCE
        elif name.startswith(SATURATION):
            share = shares.get(name, 0.0)
            ok = got <= want * RATIO_TOLERANCE and share >= SATURATED_SHARE
            note = (f", {share:.1%} of the eta 3 net's activations below FLT_MIN"
                    f"{'' if share >= SATURATED_SHARE else ': not saturated, proves nothing'}")
        else:
            ok = got >= want * SPEEDUP_TOLERANCE
        failures += not ok
        print(f"{'ok' if ok else 'not ok'} {n} - {name}: {got if got is None else round(got, 3)}"
              f" (baseline {want:.3f}{note})")
    print(f"1..{n}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
