#!/usr/bin/env python3
"""exports.py - the shared library exports exactly the functions include/backprop.h declares.

  exports.py map HEADER OUT        write the linker version script naming them
  exports.py check HEADER LIB.so   TAP test: `nm -D` of LIB.so lists those names and no others

Why a generated list rather than `global: bp_*;`: GCC gives a target_clones function's ifunc
and resolver default visibility whatever -fvisibility says, so the pattern exported private
kernels (bp_axpy_fast, bp_vexp_fast, ...). Deriving the list from the header keeps one source
of truth, and the check catches whatever else might leak.
"""
import re
import subprocess
import sys


def declared(header):
    text = open(header, encoding="utf-8").read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    # `BP_API <return type> name(`, the return type possibly a pointer, never a `;` in between.
    names = re.findall(r"\bBP_API\b[^;(]*?\b(bp_\w+)\s*\(", text)
    if not names:
        sys.exit(f"exports.py: no BP_API declarations found in {header}")
    return sorted(set(names))


def write_map(header, out):
    body = "".join(f"    {n};\n" for n in declared(header))
    with open(out, "w", encoding="utf-8") as f:
        f.write("/* Generated from include/backprop.h by scripts/exports.py. */\n")
        f.write("{\n  global:\n" + body + "  local:\n    *;\n};\n")


def check(header, lib):
    want = set(declared(header))
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True,
                         text=True).stdout
    have = {line.split()[-1] for line in out.splitlines() if line.strip()}
    extra, missing = sorted(have - want), sorted(want - have)
    print("1..2")
    print(("ok" if not extra else "not ok") + " 1 - nothing exported beyond the header")
    for n in extra:
        print(f"#   exported but not declared: {n}")
    print(("ok" if not missing else "not ok") + f" 2 - all {len(want)} declared functions exported")
    for n in missing:
        print(f"#   declared but not exported: {n}")
    return 1 if extra or missing else 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("map", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "map":
        write_map(sys.argv[2], sys.argv[3])
    else:
        sys.exit(check(sys.argv[2], sys.argv[3]))
