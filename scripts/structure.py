#!/usr/bin/env python3
"""The code's shape, as ARCHITECTURE.md states it: no import cycle between the top-level
modules of src/ (from their `crate::x` paths, test code aside) and no function in src/ over
120 lines (test modules aside). Prints what breaks either and exits 1; run by `make test`."""
import os, re, sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "src"
LIMIT = 120


def sources():
    for dp, _, fs in os.walk(ROOT):
        for f in sorted(fs):
            if f.endswith(".rs") and f != "tests.rs":
                p = os.path.join(dp, f)
                yield p, open(p).read().split("#[cfg(test)]")[0]


def long_functions():
    out = []
    for p, text in sources():
        lines = text.split("\n")
        i = 0
        while i < len(lines):
            m = re.match(r"\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)", lines[i])
            if not m:
                i += 1
                continue
            depth, started, j = 0, False, i
            while j < len(lines):
                s = re.sub(r'"(\\.|[^"\\])*"', '""', lines[j])
                s = re.sub(r"'(\\.|[^'\\])'", "''", s).split("//")[0]
                for c in s:
                    if c == "{":
                        depth, started = depth + 1, True
                    elif c == "}":
                        depth -= 1
                if (started and depth == 0) or (not started and s.rstrip().endswith(";")):
                    break
                j += 1
            if j - i + 1 > LIMIT:
                out.append(f"{p}:{i + 1}: fn {m.group(6)} is {j - i + 1} lines (over {LIMIT})")
            i = j + 1 if started else i + 1
    return out


def cycles():
    deps = {}
    for p, text in sources():
        top = os.path.relpath(p, ROOT).split(os.sep)[0].removesuffix(".rs")
        if top in ("main", "lib"):
            continue
        text = re.sub(r"//.*", "", text)
        names = set(re.findall(r"crate::(\w+)", text))
        for group in re.findall(r"use crate::\{([^}]*)\}", text):
            names |= set(re.findall(r"(?:^|,)\s*(\w+)", group))
        deps.setdefault(top, set()).update(n for n in names if n != top)
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in deps.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                edges = "; ".join(f"{a} -> {', '.join(sorted(d for d in deps[a] if d in comp))}" for a in sorted(comp))
                found.append(f"import cycle: {edges}")

    for v in sorted(deps):
        if v not in index:
            visit(v)
    return found


problems = long_functions() + cycles()
for p in problems:
    print(p)
if problems:
    sys.exit(1)
print(f"structure: no import cycle, no function over {LIMIT} lines in {ROOT}/")
