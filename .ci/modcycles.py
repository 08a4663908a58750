#!/usr/bin/env python3
"""Fail on an import cycle between modules of any crate in the workspace.

A module's edges are the sibling modules it names in a path (`crate::a::..`,
`super::b::..`, `self::c::..`, or a `use` of them). Only siblings are
compared: `a::x` naming `crate::b::y` is the edge a -> b among the crate's
top-level modules, and `a::x` naming `crate::a::z` is x -> z inside `a`.
A child naming its parent's own items is not an edge (the parent declares
the child). Prints every strongly connected component of two or more
modules and exits 1 if there is one.
"""
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_files(src):
    """Map module path tuple -> file for every .rs file under src."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, src)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main", "mod"):
                rel = rel[:-1]
            if rel and rel[0] == "bin":
                continue
            mods[tuple(rel)] = full
    return mods


PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)::\{([^;]*)\};", re.S)


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def resolve(mod, head, rest):
    if head == "crate":
        base = ()
    elif head == "self":
        base = mod
    else:
        base = mod[:-1]
        while rest and rest[0] == "super":
            base = base[:-1]
            rest = rest[1:]
    return base + tuple(rest)


def edges_for(mod, target, mods):
    """Sibling edge implied by module `mod` naming path `target`."""
    # Longest prefix of target that is a module.
    t = target
    while t and t not in mods:
        t = t[:-1]
    if not t:
        return None
    i = 0
    while i < len(mod) and i < len(t) and mod[i] == t[i]:
        i += 1
    if i == len(mod) or i == len(t):
        return None  # ancestor or descendant: not a sibling edge
    return (mod[: i + 1], t[: i + 1])


def crate_edges(src):
    mods = module_files(src)
    edges = defaultdict(set)
    for mod, path in mods.items():
        text = strip(open(path, encoding="utf-8").read())
        targets = []
        for m in USE_GROUP.finditer(text):
            for part in re.split(r"[,{}]", m.group(2)):
                part = part.strip().split(" as ")[0].strip()
                if part:
                    segs = [s for s in part.split("::") if s and s != "*"]
                    targets.append((m.group(1), segs))
        for m in PATH.finditer(text):
            segs = [s for s in m.group(2).split("::") if s and s != "{"]
            targets.append((m.group(1), segs))
        for head, segs in targets:
            target = resolve(mod, head, segs)
            e = edges_for(mod, target, mods)
            if e:
                edges[e[0]].add(e[1])
    return mods, edges


def sccs(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def main():
    crates = os.path.join(ROOT, "crates")
    bad = 0
    for name in sorted(os.listdir(crates)):
        src = os.path.join(crates, name, "src")
        if not os.path.isdir(src):
            continue
        mods, edges = crate_edges(src)
        for comp in sccs(mods.keys(), edges):
            bad += 1
            names = sorted("::".join(m) for m in comp)
            print(f"crates/{name}: import cycle between {len(names)} modules: {', '.join(names)}")
            for m in sorted(comp):
                for t in sorted(edges[m] & set(comp)):
                    print(f"    {'::'.join(m)} -> {'::'.join(t)}")
    if bad:
        print(f"{bad} import cycle(s)")
        return 1
    print("no import cycle between modules in any crate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
