#!/usr/bin/env python3
"""Import cycles between the modules of a Rust crate, read from its sources as text.

Every `use crate::…`, `super::…`, `self::…` and child-module path in a file (outside
`#[cfg(test)]` and comments) is an edge from that file's module to the module it names; the
strongly connected components of more than one module are the cycles.

Usage: python3 scripts/import_cycles.py src [--prefix verify] [--top] [--edges]
  --prefix M  only edges between modules under M (e.g. the cycles inside verify/)
  --top       modules folded to their top-level module (source, sink, verify, …)
  --edges     also print each module's direct edges
Exit status 0 always: a listing, not a gate."""
import os, re, sys, collections
src = sys.argv[1]
prefix = None
top = '--top' in sys.argv
if '--prefix' in sys.argv:
    prefix = sys.argv[sys.argv.index('--prefix')+1]
mods = {}  # module path tuple -> file
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith('.rs'): continue
        p = os.path.relpath(os.path.join(root, f), src)
        parts = p[:-3].split('/')
        if parts[-1] == 'mod': parts = parts[:-1]
        if parts == ['main']: continue  # the binary: it uses the library by its crate name
        if parts == ['lib']: parts = []
        mods[tuple(parts)] = os.path.join(root, f)

def strip(text):
    """Blanks out comments, string, byte-string, raw-string and char literals (one pass)."""
    out = []; i = 0; n = len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i); i = n if j < 0 else j; continue
        if text.startswith('/*', i):
            depth = 0
            while i < n:
                if text.startswith('/*', i): depth += 1; i += 2; continue
                if text.startswith('*/', i):
                    depth -= 1; i += 2
                    if depth == 0: break
                    continue
                i += 1
            continue
        m = re.match(r'b?r(#*)"', text[i:])
        if m and (i == 0 or not (text[i-1].isalnum() or text[i-1] == '_')):
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            i = n if j < 0 else j + len(end); out.append('""'); continue
        if c == '"' or (c == 'b' and text.startswith('b"', i) and (i == 0 or not (text[i-1].isalnum() or text[i-1] == '_'))):
            i += 1 if c == '"' else 2
            while i < n and text[i] != '"':
                i += 2 if text[i] == '\\' else 1
            i += 1; out.append('""'); continue
        if c == "'":
            m = re.match(r"'(\\.[^']*|[^'\\])'", text[i:])
            if m: i += len(m.group(0)); out.append("' '"); continue
        out.append(c); i += 1
    return ''.join(out)

def resolve(path):
    # longest prefix that is a module
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in mods: return tuple(path[:n])
    return None

def expand_use(body):
    """expand a use tree a::{b, c::{d}} into paths"""
    body = body.strip()
    m = re.match(r'^([\w:]*?)(?:::)?\{(.*)\}$', body, re.S)
    if m:
        base = m.group(1)
        inner = m.group(2)
        items, depth, cur = [], 0, ''
        for ch in inner:
            if ch == '{': depth += 1
            if ch == '}': depth -= 1
            if ch == ',' and depth == 0:
                items.append(cur); cur = ''
            else: cur += ch
        items.append(cur)
        out = []
        for it in items:
            it = it.strip()
            if not it: continue
            for sub in expand_use(it):
                out.append((base + '::' + sub) if base else sub)
        return out
    body = re.sub(r'\s+as\s+\w+$', '', body)
    return [body]

edges = collections.defaultdict(set)
for mod, f in mods.items():
    text = strip(open(f).read())
    # drop #[cfg(test)] mod tests { ... } roughly: cut from '#[cfg(test)]' to end
    i = text.find('#[cfg(test)]')
    if i >= 0: text = text[:i]
    paths = []
    for m in re.finditer(r'\buse\s+([^;]+);', text):
        paths += expand_use(m.group(1).replace('\n', ' '))
    for m in re.finditer(r'(?<![\w:])(\w+(?:::\w+)+)', text):
        paths.append(m.group(1))
    for p in paths:
        segs = [s.strip() for s in p.split('::') if s.strip()]
        if not segs: continue
        segs = [x for x in segs if x != 'self' or segs.index(x) == 0]
        cur = list(mod)
        if segs[0] == 'crate': cur = []; segs = segs[1:]
        elif segs[0] == 'self': segs = segs[1:]
        elif segs[0] == 'super':
            while segs and segs[0] == 'super':
                cur = cur[:-1]
                segs = segs[1:]
        elif tuple(list(mod) + segs[:1]) in mods and len(mod) > 0:
            pass  # relative path into a child module
        else:
            continue  # extern crate or local
        target = resolve(cur + segs)
        if target is None or target == mod: continue
        edges[mod].add(target)

def key(m):
    if top: return m[:1] if m else ('lib',)
    return m
g = collections.defaultdict(set)
for a, bs in edges.items():
    if prefix and (not a or a[0] != prefix): continue
    for b in bs:
        if prefix and (not b or b[0] != prefix): continue
        # ignore edge into own parent mod.rs (re-exports) only if requested
        ka, kb = key(a), key(b)
        if ka != kb: g[ka].add(kb)
# tarjan
index, low, stack, on, sccs, idx = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v] = low[v] = idx[0]; idx[0] += 1; stack.append(v); on.add(v)
    for w in g.get(v, ()):
        if w not in index: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
nodes = set(g) | {b for bs in g.values() for b in bs}
for v in sorted(nodes):
    if v not in index: sc(v)
name = lambda m: '::'.join(m) or 'crate'
for comp in sccs:
    cs = set(comp)
    print('CYCLE (%d): %s' % (len(comp), ', '.join(sorted(name(c) for c in comp))))
    for a in sorted(cs):
        for b in sorted(g[a] & cs):
            print('   %s -> %s' % (name(a), name(b)))
if not sccs: print("no cycles")
if "--edges" in sys.argv:
    for a in sorted(g): print("EDGES", name(a), ":", " ".join(sorted(name(b) for b in g[a])))
