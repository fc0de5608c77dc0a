#!/usr/bin/env python3
"""scaling_model.py - data-parallel step time and efficiency at P ranks, from measured
one-rank compute and a ring all-reduce cost model (docs/SCALING.md explains and uses it).

  python3 bench/scaling_model.py [--table FILE] [--alpha US] [--beta GBITS,GBITS]
                                 [--small tree|ring] [--algorithm ring|halving]

The compute table is the minimum one-thread epoch time (train_seconds of `backprop train
--threads 1 --epochs 1 --batch b`) of 50,000 MNIST images at each local batch b; the built-in
one is docs/SCALING.md's. --table reads lines "net b [run] seconds" instead (nets big,
small, cnn, and big_unfused etc. for the --clip-norm runs; the minimum per net and b is
kept). Prints markdown tables.
"""
import argparse
import math
import sys

N_TRAIN = 50000  # samples in one epoch (MNIST's training file less its 10,000 validation)

# Each net: its label, the gradient arena's float count (every parameter tensor rounded up to
# 16 floats: what the one MPI_Allreduce sums), and the global batch of the strong scaling.
NETS = {
    "big": ("[784,1024,1024,10]", 1863696, 256),
    "small": ("[784,100,10]", 79536, 32),
    "cnn": ("CNN", 85728, 256),  # bench/conv_epoch.c's network3, docs/SCALING.md
}

# Minimum of 6 one-thread epochs (train_seconds), seconds, 2026-12-03 (docs/SCALING.md,
# "Measurements"; the CNN's b = 1 at --eta 0.003, see there).
MEASURED = {
    "big": {1: 9.040, 2: 21.671, 4: 10.772, 8: 7.833, 16: 6.314, 32: 5.561, 64: 4.440,
            128: 4.219, 256: 4.133, 512: 4.219, 1024: 4.260, 2048: 4.503, 4096: 4.666},
    "small": {1: 0.243, 2: 0.565, 4: 0.281, 8: 0.227, 16: 0.190, 32: 0.164, 64: 0.170,
              128: 0.164, 256: 0.163, 512: 0.166, 1024: 0.163, 2048: 0.159, 4096: 0.188},
    "cnn": {1: 6.414, 2: 6.534, 4: 6.105, 8: 5.996, 16: 6.068, 32: 6.967, 64: 6.793,
            128: 7.479, 256: 7.505, 512: 7.692, 1024: 8.146, 2048: 7.747, 4096: 7.732},
}

# The same with the update unfused (--clip-norm 1e30: backpropagation into the gradient
# arena, a norm pass, then the update pass), as every rank runs under MPI less the norm pass:
# an upper bound on a rank's compute. Minimum of 6 epochs (3 for small at b = 4).
MEASURED_UNFUSED = {
    "big": {1: 35.101, 4: 20.633, 32: 6.386, 128: 4.958},
    "small": {1: 0.990, 4: 0.541, 16: 0.261, 32: 0.215},
}

# bench/mpi.sh on this machine, the same day: 2 ranks of 1 thread, global batch, train
# seconds per epoch (from samples/s) and rank 0's share of it in the collective's sums.
MEASURED_2_RANKS = {"big": (256, N_TRAIN / 21523, 0.088), "small": (32, N_TRAIN / 398105, 0.222)}

RANKS = (8, 64, 512)


def compute(table, b):
    """Seconds per step of one rank with local batch b: epoch time / ceil(N_TRAIN / b) at a
    measured b; past the largest, that one's time per sample times b (per-sample time is
    flat there); between two, linear in b."""
    if b <= 0:
        return 0.0
    if b in table:
        return table[b] / math.ceil(N_TRAIN / b)
    top = max(table)
    if b > top:
        return table[top] / N_TRAIN * b
    lo = max(k for k in table if k < b)
    hi = min(k for k in table if k > b)
    f = (b - lo) / (hi - lo)
    return (1 - f) * compute(table, lo) + f * compute(table, hi)


def allreduce(nbytes, p, alpha, beta, algorithm):
    """Seconds of one all-reduce of nbytes over p ranks. Ring: 2 (p-1) alpha + 2 (p-1)/p N/beta
    (reduce-scatter then all-gather, p-1 steps each). Halving: the same bandwidth term with
    recursive halving/doubling, 2 log2(p) alpha (Rabenseifner)."""
    if p == 1:
        return 0.0
    lat = 2 * (p - 1) * alpha if algorithm == "ring" else 2 * math.log2(p) * alpha
    return lat + 2 * (p - 1) / p * nbytes / beta


def small_allreduce(p, alpha, how):
    """The per-step sum of 2 doubles, latency only: binomial tree reduce + broadcast,
    2 log2(p) alpha (what MPI does for tiny messages), or a ring's 2 (p-1) alpha."""
    if p == 1:
        return 0.0
    return 2 * math.log2(p) * alpha if how == "tree" else 2 * (p - 1) * alpha


class Model:
    def __init__(self, tables, unfused, alpha, betas, small, algorithm):
        self.tables, self.unfused, self.alpha, self.betas = tables, unfused, alpha, betas
        self.small, self.algorithm = small, algorithm

    def comm(self, net, p, beta):
        nbytes = 4 * NETS[net][1]
        return (allreduce(nbytes, p, self.alpha, beta, self.algorithm) +
                small_allreduce(p, self.alpha, self.small))

    def step(self, net, global_batch, p, beta):
        """T(P): the slowest rank's compute (the first ranks get ceil(B/P) samples; ranks past
        B get none but still sum and update) plus the communication."""
        local = math.ceil(global_batch / p)
        return compute(self.tables[net], local) + self.comm(net, p, beta)

    def efficiency(self, net, global_batch, p, beta):
        return self.step(net, global_batch, 1, beta) / (p * self.step(net, global_batch, p, beta))


def ms(s):
    return f"{s * 1e3:.3g}" if s < 1e-2 else f"{s * 1e3:.1f}"


def pct(x):
    return f"{100 * x:.2g}%" if x < 0.1 else f"{100 * x:.0f}%"


def gb(beta):
    return f"{beta * 8 / 1e9:g} Gb/s"


def print_compute(m):
    print("## Measured one-rank compute per step (1 thread)\n")
    print("| b | " + " | ".join(f"{NETS[n][0]} epoch s | ms/step | us/sample" for n in m.tables)
          + " |")
    print("|---" * (1 + 3 * len(m.tables)) + "|")
    for b in sorted(set().union(*m.tables.values())):
        cells = []
        for n, t in m.tables.items():
            if b in t:
                c = compute(t, b)
                cells += [f"{t[b]:.3f}", ms(c), f"{c / b * 1e6:.1f}"]
            else:
                cells += ["", "", ""]
        print(f"| {b} | " + " | ".join(cells) + " |")
    print()


def print_comm(m):
    print("## Modelled communication per step, ms (gradient all-reduce + 2-double sum)\n")
    ps = (2,) + RANKS
    print("| net | arena | " + " | ".join(f"P={p} {gb(b)}" for b in m.betas for p in ps) + " |")
    print("|---" * (2 + len(ps) * len(m.betas)) + "|")
    for n in m.tables:
        size = 4 * NETS[n][1]
        print(f"| {NETS[n][0]} | {size / 1e6:.3f} MB | " +
              " | ".join(ms(m.comm(n, p, b)) for b in m.betas for p in ps) + " |")
    print()


def print_strong(m):
    beta0 = m.betas[0]
    print(f"## Strong scaling (fixed global batch B); times at {gb(beta0)}\n")
    print("| net | B | P | local b | compute ms | comm ms | T(P) ms | speedup | " +
          " | ".join(f"eff. {gb(b)}" for b in m.betas) + " |")
    print("|---" * (8 + len(m.betas)) + "|")
    for n in m.tables:
        B = NETS[n][2]
        t1 = m.step(n, B, 1, beta0)
        print(f"| {NETS[n][0]} | {B} | 1 | {B} | {ms(t1)} | 0 | {ms(t1)} | 1 | " +
              " | ".join("100%" for _ in m.betas) + " |")
        for p in RANKS:
            local = math.ceil(B / p)
            note = f"{local}" if B >= p else f"1 ({B} of {p} ranks busy)"
            c, k = compute(m.tables[n], local), m.comm(n, p, beta0)
            print(f"| | | {p} | {note} | {ms(c)} | {ms(k)} | {ms(c + k)} | {t1 / (c + k):.2f} | " +
                  " | ".join(pct(m.efficiency(n, B, p, b)) for b in m.betas) + " |")
    print()


def print_weak(m, locals_):
    beta0 = m.betas[0]
    print(f"## Weak scaling (fixed local batch b, global B = P b); times at {gb(beta0)}\n")
    print("efficiency = T(1, b) / T(P, b): throughput per rank against one rank at the same b\n")
    print("| net | b | P | B | T(P) ms | " + " | ".join(f"eff. {gb(b)}" for b in m.betas) + " |")
    print("|---" * (5 + len(m.betas)) + "|")
    for n in m.tables:
        for b in locals_:
            t1 = compute(m.tables[n], b)
            for p in RANKS:
                tp = t1 + m.comm(n, p, beta0)
                print(f"| {NETS[n][0]} | {b} | {p} | {p * b} | {ms(tp)} | " +
                      " | ".join(pct(t1 / (t1 + m.comm(n, p, be))) for be in m.betas) + " |")
    print()


def threshold(m, n, p, beta, goal):
    """The smallest power-of-two global batch from which on (every larger power of two up to
    2^22 too) the efficiency is at least goal."""
    found = None
    for k in range(22, -1, -1):
        if m.efficiency(n, 2 ** k, p, beta) >= goal:
            found = 2 ** k
        else:
            break
    return found


def print_thresholds(m):
    print("## Global batch where scaling stops paying\n")
    print("smallest power-of-two B from which P ranks beat one rank (speedup > 1, i.e. "
          "efficiency > 1/P), and from which efficiency >= 50%; "
          "B past 4096 uses the largest measured b's time per sample\n")
    print("| net | P | " + " | ".join(f"beats 1 rank {gb(b)} | eff >= 50% {gb(b)}"
                                      for b in m.betas) + " |")
    print("|---" * (2 + 2 * len(m.betas)) + "|")
    for n in m.tables:
        for p in RANKS:
            cells = []
            for b in m.betas:
                faster = threshold(m, n, p, b, 1.0 / p + 1e-12)
                half = threshold(m, n, p, b, 0.5)
                cells += [str(faster) if faster else "> 4M", str(half) if half else "> 4M"]
            print(f"| {NETS[n][0]} | {p} | " + " | ".join(cells) + " |")
    print()


def print_check(m):
    beta0 = m.betas[0]
    print(f"## P = 2 against bench/mpi.sh (model at {gb(beta0)})\n")
    print("| net | B | measured s/epoch | measured rest ms/step | compute(B/2) ms | "
          "measured comm ms/step | model comm ms/step | measured comm share | "
          "model comm share |")
    print("|---" * 9 + "|")
    for n, (B, seconds, share) in MEASURED_2_RANKS.items():
        if n not in m.tables:
            continue
        steps = math.ceil(N_TRAIN / B)
        c, k = compute(m.tables[n], B // 2), m.comm(n, 2, beta0)
        print(f"| {NETS[n][0]} | {B} | {seconds:.2f} | {ms(seconds * (1 - share) / steps)} | "
              f"{ms(c)} | {ms(seconds * share / steps)} | {ms(k)} | {pct(share)} | "
              f"{pct(k / (c + k))} |")
    print()


def print_unfused(m):
    """The strong-scaling rows again with each rank's compute measured unfused, where that
    local batch was measured: T(1) stays the fused one-rank step (what one process runs)."""
    beta0 = m.betas[0]
    print(f"## Strong scaling with the ranks' unfused compute (upper bound), {gb(beta0)}\n")
    print("| net | B | P | local b | compute fused ms | unfused ms | eff. fused | eff. unfused |")
    print("|---" * 8 + "|")
    for n, unfused in m.unfused.items():
        if n not in m.tables:
            continue
        B = NETS[n][2]
        t1 = m.step(n, B, 1, beta0)
        for p in (2,) + RANKS:
            local = math.ceil(B / p)
            if local not in unfused:
                continue
            f, u, k = compute(m.tables[n], local), compute(unfused, local), m.comm(n, p, beta0)
            print(f"| {NETS[n][0]} | {B} | {p} | {local} | {ms(f)} | {ms(u)} | "
                  f"{pct(t1 / (p * (f + k)))} | {pct(t1 / (p * (u + k)))} |")
    print()


def read_table(path):
    """Lines "net b [run] seconds": net one of NETS, or one of them with "_unfused" (the
    --clip-norm runs); other names are skipped, a note on stderr. The minimum per net and b."""
    tables, unfused, skipped = {}, {}, set()
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or parts[0].startswith("#"):
                continue
            net, b, s = parts[0], int(parts[1]), float(parts[-1])
            into = tables
            if net.endswith("_unfused"):
                net, into = net[:-len("_unfused")], unfused
            if net not in NETS:
                skipped.add(parts[0])
                continue
            t = into.setdefault(net, {})
            t[b] = min(s, t.get(b, s))
    if skipped:
        print(f"scaling_model: skipped {', '.join(sorted(skipped))} (nets: {', '.join(NETS)})",
              file=sys.stderr)
    order = lambda d: {n: d[n] for n in NETS if n in d}
    return order(tables), order(unfused)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", help='lines "net b seconds" (the minimum per net and b is kept)')
    ap.add_argument("--alpha", type=float, default=5.0, help="latency per message, us [5]")
    ap.add_argument("--beta", default="25,100", help="link bandwidths, Gb/s; the first sets "
                    "the times columns [25,100]")
    ap.add_argument("--small", choices=("tree", "ring"), default="tree",
                    help="the 2-double sum: 2 log2(P) alpha, or 2 (P-1) alpha [tree]")
    ap.add_argument("--algorithm", choices=("ring", "halving"), default="ring",
                    help="the gradient all-reduce's latency term: ring 2 (P-1) alpha, or "
                    "recursive halving/doubling 2 log2(P) alpha [ring]")
    ap.add_argument("--weak", default="32,256", help="local batches of the weak table [32,256]")
    a = ap.parse_args()
    tables, unfused = read_table(a.table) if a.table else (MEASURED, MEASURED_UNFUSED)
    betas = [float(x) * 1e9 / 8 for x in a.beta.split(",")]
    m = Model(tables, unfused, a.alpha * 1e-6, betas, a.small, a.algorithm)
    print(f"alpha {a.alpha:g} us, beta {', '.join(gb(b) for b in betas)}; gradient all-reduce: "
          f"{a.algorithm}; 2-double sum: {a.small}\n")
    print_compute(m)
    print_comm(m)
    print_strong(m)
    print_weak(m, [int(x) for x in a.weak.split(",")])
    print_thresholds(m)
    print_unfused(m)
    print_check(m)


if __name__ == "__main__":
    main()
