"""Geometry computed once in Python so the page only draws: the search-tree layout and
the timeline's lanes. Both are linear in the number of nodes and never recurse (a chain
of debug nodes can be thousands deep)."""

from __future__ import annotations

from collections.abc import Sequence


def layered_tree(
    children: Sequence[Sequence[int]], roots: Sequence[int]
) -> tuple[list[float], list[int], float, int]:
    """A layered ("tidy") layout of a forest: depth down, leaves side by side.

    ``children[i]`` are the indices of node ``i``'s children, in order; ``roots`` the
    nodes without a parent here. Each leaf takes the next slot, a parent is centred
    over its first and last child, and trees are one slot apart, so no two subtrees
    overlap. Returns (x per node in slots, depth per node, width in slots, depth of
    the deepest node + 1). Nodes not reachable from ``roots`` (a cycle in bad data)
    are laid out as roots of their own.
    """
    count = len(children)
    x = [0.0] * count
    depth = [0] * count
    placed = [False] * count
    laid_by = [-1] * count  # the parent a node was laid out under
    next_slot = 0.0
    max_depth = -1

    def lay_out(root: int) -> None:
        nonlocal next_slot, max_depth
        # iterative post-order: (node, index of the next child to visit)
        stack: list[tuple[int, int]] = [(root, 0)]
        placed[root] = True
        depth[root] = 0
        while stack:
            node, child_index = stack[-1]
            kids = children[node]
            while child_index < len(kids) and placed[kids[child_index]]:
                child_index += 1  # already laid out elsewhere (bad data): skip
            if child_index < len(kids):
                child = kids[child_index]
                stack[-1] = (node, child_index + 1)
                placed[child] = True
                laid_by[child] = node
                depth[child] = depth[node] + 1
                stack.append((child, 0))
                continue
            stack.pop()
            own = [k for k in kids if laid_by[k] == node]
            if own:
                x[node] = (x[own[0]] + x[own[-1]]) / 2
            else:
                x[node] = next_slot
                next_slot += 1
            max_depth = max(max_depth, depth[node])

    for root in roots:
        if not placed[root]:
            if next_slot:
                next_slot += 1  # a gap between trees
            lay_out(root)
    for node in range(count):
        if not placed[node]:
            if next_slot:
                next_slot += 1
            lay_out(node)
    return x, depth, next_slot, max_depth + 1


def pack_rows(intervals: Sequence[tuple[float, float]]) -> tuple[list[int], int]:
    """Rows for bars that must not overlap: each interval (start, end) goes to the
    first row free at its start (greedy by start time). Returns the row of each
    interval and the number of rows."""
    order = sorted(range(len(intervals)), key=lambda i: (intervals[i][0], intervals[i][1]))
    row_ends: list[float] = []
    rows = [0] * len(intervals)
    for i in order:
        start, end = intervals[i]
        for row, row_end in enumerate(row_ends):
            if row_end <= start:
                rows[i] = row
                row_ends[row] = end
                break
        else:
            rows[i] = len(row_ends)
            row_ends.append(end)
    return rows, len(row_ends)
