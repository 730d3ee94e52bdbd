#!/usr/bin/env python3
"""Lists the public names of the vendor's Python package (hicann/hixl,
src/python/llm_datadist) against ours, as a Markdown table.

    PYTHONPATH=build/python python3 scripts/compare_vendor_python.py \
        <hixl checkout>/src/python/llm_datadist/llm_datadist

The vendor's side is read from its source (ast: it imports Ascend modules we
do not have); ours is imported, so a name counts only if the installed module
really has it. For each public class: its methods, properties and class
constants (enum members); for each function and method: its parameter names,
so a renamed or missing argument shows as "differs".
"""
import ast
import importlib
import inspect
import os
import sys


def vendor_exports(pkg_dir):
    """The names the vendor's __init__ exports, with the module each comes from."""
    init = ast.parse(open(os.path.join(pkg_dir, "__init__.py")).read())
    out = {}
    for node in init.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llm_datadist"):
            rel = node.module.split(".")[1:]
            for alias in node.names:
                out[alias.asname or alias.name] = (os.path.join(pkg_dir, *rel) + ".py", alias.name)
    return out


def params(fn):
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    if fn.args.vararg:
        names.append("*" + fn.args.vararg.arg)
    if fn.args.kwarg:
        names.append("**" + fn.args.kwarg.arg)
    return [n for n in names if n not in ("self", "cls")]


def vendor_members(cls):
    """Public methods (with parameters), properties and class-level constants."""
    members = {}
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("_") and node.name != "__init__":
                continue
            decos = {d.id if isinstance(d, ast.Name) else getattr(d, "attr", "") for d in node.decorator_list}
            if "setter" in decos:
                continue
            kind = "property" if "property" in decos else "method"
            members[node.name] = (kind, params(node) if kind == "method" else None)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name) and not t.id.startswith("_"):
                    members[t.id] = ("constant", None)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if not node.target.id.startswith("_"):
                members[node.target.id] = ("field", None)
    return members


def our_params(obj):
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    out = []
    for p in sig.parameters.values():
        if p.name in ("self", "cls"):
            continue
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}.get(p.kind, "")
        out.append(prefix + p.name)
    return out


def compare_params(theirs, ours):
    if ours is None:
        return "implemented"
    if theirs == ours:
        return "implemented"
    # Extra trailing keyword arguments of ours (extensions) are compatible.
    if ours[: len(theirs)] == theirs:
        return "implemented (+ " + ", ".join(ours[len(theirs):]) + ")"
    if "**kwargs" in ours or "*args" in ours:
        return "implemented (takes " + ", ".join(ours) + ")"
    return "differs: ours (" + ", ".join(ours) + ") vs (" + ", ".join(theirs) + ")"


# Public classes reached through an object rather than exported by name.
REACHED = {"CacheManager": ("v2/cache_manager.py", "llm_datadist.cache_manager")}


def main():
    pkg_dir = sys.argv[1]
    ours = importlib.import_module("llm_datadist")
    names = vendor_exports(pkg_dir)
    for name, (rel, module) in REACHED.items():
        names[name] = (os.path.join(pkg_dir, rel), name)
        setattr(ours, name, getattr(importlib.import_module(module), name))
    rows, missing, checked = [], 0, 0
    for name, (path, orig) in sorted(names.items()):
        tree = ast.parse(open(path).read())
        node = next((n for n in tree.body if getattr(n, "name", None) == orig), None)
        obj = getattr(ours, name, None)
        checked += 1
        if obj is None:
            rows.append((name, "", "MISSING"))
            missing += 1
            continue
        if isinstance(node, ast.FunctionDef):
            rows.append((name, "function", compare_params(params(node), our_params(obj))))
            continue
        rows.append((name, "class", "implemented"))
        if node is None:
            continue
        for member, (kind, theirs) in vendor_members(node).items():
            checked += 1
            if member == "__init__":
                verdict = compare_params(theirs, our_params(obj))
                if verdict != "implemented":
                    rows.append((name + "(...)", "constructor", verdict))
                continue
            if not hasattr(obj, member):
                rows.append((name + "." + member, kind, "MISSING"))
                missing += 1
                continue
            if kind == "method":
                verdict = compare_params(theirs, our_params(getattr(obj, member)))
                if verdict != "implemented":
                    rows.append((name + "." + member, kind, verdict))
    print("| vendor name | kind | ours |")
    print("| --- | --- | --- |")
    for r in rows:
        print("| `%s` | %s | %s |" % r)
    print("\n%d names checked (classes, functions and their members); %d rows listed (a member that matches"
          " exactly is not); %d missing" % (checked, len(rows), missing))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
