"""YAML text -> a bounded node graph: size, encoding, nesting, alias expansion and tags are checked first.

A grammar file is untrusted text. YAML aliases let a 500-byte file stand for billions of nodes ("billion
laughs"): composing it is cheap because aliases share nodes, but anything that walks or prints the values
expands them. So the composed graph is walked once with a budget that counts every visit (a shared node
counts each time it is reached, a cycle runs the budget out), before any value is built. Tags other than
YAML's plain ones (`!!python/object`, `!custom`) are refused here too, so no constructor ever sees them.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from gpact.errors import GrammarError
from gpact.expr.gate import excerpt

MAX_BYTES = 256 * 1024  # the shipped grammars are 1-4 KB
MAX_NODES = 20_000  # nodes as a tree, aliases expanded
MAX_DEPTH = 50
MAX_SCALAR_CHARS = 4000  # the longest formula the parser reads (`gate.MAX_CHARS`)
_PLAIN = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_PLAIN + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge", "timestamp")}


def read_yaml(path: Path) -> yaml.Node | None:
    """The checked YAML node graph of a file, or GrammarError naming the file; nothing is constructed."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise GrammarError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise GrammarError(f"{path}: larger than {MAX_BYTES // 1024} KB; a grammar file is a few KB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GrammarError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return compose(text, str(path))


def compose(text: str, name: str) -> yaml.Node | None:
    """`yaml.compose` of `text`, then `check` of its graph; every problem is a GrammarError naming `name`."""
    try:
        _check_nesting(text, name)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise GrammarError(f"{name}: invalid YAML: {excerpt(str(exc).splitlines()[0], 200)}") from None
    except RecursionError:
        raise GrammarError(f"{name}: invalid YAML: nested too deeply") from None
    check(node, name)
    return node


def _check_nesting(text: str, name: str) -> None:
    """Refuse deep nesting from the event stream (no recursion), before `yaml.compose` recurses into it."""
    depth = 0
    for event in yaml.parse(text):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise GrammarError(f"{name}:{event.start_mark.line + 1}: YAML nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def check(node: yaml.Node | None, name: str) -> None:
    """Refuse a node graph that expands past MAX_NODES, nests past MAX_DEPTH, or has long scalars or odd tags."""
    stack, count = ([(node, 1)] if node is not None else []), 0
    while stack:
        n, depth = stack.pop()
        count += 1
        line = n.start_mark.line + 1
        if count > MAX_NODES:
            raise GrammarError(f"{name}:{line}: more than {MAX_NODES} YAML nodes (aliases counted each time they "
                               "are used)")
        if depth > MAX_DEPTH:
            raise GrammarError(f"{name}:{line}: YAML nested deeper than {MAX_DEPTH} levels")
        if n.tag not in _PLAIN_TAGS:
            raise GrammarError(f"{name}:{line}: YAML tag {excerpt(n.tag)} is not allowed (plain values only)")
        if isinstance(n, yaml.ScalarNode):
            if len(n.value) > MAX_SCALAR_CHARS:
                raise GrammarError(f"{name}:{line}: value longer than {MAX_SCALAR_CHARS} characters: "
                                   f"{excerpt(n.value)}")
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((c, depth + 1) for c in n.value)
        else:
            stack.extend((c, depth + 1) for kv in n.value for c in kv)
