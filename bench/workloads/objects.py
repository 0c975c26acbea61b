"""Recursion whose arguments and return values are user objects with the default repr.

A perfect binary tree of ``Node`` objects (``__slots__``, no ``__init__``, no
``__repr__``: ``object.__repr__``'s ``<workloads.objects.Node object at
0x...>`` is what a tracer recording arguments has to write) is walked by
``walk(node, parent)``, which returns a node: one call per node, each with two
user-object arguments and a user-object return value.  ``run(depth)`` builds
the tree with loops (no Python calls, so the only calls a tracer sees are the
walk's) and returns a digest of the walk; ``run(0)`` does nothing.  Depth 15
is 65,535 calls.
"""

from __future__ import annotations

__all__ = ["Node", "run", "walk"]


class Node:
    __slots__ = ("left", "right", "value")


def build(depth: int) -> Node:
    """The tree of ``2 ** (depth + 1) - 1`` nodes, level by level, without a call."""
    leaves = []
    for i in range(2 ** depth):
        node = Node()
        node.left = node.right = None
        node.value = i
        leaves.append(node)
    level = leaves
    while len(level) > 1:
        parents = []
        for i in range(0, len(level), 2):
            node = Node()
            node.left, node.right = level[i], level[i + 1]
            node.value = 0
            parents.append(node)
        level = parents
    return level[0]


def walk(node: Node, parent: Node) -> Node:
    if node.left is None:
        return node
    left = walk(node.left, node)
    right = walk(node.right, node)
    return left if left.value > right.value else right


def run(depth: int) -> str:
    if depth <= 0:
        return "0"
    root = build(depth)
    return str(walk(root, root).value)
