#!/usr/bin/env bash
# test_bench.sh - `backprop bench`: it finds the harness's programs (beside itself in a build
# tree, in $BACKPROP_BENCH_DIR, or says where it looked), runs a quick suite whose JSON lines
# carry the harness's header, and refuses bad command lines with status 2. TAP on stdout.
set -u
bp=$1
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else not_ok "$1"; printf '# %s\n' "$out" | head -20; fi; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

out=$("$bp" bench --list 2>&1); rc=$?
check "--list finds every suite's program in the build tree" \
    '[[ $rc -eq 0 ]] && [[ $(grep -c "/bench/bench_" <<<"$out") -eq 6 ]] && ! grep -q "not found" <<<"$out"'

out=$("$bp" bench --quick --json --suite ops 2>"$tmp/err"); rc=$?
check "--quick --json --suite ops succeeds" '[[ $rc -eq 0 ]]'
check "its first line is the harness header, as JSON" \
    '/usr/bin/python3 -c "import json,sys; h=json.loads(sys.argv[1]); assert h[\"cpu\"] and h[\"openblas_core\"] and h[\"commit\"]" "$(head -n 1 <<<"$out")"'
check "every line is a JSON object and BLAS rows carry a speed-up over naive" \
    '/usr/bin/python3 -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines()]
blas = [r for r in rows if r.get(\"backend\") == \"blas\"]
assert blas and all(r[\"speedup\"] > 0 for r in blas)
" <<<"$out"'

out=$("$bp" bench --quick --json --suite conv 2>"$tmp/err"); rc=$?
check "--quick --json --suite conv: a header, the net, an epoch per batch size, the peak memory" \
    '[[ $rc -eq 0 ]] && /usr/bin/python3 -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines()]
assert rows[0][\"openblas_core\"] and rows[1][\"arch\"].startswith(\"conv:20x5x5\")
epochs = [r for r in rows if \"per_epoch\" in r]
assert [r[\"batch\"] for r in epochs] == [10, 64] and all(r[\"per_epoch\"] > 0 for r in epochs)
assert all(0 <= r[\"accuracy\"] <= 1 for r in epochs) and rows[-1][\"peak_resident_mb\"] > 0
" <<<"$out"'

for kind in lstm gru; do
    out=$("$bp" bench --quick --json --suite $kind 2>"$tmp/err"); rc=$?
    check "--quick --json --suite $kind: the net, one epoch at B = 64, the peak memory" \
        '[[ $rc -eq 0 ]] && /usr/bin/python3 -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines()]
assert rows[1][\"arch\"] == sys.argv[1] + \":128,dense:10:softmax\"
epochs = [r for r in rows if \"per_epoch\" in r]
assert [r[\"batch\"] for r in epochs] == [64] and epochs[0][\"per_epoch\"] > 0
assert rows[-1][\"peak_resident_mb\"] > 0
" $kind <<<"$out"'
done

out=$("$bp" bench --quick --suite ops -- --layers 784,37,10 2>&1); rc=$?
check "flags after -- reach the suite's program (its forward rows have m = 37)" \
    '[[ $rc -eq 0 ]] && grep -Eq "^fwd +[a-z-]+ +1 +37 " <<<"$out"'

out=$("$bp" bench --help); rc=$?
check "--help documents every flag with its default" \
    '[[ $rc -eq 0 ]] && for f in --quick --json --suite --list; do grep -q -- "$f" <<<"$out" || exit 1; done; grep -q "\[train,ops\]" <<<"$out"'

usage() { # name, expected message, args...
    local name=$1 msg=$2
    shift 2
    out=$("$bp" bench "$@" 2>&1); rc=$?
    check "usage error: $name" '[[ $rc -eq 2 ]] && grep -q -- "$msg" <<<"$out"'
}
usage "unknown suite" "unknown suite 'nope'" --suite nope
usage "unknown suite in a list" "unknown suite 'x'" --suite train,x
usage "--suite without a value" "needs a value" --suite
usage "unknown flag" "unknown option" --frobnicate
usage "stray argument" "unexpected argument 'train'" train
usage "flags after -- with two suites" "one suite" --suite train,ops -- --small

# A copy of the tool away from its build tree (and from an install) cannot find the harness:
# it says where it looked and fails with status 1; BACKPROP_BENCH_DIR points it back.
cp "$bp" "$tmp/backprop"
out=$(BACKPROP_BENCH_DIR= "$tmp/backprop" bench --quick --suite ops 2>&1); rc=$?
if [[ -x /usr/local/libexec/backprop/bench_ops ]]; then
    ok "# SKIP an installed harness in /usr/local/libexec/backprop is found by design"
else
    check "without the harness: status 1 and where it looked" \
        '[[ $rc -eq 1 ]] && grep -q "no bench_ops in $tmp/bench" <<<"$out"'
fi
out=$(BACKPROP_BENCH_DIR="$(dirname "$bp")/bench" "$tmp/backprop" bench --list 2>&1); rc=$?
check "BACKPROP_BENCH_DIR is looked in first" \
    '[[ $rc -eq 0 ]] && [[ $(grep -c "^ops *$(dirname "$bp")/bench/bench_ops" <<<"$out") -eq 1 ]]'

echo "1..$n"
exit $((failed > 0))
