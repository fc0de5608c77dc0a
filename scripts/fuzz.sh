#!/usr/bin/env bash
# fuzz.sh - build the libFuzzer targets of fuzz/ under AddressSanitizer and UndefinedBehavior-
# Sanitizer and run each for a time budget, from a seed corpus that fuzz/seeds.c writes with
# the library's own writer.
#
#   scripts/fuzz.sh [SECONDS]   SECONDS per target, default 30; everything goes to build-fuzz/
#
# Prints one line per target ("fuzz: NAME: ok, N runs in S s" or "FAILED" with the crashing
# input's path) and writes build-fuzz/results, one "NAME OK|FAIL|SKIP" line per target, which
# scripts/test.sh counts as one test each. Exits 1 if a target failed. Without clang and its
# libFuzzer runtime it says why and skips (exit 0, every target SKIP).
#
# Why a script that calls clang, not a meson option: libFuzzer is clang's, every other build
# here is gcc's, and a meson build directory configured with CC=clang would compile every test
# and bench with it too. This compiles only the library's sources (taken from meson.build's
# lib_sources, so the list lives in one place) and the targets: one object per source, built
# once, linked into each target.
set -uo pipefail
cd "$(dirname "$0")/.."

budget=${1:-30}
out=build-fuzz
targets=(fuzz_safetensors fuzz_idx fuzz_model)
corpus_of() {
    case $1 in fuzz_safetensors) echo safetensors ;; fuzz_idx) echo idx ;; fuzz_model) echo model ;; esac
}

mkdir -p "$out"
: >"$out/results"
skip_all() {
    echo "fuzz: skipped: $1"
    for t in "${targets[@]}"; do echo "$t SKIP" >>"$out/results"; done
    exit 0
}

# clang, and its sanitizer and libFuzzer runtimes (a package of their own on Debian). FUZZ_CC
# names another compiler and skips this.
cc=${FUZZ_CC:-}
if [[ -z $cc ]] && ! scripts/install-deps.sh clang libclang-rt-dev; then
    echo "fuzz: could not install clang and libclang-rt-dev; trying what is here"
fi
if [[ -z $cc ]]; then
    for c in clang clang-16 clang-15 clang-14; do
        command -v "$c" >/dev/null 2>&1 && { cc=$c; break; }
    done
fi
[[ -n $cc ]] || skip_all "no clang on this machine (Debian: apt-get install clang)"
# The runtime comes in its own package on Debian (libclang-rt-N-dev): try a one-line target.
probe=$out/probe
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' \
    >"$probe.c"
"$cc" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" >"$probe.log" 2>&1 ||
    skip_all "$cc cannot link a libFuzzer target ($(head -n 1 "$probe.log"))"

deps=(openblas lapacke zlib libcjson)
pkg_cflags=$(pkg-config --cflags "${deps[@]}") || skip_all "pkg-config lacks one of ${deps[*]}"
pkg_libs=$(pkg-config --libs "${deps[@]}")
# As meson.build compiles the library, less BP_CLONES (ifunc resolvers have no place here: the
# targets run none of the kernels) and with every sanitizer report fatal, so it is a crash.
# backprop.h includes the version header meson generates (include/meson.build): made here the
# same way, from the project's version in meson.build.
version=$(sed -n "s/^  version : '\([0-9]*\.[0-9]*\.[0-9]*\)',$/\1/p" meson.build | head -n 1)
[[ -n $version ]] || { echo "fuzz: no project version found in meson.build"; exit 1; }
IFS=. read -r v_major v_minor v_patch <<<"$version"
mkdir -p "$out/include"
sed -e "s/@BP_VERSION_MAJOR@/$v_major/" -e "s/@BP_VERSION_MINOR@/$v_minor/" \
    -e "s/@BP_VERSION_PATCH@/$v_patch/" -e "s/@BP_VERSION_STRING@/$version/" \
    include/backprop_version.h.in >"$out/include/backprop_version.h"
cflags=(-std=c11 -g -O1 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DBP_NO_CLONES
        -Iinclude -I"$out/include" -Isrc -fno-omit-frame-pointer -fsanitize=address,undefined
        -fno-sanitize-recover=all $pkg_cflags)
mapfile -t sources < <(sed -n '/^lib_sources = files(/,/^)/p' meson.build |
                       grep -o "'src/[^']*\.c'" | tr -d "'")
[[ ${#sources[@]} -gt 0 ]] || { echo "fuzz: no lib_sources found in meson.build"; exit 1; }

echo "fuzz: compiling ${#sources[@]} library sources with $cc"
mkdir -p "$out/obj"
objects=()
build_failed=0
for src in "${sources[@]}"; do
    obj=$out/obj/$(echo "${src%.c}" | tr / _).o
    objects+=("$obj")
    # Coverage for libFuzzer in the library (fuzzer-no-link); its main only in the targets.
    if [[ ! -f $obj || $src -nt $obj || $0 -nt $obj ]]; then
        "$cc" "${cflags[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj" 2>>"$out/build.log" ||
            { echo "fuzz: cannot compile $src (see $out/build.log)"; build_failed=1; }
    fi
done

# The seed writer is an ordinary program: the library's objects and the sanitizers' runtimes,
# without libFuzzer's main.
seeds=$out/corpus-seeds
rm -rf "$seeds"
mkdir -p "$seeds"
if [[ $build_failed -eq 0 ]]; then
    "$cc" "${cflags[@]}" -fsanitize=fuzzer-no-link fuzz/seeds.c "${objects[@]}" $pkg_libs \
        -lm -lpthread -o "$out/seeds" 2>>"$out/build.log" && "$out/seeds" "$seeds" ||
        { echo "fuzz: cannot build or run the seed writer (see $out/build.log)"; build_failed=1; }
fi

failed=0
for t in "${targets[@]}"; do
    if [[ $build_failed -ne 0 ]] ||
        ! "$cc" "${cflags[@]}" -fsanitize=fuzzer "fuzz/$t.c" "${objects[@]}" $pkg_libs -lm \
            -lpthread -o "$out/$t" 2>>"$out/build.log"; then
        echo "fuzz: $t: FAILED to build (see $out/build.log)"
        echo "$t FAIL" >>"$out/results"
        failed=1
        continue
    fi
    name=$(corpus_of "$t")
    # New inputs the run finds go to corpus/NAME (kept between runs, so later runs start
    # further on); the seeds are read but never written to.
    mkdir -p "$out/corpus/$name" "$out/artifacts"
    log=$out/$t.log
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$out/$t" -max_total_time="$budget" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" \
        "$out/corpus/$name" "$seeds/$name" >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    secs=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
    if [[ $rc -eq 0 ]]; then
        echo "fuzz: $t: ok, ${runs:-?} runs (${secs:-?}/s) in ${budget} s," \
             "corpus $(ls "$out/corpus/$name" | wc -l) inputs"
        echo "$t OK" >>"$out/results"
    else
        artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -n 1 | cut -d' ' -f5)
        echo "fuzz: $t: FAILED (exit $rc) after ${runs:-?} runs; input: ${artifact:-none};" \
             "log: $log"
        grep -m 5 -E 'ERROR|runtime error|SUMMARY' "$log" | sed 's/^/fuzz:   /'
        echo "$t FAIL" >>"$out/results"
        failed=1
    fi
done
exit $failed
