"""Disjoint pairs of maximum total weight (a maximum-weight perfect matching on a symmetric matrix).

Small groups (``exact_limit`` or fewer) use networkx's exact blossom algorithm: 16 characters
take ~10 ms, but 128 take ~3.5 s, since it is pure Python. Larger groups solve the assignment
relaxation with ``scipy.optimize.linear_sum_assignment`` (1,024 x 1,024: ~0.15 s), whose
permutation is a set of cycles; a 2-cycle is a pair, a longer cycle is cut into the best
alternating pairs along it, and the one node an odd cycle leaves is matched among the leftovers
(recursively). A 2-opt pass then swaps partners between pairs while that raises the total.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
from scipy.optimize import linear_sum_assignment

EXACT_LIMIT = 32
FORBIDDEN = -1e9  # finite, so the assignment stays feasible; never chosen over a real pair
TWO_OPT_ROUNDS = 8


def max_weight_pairs(weights: np.ndarray, exact_limit: int = EXACT_LIMIT) -> list[tuple[int, int]]:
    """Index pairs covering all of an even number of rows, maximising the summed weights.

    ``weights`` must be square and symmetric; the diagonal is ignored, ``-inf`` cells mean
    "avoid" (they are paired only when nothing else is left)."""
    n = _check(weights)
    if n == 0:
        return []
    safe = np.where(np.isfinite(weights), weights, FORBIDDEN).astype(np.float64)
    np.fill_diagonal(safe, FORBIDDEN)
    if n <= exact_limit:
        return _exact(safe)
    pairs = _assignment_pairs(safe, np.arange(n))
    return _two_opt(safe, pairs)


def _check(weights: np.ndarray) -> int:
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1]:
        raise ValueError(f"weights must be a square matrix, got shape {weights.shape}")
    if weights.shape[0] % 2:
        raise ValueError(f"need an even number of rows to pair everyone, got {weights.shape[0]}")
    return int(weights.shape[0])


def _exact(weights: np.ndarray) -> list[tuple[int, int]]:
    graph = nx.Graph()
    rows, columns = np.triu_indices(len(weights), k=1)
    # The blossom algorithm wants non-negative weights for a max-cardinality matching to be
    # the max-weight one among perfect matchings; shifting every edge by a constant keeps the order.
    shift = weights[rows, columns].min()
    graph.add_weighted_edges_from(zip(rows.tolist(), columns.tolist(),
                                      (weights[rows, columns] - shift + 1.0).tolist(), strict=True))
    matching = nx.max_weight_matching(graph, maxcardinality=True)
    return sorted((min(a, b), max(a, b)) for a, b in matching)


def _assignment_pairs(weights: np.ndarray, nodes: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of ``nodes`` (an even count) from the assignment relaxation on their sub-matrix."""
    if len(nodes) == 0:
        return []
    if len(nodes) == 2:
        return [(int(nodes[0]), int(nodes[1]))]
    _, successor = linear_sum_assignment(weights[np.ix_(nodes, nodes)], maximize=True)
    pairs: list[tuple[int, int]] = []
    leftovers: list[int] = []
    for cycle in _cycles(successor):
        cut, rest = _cut_cycle(weights, [int(nodes[i]) for i in cycle])
        pairs.extend(cut)
        leftovers.extend(rest)
    return pairs + _assignment_pairs(weights, np.array(sorted(leftovers), dtype=int))


def _cycles(successor: np.ndarray) -> list[list[int]]:
    seen = np.zeros(len(successor), dtype=bool)
    cycles = []
    for start in range(len(successor)):
        cycle = []
        node = start
        while not seen[node]:
            seen[node] = True
            cycle.append(node)
            node = int(successor[node])
        if cycle:
            cycles.append(cycle)
    return cycles


def _cut_cycle(weights: np.ndarray, cycle: list[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """The best alternating pairs along a cycle; an odd cycle leaves its best node to drop."""
    length = len(cycle)
    if length == 1:  # only when every cell is forbidden; pair it among the leftovers
        return [], cycle
    best: tuple[float, list[tuple[int, int]], list[int]] | None = None
    # An even cycle has two alternations (start 0 or 1); an odd one drops each node in turn.
    for start in range(2 if length % 2 == 0 else length):
        path = cycle[start:] + cycle[:start]
        dropped = [path.pop()] if length % 2 else []
        pairs = [(path[i], path[i + 1]) for i in range(0, len(path), 2)]
        total = float(sum(weights[a, b] for a, b in pairs))
        if best is None or total > best[0]:
            best = (total, pairs, dropped)
    assert best is not None
    return best[1], best[2]


def _two_opt(weights: np.ndarray, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Swap partners between two pairs ((a,b),(c,d) -> (a,c),(b,d) or (a,d),(b,c)) while any
    swap raises the total; each pass applies the best swap per pair, vectorised."""
    current = np.array(pairs, dtype=int).reshape(-1, 2)
    for _ in range(TWO_OPT_ROUNDS):
        improved = _improve_once(weights, current)
        if improved is None:
            break
        current = improved
    return sorted((int(min(a, b)), int(max(a, b))) for a, b in current)


def _improve_once(weights: np.ndarray, pairs: np.ndarray) -> np.ndarray | None:
    a, b = pairs[:, 0], pairs[:, 1]
    own = weights[a, b]
    base = own[:, None] + own[None, :]
    cross = weights[np.ix_(a, a)] + weights[np.ix_(b, b)]  # (a_p, a_q) + (b_p, b_q)
    mixed = weights[np.ix_(a, b)] + weights[np.ix_(b, a)]  # (a_p, b_q) + (b_p, a_q)
    gain = np.maximum(cross, mixed) - base
    np.fill_diagonal(gain, 0.0)
    changed = False
    used = np.zeros(len(pairs), dtype=bool)
    result = pairs.copy()
    for flat in np.argsort(-gain, axis=None):
        p, q = divmod(int(flat), len(pairs))
        if gain[p, q] <= 1e-12:
            break
        if used[p] or used[q]:
            continue
        used[p] = used[q] = True
        changed = True
        if cross[p, q] >= mixed[p, q]:
            result[p], result[q] = (a[p], a[q]), (b[p], b[q])
        else:
            result[p], result[q] = (a[p], b[q]), (b[p], a[q])
    return result if changed else None
