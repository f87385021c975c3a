"""Extract nunchaku's caching API (``nunchaku/caching/**``) as deterministic JSON, without importing it.

Why this exists: fbcache's nunchaku adapter calls into the engine's caching layer, and that layer
moved between releases (1.0.0 moved the first-block decision to ``caching/fbcache.py`` and made it
return 0-dim tensors). The real engine needs CUDA kernels, so CI tests the adapter against
stand-ins (``tests/standins/nunchaku-*``). This tool reads the caching modules' *source* - of a
tagged release in a nunchaku git directory, or of a stand-in folder - with ``ast``, so a committed
manifest of the real API can be compared with each stand-in (``tests/test_nunchaku_standins.py``).

Per module it records: top-level functions (parameters with kind and default as source text, a
return kind, and the cache decisions it makes), classes with their methods, and the imports from
inside the ``nunchaku`` package (``reexports``: names a module imports at module level from another
``nunchaku.caching`` module).

A function's ``decisions`` are its calls of the first-block decision (``check_and_apply_cache`` or
``get_can_use_cache``), in source order, each with its ``mode`` and ``threshold`` arguments as
source text (None: not passed). They show which stage decides with which threshold: the double
first-block cache (``use_double_fb_cache=True``) decides ``mode="multi"`` after the first
double-stream block with ``residual_diff_threshold_multi``, then ``mode="single"`` after the first
single-stream block with ``residual_diff_threshold_single``.

Return kinds come from a small, deterministic heuristic on the ``return`` expressions (type
annotations are ignored, so a stand-in's type hints cannot change a kind):

- ``none`` (no ``return`` with a value), ``generator`` (contains ``yield``);
- literals: ``bool``, ``number``, ``str``, ``none``; a tuple literal: ``tuple[k1, k2, ...]`` (an
  element with several kinds is ``other``);
- ``tensor``: a call of ``torch.<anything>``, a call of a ``torch.Tensor`` method (``.abs()``,
  ``.mean()``, ``.to()``, ... see ``TENSOR_METHODS``), arithmetic or a comparison with a ``tensor``
  operand, or a subscript of a ``tensor``;
- a comparison without a ``tensor`` operand, ``not``, ``isinstance``, ``bool()``: ``bool``;
  ``.item()``, ``float()``, ``int()``, ``len()``: ``number``; arithmetic of two ``number``: ``number``;
- a call of a function of the same module, or of one imported from another caching module: that
  function's kind; a name: the kinds of all its assignments in the function (tuple unpacking
  included; a parameter counts as ``other``), if they agree, else ``other``;
- anything else: ``other``. A function with several kinds reports them sorted, joined by `` | ``.

Usage::

    python tools/nunchaku_api.py --git-dir NUNCHAKU.git --tag v1.1.0 > api.json
    python tools/nunchaku_api.py --source tests/standins/nunchaku-1.1.0
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 2
PACKAGE = "nunchaku"
CACHING = "nunchaku/caching/"
VERSION_FILE = "nunchaku/__version__.py"

#: torch.Tensor methods whose result is a tensor (the heuristic's "built by torch ops")
TENSOR_METHODS = frozenset({
    "abs", "mean", "sum", "max", "min", "contiguous", "to", "clone", "detach", "float", "half", "bfloat16",
    "reshape", "view", "permute", "transpose", "flatten", "squeeze", "unsqueeze", "expand", "repeat",
    "cpu", "cuda", "sqrt", "exp", "norm", "type_as", "masked_fill", "chunk", "split",
})
NUMBER_METHODS = frozenset({"item", "numel", "dim", "ndimension"})
#: the functions that make the first-block decision; their calls are a function's ``decisions``
DECISION_CALLS = ("check_and_apply_cache", "get_can_use_cache")
BUILTIN_KINDS = {"bool": "bool", "isinstance": "bool", "callable": "bool", "hasattr": "bool",
                 "float": "number", "int": "number", "len": "number", "str": "str", "tuple": "tuple"}


# ----------------------------------------------------------------------------------------- sources


def git_show(git_dir: Path, rev: str, path: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{rev}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def read_git(git_dir: Path, tag: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Source of every ``.py`` file under nunchaku/caching at ``tag``, and where it came from."""
    commit = subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", f"{tag}^{{commit}}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    listing = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", "--name-only", commit, CACHING],
                             check=True, capture_output=True, text=True).stdout.split()
    files = {path: git_show(git_dir, commit, path) for path in listing if path.endswith(".py")}
    files[VERSION_FILE] = git_show(git_dir, commit, VERSION_FILE)
    return files, {"type": "git", "tag": tag, "commit": commit}


def read_directory(root: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The same files from a folder that holds a ``nunchaku`` package (a stand-in)."""
    files = {path.relative_to(root).as_posix(): path.read_text()
             for path in sorted((root / CACHING).rglob("*.py"))}
    version_file = root / VERSION_FILE
    if version_file.is_file():
        files[VERSION_FILE] = version_file.read_text()
    return files, {"type": "directory", "name": root.name}


# ---------------------------------------------------------------------------------------- modules


def module_name(path: str) -> str:
    parts = path[: -len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve_import(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads from (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of a function body, not descending into nested functions, lambdas or classes."""
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        for child in reversed(list(ast.iter_child_nodes(node))):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                stack.append(child)


def parameters(args: ast.arguments) -> list[dict[str, Any]]:
    """Parameters in order, each with its kind and its default as source text (None: no default)."""
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    rows = [{"name": a.arg, "kind": "positional_only" if i < len(args.posonlyargs) else "positional_or_keyword",
             "default": None if d is None else ast.unparse(d)} for i, (a, d) in enumerate(zip(positional, defaults))]
    if args.vararg:
        rows.append({"name": args.vararg.arg, "kind": "var_positional", "default": None})
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        rows.append({"name": a.arg, "kind": "keyword_only", "default": None if d is None else ast.unparse(d)})
    if args.kwarg:
        rows.append({"name": args.kwarg.arg, "kind": "var_keyword", "default": None})
    return rows


@dataclass
class Module:
    name: str
    path: str
    tree: ast.Module
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)
    #: local name -> (absolute module, original name), for imports from inside the package
    imported: dict[str, tuple[str, str]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- return kinds


class ReturnKinds:
    """The heuristic of the module docstring, memoised over every function of the caching modules."""

    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self.memo: dict[tuple[str, str], str] = {}

    def of_function(self, module: Module, function: ast.FunctionDef) -> str:
        key = (module.name, f"{function.name}@{function.lineno}")
        if key not in self.memo:
            self.memo[key] = "other"  # recursion guard
            self.memo[key] = FunctionKinds(self, module, function).returns()
        return self.memo[key]

    def of_call(self, module: Module, name: str) -> str | None:
        """Kind of calling ``name`` in ``module``, when it names a caching function we can see."""
        if name in module.functions:
            return self.of_function(module, module.functions[name])
        if name in module.imported:
            source, original = module.imported[name]
            target = self.modules.get(source)
            if target is not None and original in target.functions:
                return self.of_function(target, target.functions[original])
        return None


class FunctionKinds:
    """Kinds of the expressions of one function body."""

    def __init__(self, kinds: ReturnKinds, module: Module, function: ast.FunctionDef) -> None:
        self.kinds, self.module, self.function = kinds, module, function
        self.params = {p["name"] for p in parameters(function.args)}
        self.assignments: dict[str, list[Callable[[], str]]] = {}
        self.name_memo: dict[str, str] = {}
        for node in own_nodes(function.body):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    self._bind(target, node.value)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                value = node.value if isinstance(node, ast.AnnAssign) else ast.BinOp(node.target, node.op, node.value)
                self._bind(node.target, value)
            elif isinstance(node, (ast.For, ast.With, ast.NamedExpr)):
                for target in ([node.target] if isinstance(node, (ast.For, ast.NamedExpr))
                               else [i.optional_vars for i in node.items if i.optional_vars is not None]):
                    self._bind(target, None)

    def _bind(self, target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            self.assignments.setdefault(target.id, []).append(
                (lambda: "other") if value is None else (lambda: self.expr(value)))
        elif isinstance(target, (ast.Tuple, ast.List)):
            count = len(target.elts)
            for index, element in enumerate(target.elts):
                if isinstance(element, ast.Name):
                    self.assignments.setdefault(element.id, []).append(
                        functools.partial(self._element, value, index, count))

    def _element(self, value: ast.expr | None, index: int, count: int) -> str:
        """Kind of the index-th name when ``value`` is unpacked into ``count`` names."""
        if value is None:
            return "other"
        if isinstance(value, ast.Tuple) and len(value.elts) == count:
            return self.expr(value.elts[index])
        kinds = {split_tuple(k)[index] if len(split_tuple(k)) == count else "other"
                 for k in self.expr(value).split(" | ")}
        return kinds.pop() if len(kinds) == 1 else "other"

    def name(self, identifier: str) -> str:
        if identifier not in self.name_memo:
            self.name_memo[identifier] = "other"  # recursion guard (x = x + 1)
            found = ["other"] if identifier in self.params else []
            found += [evaluate() for evaluate in self.assignments.get(identifier, [])]
            if not found:
                found = ["none"] if identifier == "None" else ["other"]
            self.name_memo[identifier] = found[0] if len(set(found)) == 1 else "other"
        return self.name_memo[identifier]

    def expr(self, node: ast.expr) -> str:
        """One branch per rule of the module docstring."""
        if isinstance(node, ast.Constant):
            value = node.value
            if value is None:
                return "none"
            if isinstance(value, bool):
                return "bool"
            return "number" if isinstance(value, (int, float)) else "str" if isinstance(value, str) else "other"
        if isinstance(node, ast.JoinedStr):
            return "str"
        if isinstance(node, ast.Tuple):
            return "tuple[" + ", ".join(flat(self.expr(e)) for e in node.elts) + "]"
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            return "tensor" if any(self.expr(o) == "tensor" for o in operands) else "bool"
        if isinstance(node, ast.UnaryOp):
            return "bool" if isinstance(node.op, ast.Not) else self.expr(node.operand)
        if isinstance(node, ast.BoolOp):
            kinds = {self.expr(v) for v in node.values}
            return kinds.pop() if len(kinds) == 1 else "other"
        if isinstance(node, ast.BinOp):
            kinds = {self.expr(node.left), self.expr(node.right)}
            return "tensor" if "tensor" in kinds else "number" if kinds == {"number"} else "other"
        if isinstance(node, ast.IfExp):
            kinds = {self.expr(node.body), self.expr(node.orelse)}
            return kinds.pop() if len(kinds) == 1 else "other"
        if isinstance(node, ast.Subscript):
            return "tensor" if self.expr(node.value) == "tensor" else "other"
        if isinstance(node, ast.Call):
            return self.call(node)
        return "other"

    def call(self, node: ast.Call) -> str:
        func = node.func
        if isinstance(func, ast.Attribute):
            if root_name(func) == "torch":
                return "tensor"
            if func.attr in NUMBER_METHODS:
                return "number"
            return "tensor" if func.attr in TENSOR_METHODS else "other"
        if isinstance(func, ast.Name):
            if func.id in self.params or func.id in self.assignments:
                return "other"  # a callable passed in or built locally
            known = self.kinds.of_call(self.module, func.id)
            if known is not None:
                return known
            return BUILTIN_KINDS.get(func.id, "other")
        return "other"

    def returns(self) -> str:
        nodes = list(own_nodes(self.function.body))
        if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in nodes):
            return "generator"
        kinds = {self.expr(n.value) if n.value is not None else "none" for n in nodes if isinstance(n, ast.Return)}
        return " | ".join(sorted(kinds)) if kinds else "none"


def flat(kind: str) -> str:
    """A union inside a tuple is ``other``: unions appear only at the top of a function's kind."""
    return "other" if " | " in kind else kind


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def split_tuple(kind: str) -> list[str]:
    """``tuple[a, tuple[b, c]]`` -> ``["a", "tuple[b, c]"]``; any other kind -> ``[kind]``."""
    if not (kind.startswith("tuple[") and kind.endswith("]")):
        return [kind]
    inner, parts, depth, start = kind[len("tuple["):-1], [], 0, 0
    for i, char in enumerate(inner):
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    return parts + [inner[start:].strip()]


# ------------------------------------------------------------------------------------- extraction


def decisions(function: ast.FunctionDef) -> list[dict[str, str | None]]:
    """The decision calls in the function's own body, in source order: which function, ``mode``, ``threshold``."""
    found = []
    for node in own_nodes(function.body):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in DECISION_CALLS:
            passed = {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg is not None}
            found.append({"call": node.func.id, "mode": passed.get("mode"), "threshold": passed.get("threshold")})
    return found


def describe_function(kinds: ReturnKinds, module: Module, function: ast.FunctionDef) -> dict[str, Any]:
    return {"params": parameters(function.args), "returns": kinds.of_function(module, function),
            "decorators": [ast.unparse(d) for d in function.decorator_list], "decisions": decisions(function)}


def internal_imports(module: Module) -> list[dict[str, Any]]:
    """Imports from inside the nunchaku package, with the scope (module or function) they run in."""
    rows = []
    is_package = module.path.endswith("__init__.py")
    scopes: list[tuple[str, list[ast.stmt]]] = [("module", module.tree.body)]
    scopes += [(f"function:{n.name}", n.body) for n in ast.walk(module.tree) if isinstance(n, ast.FunctionDef)]
    for scope, body in scopes:
        nodes = body if scope == "module" else list(own_nodes(body))
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                source = resolve_import(module.name, is_package, node)
                if source == PACKAGE or source.startswith(PACKAGE + "."):
                    names = sorted([a.name, a.asname or a.name] for a in node.names)
                    rows.append({"from": source, "names": names, "scope": scope})
    return sorted(rows, key=lambda r: (r["scope"], r["from"], r["names"]))


def read_version(source: str | None) -> str | None:
    if source is None:
        return None
    for node in ast.parse(source).body:
        names = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(node, ast.Assign) and "__version__" in names:
            return ast.literal_eval(node.value)
    return None


def extract(files: dict[str, str], origin: dict[str, Any]) -> dict[str, Any]:
    """The API manifest of the caching modules in ``files`` (repository path -> source)."""
    modules: dict[str, Module] = {}
    for path in sorted(p for p in files if p.startswith(CACHING)):
        module = Module(module_name(path), path, ast.parse(files[path], filename=path))
        module.functions = {n.name: n for n in module.tree.body if isinstance(n, ast.FunctionDef)}
        for row in internal_imports(module):
            if row["scope"] == "module":
                module.imported.update({alias: (row["from"], name) for name, alias in row["names"]})
        modules[module.name] = module
    kinds = ReturnKinds(modules)
    described = {}
    for name, module in modules.items():
        classes = {}
        for node in module.tree.body:
            if isinstance(node, ast.ClassDef):
                methods = {m.name: describe_function(kinds, module, m) for m in node.body
                           if isinstance(m, ast.FunctionDef)}
                classes[node.name] = {"bases": [ast.unparse(b) for b in node.bases], "methods": methods}
        imports = internal_imports(module)
        reexports = {alias: f"{row['from']}.{original}" for row in imports if row["scope"] == "module"
                     and row["from"].startswith(PACKAGE + ".caching") for original, alias in row["names"]}
        described[name] = {
            "path": module.path,
            "functions": {f: describe_function(kinds, module, node) for f, node in module.functions.items()},
            "classes": classes,
            "imports": imports,
            "reexports": reexports,
        }
    return {"schema": SCHEMA, "source": origin, "version": read_version(files.get(VERSION_FILE)),
            "modules": described}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--git-dir", type=Path, help="a nunchaku git directory (bare clones work); needs --tag")
    where.add_argument("--source", type=Path, help="a folder holding a nunchaku package, e.g. a stand-in")
    parser.add_argument("--tag", help="tag (or any revision) to read with git show")
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    if args.git_dir is not None and not args.tag:
        parser.error("--git-dir needs --tag")
    files, origin = read_git(args.git_dir, args.tag) if args.git_dir else read_directory(args.source)
    text = json.dumps(extract(files, origin), indent=2, sort_keys=True) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
