#!/usr/bin/env bash
# test.sh - the whole test suite on a fresh Debian 12 machine: install what it needs, fetch
# real MNIST, build and run every suite (fast, slow, perf, fidelity, torch, onnx, mpi) in a release
# build, then fast and slow again in an address+undefined sanitizer build (instruction counts
# mean nothing there, and the book's trainings would take an hour), and the fast suites in a
# ThreadSanitizer build (they run training steps on 2 and 3 threads). Ends with the line
# `tests: N passed, M failed`, counting every meson test of the three builds and one test per
# fuzz target (scripts/fuzz.sh, run last).
set -uo pipefail
cd "$(dirname "$0")/.."

# valgrind for the perf suite; python3-torch for the torch suite (examples/load_in_torch.py);
# python3-onnx for the onnx suite's checker; dataset-fashion-mnist for the install suite's
# --data fashion run.
scripts/install-deps.sh valgrind python3-torch python3-onnx dataset-fashion-mnist || exit 1
BACKPROP_MNIST_DIR=$(scripts/fetch-mnist.sh | tail -n 1) || exit 1
export BACKPROP_MNIST_DIR
# ONNX Runtime for the onnx suite (onnxruntime-node, pinned; node and npm if missing). If it
# cannot be installed, that suite's test tries again and fails saying why; the rest runs.
if BACKPROP_ONNXRUNTIME_DIR=$(scripts/install-onnxruntime.sh | tail -n 1); then
    export BACKPROP_ONNXRUNTIME_DIR
fi

# A build that does not configure or compile counts as one failure (its tests never ran).
failed_builds=0
run_build() { # dir, meson test options, meson setup options...
    local dir=$1 test_opts=$2
    shift 2
    rm -f "$dir/meson-logs/testlog.json"
    if [[ ! -f $dir/build.ninja ]] && ! meson setup "$dir" "$@"; then
        failed_builds=$((failed_builds + 1))
        return
    fi
    if ! meson compile -C "$dir"; then
        failed_builds=$((failed_builds + 1))
        return
    fi
    # When OpenBLAS does not know this CPU and fell back to narrower kernels than it has, every
    # program of the suites (not only the CLI, which restarts itself) runs the fitting ones:
    # the first build asks its own tool which (`backprop openblas-core`), the others inherit it.
    local core
    if [[ -z ${OPENBLAS_CORETYPE:-} ]] && core=$("$dir/backprop" openblas-core) && [[ -n $core ]]; then
        echo "test.sh: OpenBLAS fell back to narrower kernels on this CPU; OPENBLAS_CORETYPE=$core"
        export OPENBLAS_CORETYPE=$core
    fi
    # shellcheck disable=SC2086
    meson test -C "$dir" --print-errorlogs --num-processes 2 $test_opts
}

# fidelity-long (tests/fidelity.py's LONG: Nielsen's 60-epoch conv runs, an hour and more
# together) does not fit CI's 25 minutes; `meson test -C build --suite fidelity-long` runs it.
run_build build "--no-suite fidelity-long" --buildtype=release
# UBSan reports are made fatal so undefined behaviour fails the test that hit it.
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    run_build build-sanitize "--no-suite perf --no-suite fidelity --no-suite fidelity-long --no-suite torch --no-suite onnx --no-suite mpi" --buildtype=debugoptimized -Db_sanitize=address,undefined \
    -Db_lundef=false
# A race found by TSan fails the test that hit it. OpenBLAS is not instrumented, so TSan cannot
# see how its worker threads hand C back to the caller and reports their writes as races (seen
# on SkylakeX in sgemm_beta): in this build OpenBLAS runs every call on the calling thread
# (BP_OPENBLAS_SERIAL, set by meson.build; the environment variable also keeps its idle pool
# from starting), while the library's own team of threads, which TSan can judge, still splits
# the steps of the net and team suites. No suppressions: a race in our code still fails.
# It is also the build without MPI (-Dmpi=disabled): the tool's one-process path, which every
# build without Open MPI takes, compiled and tested too.
OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1 \
    run_build build-tsan "--suite fast" --buildtype=debugoptimized -Db_sanitize=thread \
    -Db_lundef=false -Dmpi=disabled

# The fuzz targets (fuzz/) under ASan and UBSan, about 30 s each from the seed corpus: one test
# per target in the count below (scripts/fuzz.sh; skipped, and counted as neither, without
# clang).
scripts/fuzz.sh 30

# Count the results meson recorded for the three builds, and the fuzz targets'.
python3 - "$failed_builds" <<'PY'
import json, sys
passed = failed = 0
for d in ("build", "build-sanitize", "build-tsan"):
    try:
        lines = open(f"{d}/meson-logs/testlog.json").read().splitlines()
    except OSError:
        continue
    for line in lines:
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL", "SKIP"):
            passed += r != "SKIP"
        else:
            failed += 1
try:
    for line in open("build-fuzz/results").read().splitlines():
        r = line.split()[-1]
        passed += r == "OK"
        failed += r == "FAIL"
except OSError:
    failed += 1  # fuzz.sh ended before it could say anything
failed += int(sys.argv[1])
print(f"tests: {passed} passed, {failed} failed")
sys.exit(1 if failed or passed == 0 else 0)
PY
