#!/usr/bin/env bash
# blas-core.sh - print the OPENBLAS_CORETYPE this machine should use, or nothing.
#
# OpenBLAS picks its kernels from the CPU's family and model, and a release older than the CPU
# does not know the model: Debian 12's OpenBLAS 0.3.21 runs its SSE3 "Prescott" kernels on a
# Xeon of family 6, model 207, which has AVX-512 (sgemm 2.5x slower; measured in
# docs/PERFORMANCE.md). When the kernels OpenBLAS chose use a narrower vector ISA than the CPU's
# flags allow, this prints the core that matches the flags, for the caller to export. It prints
# nothing when OPENBLAS_CORETYPE is already set (the user's choice stands) or the choice fits.
set -euo pipefail

[[ -z ${OPENBLAS_CORETYPE:-} ]] || exit 0

chosen=$(python3 - <<'PY' 2>/dev/null || true
import ctypes, ctypes.util
name = ctypes.util.find_library("openblas") or "libopenblas.so.0"
lib = ctypes.CDLL(name)
lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())
PY
)
[[ -n $chosen ]] || exit 0

# The widest vectors a core's kernels use: 1 SSE, 2 AVX, 3 AVX2, 4 AVX-512.
width_of() {
    case ${1,,} in
    skylakex | cooperlake | sapphirerapids) echo 4 ;;
    haswell | zen) echo 3 ;;
    sandybridge) echo 2 ;;
    *) echo 1 ;;
    esac
}

flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { [[ $flags == *" $1 "* ]]; }
if has avx512f && has avx512bw && has avx512vl && has avx512dq && has avx512cd; then
    fits=SkylakeX
elif has avx2 && has fma; then
    fits=Haswell
else
    exit 0
fi

# Only a fallback is overridden: a core OpenBLAS chose for a CPU it knows (Zen on Zen 4, say)
# stays, whatever its width, since its authors tuned that pairing.
if (($(width_of "$chosen") <= 2 && $(width_of "$chosen") < $(width_of "$fits"))); then
    echo "blas-core: OpenBLAS chose its $chosen kernels for this CPU; using $fits" >&2
    echo "$fits"
fi
