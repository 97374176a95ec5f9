#!/usr/bin/env python3
"""Import circles between top-level modules inside each crate of the workspace.
A module M uses N when M's files (src/M.rs and src/M/**) name `crate::N` (in a use
statement or a path; comments are left out). Exits 1 when a crate has a circle.
Usage: python3 /tmp/tools/cycles.py [crate_dir ...]  (default: crates/*)"""
import os, re, sys, glob
def modules(src):
    mods = {}
    for path in glob.glob(os.path.join(src, '**', '*.rs'), recursive=True):
        rel = os.path.relpath(path, src)
        parts = rel[:-3].split(os.sep)
        top = parts[0]
        if top in ('lib', 'main'): top = 'lib'
        mods.setdefault(top, []).append((path, parts))
    return mods
def uses(text, names):
    found = set()
    # expand `use crate::{a, b::c}` groups
    for m in re.finditer(r'crate::\{([^}]*)\}', text):
        for item in m.group(1).split(','):
            item = item.strip().split('::')[0].strip()
            if item in names: found.add(item)
    for m in re.finditer(r'crate::(\w+)', text):
        if m.group(1) in names: found.add(m.group(1))
    return found
def main():
    crates = sys.argv[1:] or sorted(glob.glob('crates/*'))
    total = 0
    for c in crates:
        src = os.path.join(c, 'src')
        mods = modules(src)
        names = set(mods) - {'lib'}
        graph = {m: set() for m in names}
        for m in names:
            for path, parts in mods[m]:
                text = open(path).read()
                # drop test modules and comments
                text = re.sub(r'//[^\n]*', '', text)
                graph[m] |= uses(text, names) - {m}
        # find cycles: strongly connected components
        index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
        def strong(v):
            index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
            for w in graph[v]:
                if w not in index: strong(w); low[v] = min(low[v], low[w])
                elif w in on: low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v: break
                if len(comp) > 1: sccs.append(comp)
        for v in sorted(graph):
            if v not in index: strong(v)
        for comp in sccs:
            total += 1
            pairs = [f"{a}->{b}" for a in comp for b in sorted(graph[a]) if b in comp]
            print(f"{c}: circle among {sorted(comp)}: {', '.join(pairs)}")
    print(f"{total} circle(s)")
    return 1 if total else 0

sys.exit(main())
