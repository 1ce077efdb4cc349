#!/usr/bin/env python3
"""Fails when two modules include each other, directly or through others.

A module X is fs/X.c with include/batchfs/X.h (a header without a .c file
is a module of its own). X depends on Y when fs/X.c or include/batchfs/X.h
has #include "batchfs/Y.h". Any circle in that graph fails the test, naming
the modules on it, unless it is in KNOWN_CIRCLES.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
INCLUDE = re.compile(r'^\s*#\s*include\s+"batchfs/([A-Za-z0-9_]+)\.h"', re.M)
IGNORED = {"tree_private"}  # the tree's own private header, not a module
# Circles still to be broken; each is a set of modules. None is left.
KNOWN_CIRCLES = []


def graph():
    files = {}
    for path in (ROOT / "fs").glob("*.c"):
        files.setdefault(path.stem, []).append(path)
    for path in (ROOT / "include" / "batchfs").glob("*.h"):
        files.setdefault(path.stem, []).append(path)
    deps = {}
    for module, paths in files.items():
        if module in IGNORED:
            continue
        deps[module] = set()
        for path in paths:
            for target in INCLUDE.findall(path.read_text()):
                if target != module and target not in IGNORED:
                    deps[module].add(target)
    return deps


def circles(deps):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(deps.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10000)
    for v in sorted(deps):
        if v not in index:
            visit(v)
    return found


def main():
    deps = graph()
    if "-v" in sys.argv:
        for module in sorted(deps):
            print(f"{module}: {' '.join(sorted(deps[module]))}")
    bad = [c for c in circles(deps) if c not in KNOWN_CIRCLES]
    for c in bad:
        print("modules include each other: " + " <-> ".join(sorted(c)), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
