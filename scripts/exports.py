#!/usr/bin/env python3
"""exports.py - the shared library's ABI: what it exports, and the record that guards it.

  exports.py map HEADER OUT
      write the linker version script naming the functions HEADER declares
  exports.py layout-source HEADER OUT.c
      write a C program that prints the layout of HEADER's public structs (size, alignment,
      every field's offset and size) and the value of every enum constant
  exports.py check HEADER LIB.so [ABI LAYOUT_EXE SOVERSION]
      TAP test: `nm -D` of LIB.so lists HEADER's functions and no others; with the record ABI
      (abi/libbackprop.abi), also that LIB.so's SONAME carries SOVERSION, that the record is
      the one for SOVERSION, and that the functions, their prototypes, the struct layouts
      (from LAYOUT_EXE) and the enum values are exactly what the record says
  exports.py record HEADER LAYOUT_EXE SOVERSION ABI
      rewrite the record from the header and the layout (`meson compile -C BUILD abi-record`
      runs it); once the record says `released yes` (set by hand when a release ships),
      refused when it would remove or change an entry while SOVERSION is still the one the
      record holds (that is an ABI break, and a break bumps the soversion in meson.build
      first). A new soversion's record starts `released no`: until its first release its ABI
      may still change.

Why a generated list rather than `global: bp_*;`: GCC gives a target_clones function's ifunc
and resolver default visibility whatever -fvisibility says, so the pattern exported private
kernels (bp_axpy_fast, bp_vexp_fast, ...). Deriving the list from the header keeps one source
of truth, and the check catches whatever else might leak.

Why a record checked in beside the header: a test that compares the library with its own
header cannot notice that a release broke the previous one. The record is what soversion N
promised; any difference fails the 'exports' test, so a change to the ABI is always a visible
edit of abi/libbackprop.abi. An addition (a new function, struct or enum constant) is recorded
under the same soversion; a removal or a change (a prototype, a struct's size or a field's
offset or size, an enum constant's value) needs the soversion bumped, which `record` enforces.
"""
import os
import re
import subprocess
import sys


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def header_text(header):
    return strip_comments(open(header, encoding="utf-8").read())


def declared(header):
    # `BP_API <return type> name(`, the return type possibly a pointer, never a `;` in between.
    names = re.findall(r"\bBP_API\b[^;(]*?\b(bp_\w+)\s*\(", header_text(header))
    if not names:
        sys.exit(f"exports.py: no BP_API declarations found in {header}")
    return sorted(set(names))


def normalise_param(param):
    """The type of one parameter, without its name: `const float *x` -> `const float *`."""
    param = " ".join(param.split())
    m = re.match(r"^(.*?[\s*])([A-Za-z_]\w*)$", param)
    if m and m.group(1).strip():
        param = m.group(1)
    return re.sub(r"\s*\*\s*", "*", param).strip()


def prototypes(header):
    """name -> `return type (param types)`, parameter names left out (renaming one is no
    break)."""
    protos = {}
    for ret, name, params in re.findall(r"\bBP_API\b([^;(]*?)\b(bp_\w+)\s*\(([^;]*?)\)\s*;",
                                        header_text(header), flags=re.S):
        ret = re.sub(r"\s*\*\s*", "*", " ".join(ret.split())).strip()
        types = ",".join(normalise_param(p) for p in params.split(","))
        protos[name] = f"{ret} ({types})"
    return protos


def public_structs(header):
    """[(name, [field, ...])] for every struct the header defines (opaque ones have no body)."""
    structs = []
    for name, body, again in re.findall(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;",
                                        header_text(header), flags=re.S):
        fields = []
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            parts = [p.strip() for p in decl.split(",")]
            # The first declarator follows the type; later ones stand alone (`float a, b`).
            first = re.sub(r"\[[^\]]*\]", "", parts[0])
            fields.append(re.findall(r"[A-Za-z_]\w*", first)[-1])
            fields += [re.findall(r"[A-Za-z_]\w*", re.sub(r"\[[^\]]*\]", "", p))[0]
                       for p in parts[1:]]
        structs.append((again, fields))
    return structs


def enum_constants(header):
    consts = []
    for body in re.findall(r"typedef\s+enum\s+\w*\s*\{(.*?)\}", header_text(header), flags=re.S):
        for item in body.split(","):
            m = re.match(r"\s*(BP_\w+)", item)
            if m:
                consts.append(m.group(1))
    return consts


def write_map(header, out):
    body = "".join(f"    {n};\n" for n in declared(header))
    with open(out, "w", encoding="utf-8") as f:
        f.write("/* Generated from include/backprop.h by scripts/exports.py. */\n")
        f.write("{\n  global:\n" + body + "  local:\n    *;\n};\n")


def write_layout_source(header, out):
    lines = ["/* Generated from include/backprop.h by scripts/exports.py: prints the ABI's",
             " * layouts for the record abi/libbackprop.abi. */",
             "#include <stddef.h>", "#include <stdio.h>", "#include <backprop.h>", "",
             "#define MEMBER_SIZE(T, f) sizeof(((T *)0)->f)", "",
             "int main(void)", "{"]
    for name, fields in public_structs(header):
        lines.append(f'    printf("struct {name} size %zu align %zu\\n", sizeof({name}), '
                     f"_Alignof({name}));")
        for f in fields:
            lines.append(f'    printf("field {name}.{f} offset %zu size %zu\\n", '
                         f"offsetof({name}, {f}), MEMBER_SIZE({name}, {f}));")
    for c in enum_constants(header):
        lines.append(f'    printf("enum {c} %lld\\n", (long long){c});')
    lines += ["    return 0;", "}", ""]
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def current_entries(header, layout_exe):
    """The ABI as the header and the compiler see it: key -> value, the record's lines."""
    entries = {f"function {n}": p for n, p in prototypes(header).items()}
    out = subprocess.run([layout_exe], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        words = line.split(" ", 2)
        entries[f"{words[0]} {words[1]}"] = words[2]
    return entries


def read_record(path):
    """(soversion, released, entries): entries maps `kind name` to the rest of its line."""
    soversion, released, entries = None, False, {}
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        words = line.split(" ", 2)
        if words[0] == "soversion":
            soversion = words[1]
        elif words[0] == "released":
            released = words[1] == "yes"
        else:
            entries[f"{words[0]} {words[1]}"] = words[2] if len(words) > 2 else ""
    return soversion, released, entries


def soname(lib):
    out = subprocess.run(["readelf", "-d", lib], check=True, capture_output=True,
                         text=True).stdout
    m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
    return m.group(1) if m else None


class Tap:
    def __init__(self):
        self.n, self.failed = 0, 0

    def result(self, ok, what, notes=()):
        self.n += 1
        self.failed += not ok
        print(("ok" if ok else "not ok") + f" {self.n} - {what}")
        for note in notes if not ok else ():
            print(f"#   {note}")


def check(header, lib, record=None, layout_exe=None, soversion=None):
    tap = Tap()
    want = set(declared(header))
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True,
                         text=True).stdout
    have = {line.split()[-1] for line in out.splitlines() if line.strip()}
    extra, missing = sorted(have - want), sorted(want - have)
    tap.result(not extra, "nothing exported beyond the header",
               [f"exported but not declared: {n}" for n in extra])
    tap.result(not missing, f"all {len(want)} declared functions exported",
               [f"declared but not exported: {n}" for n in missing])
    if record:
        check_record(tap, header, lib, record, layout_exe, soversion)
    print(f"1..{tap.n}")
    return 1 if tap.failed else 0


def check_record(tap, header, lib, record, layout_exe, soversion):
    rec_so, released, recorded = read_record(record)
    name = soname(lib)
    tap.result(name == f"libbackprop.so.{soversion}",
               f"the library's SONAME is libbackprop.so.{soversion}", [f"SONAME: {name}"])
    tap.result(rec_so == soversion, f"{os.path.basename(record)} is the record of soversion "
               f"{soversion}", [f"it records soversion {rec_so}; after a bump, record it again "
                                "(`meson compile -C BUILD abi-record`)"])
    now = current_entries(header, layout_exe)
    fix = "`meson compile -C BUILD abi-record`"
    for kind, label in (("function", "functions and their prototypes"),
                        ("struct", "public structs' sizes and alignments"),
                        ("field", "public structs' field offsets and sizes"),
                        ("enum", "enum constants' values")):
        rec = {k: v for k, v in recorded.items() if k.startswith(kind + " ")}
        cur = {k: v for k, v in now.items() if k.startswith(kind + " ")}
        notes = []
        # Before its first release a soversion's ABI may still change (record says so).
        brk = f"an ABI break (bump lib_soversion in meson.build, then {fix})" if released else \
            f"unreleased soversion {rec_so}, so no bump ({fix})"
        for k in sorted(rec.keys() - cur.keys()):
            notes.append(f"removed, {brk}: {k}")
        for k in sorted(k for k in rec.keys() & cur.keys() if rec[k] != cur[k]):
            notes.append(f"changed, {brk}: {k}: recorded '{rec[k]}', now '{cur[k]}'")
        for k in sorted(cur.keys() - rec.keys()):
            notes.append(f"new, not recorded yet (no bump needed: {fix}): {k} {cur[k]}")
        tap.result(not notes, f"{label} as recorded for soversion {rec_so}", notes)


def record(header, layout_exe, soversion, path):
    now = current_entries(header, layout_exe)
    released = False
    if os.path.exists(path):
        old_so, old_released, old = read_record(path)
        released = old_released and old_so == soversion
        broken = sorted(k for k in old if k not in now or now[k] != old[k])
        if broken and released:
            print(f"exports.py: these entries of soversion {soversion} would be removed or "
                  "changed, an ABI break; bump lib_soversion in meson.build and record again:",
                  file=sys.stderr)
            for k in broken:
                print(f"  {k}", file=sys.stderr)
            return 1
    order = {"function": 0, "struct": 1, "field": 1, "enum": 2}
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# The ABI of libbackprop.so.{soversion}, written by `scripts/exports.py record`"
                " and checked\n# by the 'exports' test. Additions keep the soversion; removing or"
                " changing a line is an\n# ABI break and needs lib_soversion in meson.build bumped"
                " first (README, 'The library'),\n# once `released yes` says a release"
                " shipped it (set by hand).\n# Layouts are those of LP64 Linux (x86-64,"
                " AArch64).\n")
        f.write(f"soversion {soversion}\n")
        f.write(f"released {'yes' if released else 'no'}\n")
        # Functions by name; structs (each followed by its fields) and enum constants in the
        # header's order, so a diff reads like the header's.
        for k in sorted(now, key=lambda k: (order[k.split()[0]],
                                            k if k.startswith("function") else "")):
            f.write(f"{k} {now[k]}\n")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    usage = {"map": 2, "layout-source": 2, "record": 4}
    if not args or (args[0] in usage and len(args) != usage[args[0]] + 1) or \
            (args[0] == "check" and len(args) not in (3, 6)) or \
            args[0] not in list(usage) + ["check"]:
        sys.exit(__doc__)
    if args[0] == "map":
        write_map(args[1], args[2])
    elif args[0] == "layout-source":
        write_layout_source(args[1], args[2])
    elif args[0] == "record":
        sys.exit(record(*args[1:]))
    else:
        sys.exit(check(*args[1:]))
