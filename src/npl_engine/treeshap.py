"""Exact path-dependent TreeSHAP for LightGBM boosters, compiled, with a table per leaf.

The numbers are those of LightGBM's ``Booster.predict(X, pred_contrib=True)`` (and of
``shap.TreeExplainer``, which delegates to it): Shapley values of the path-dependent value
function of Lundberg et al. (2020), where a feature outside the coalition splits the path by
training counts. Only the arithmetic is rearranged, as in Fast TreeSHAP v2 (Yang, 2021), so
that each loan costs a table look-up per leaf instead of the O(depth²) path recursion.

Why it is exact. For a leaf ``l`` with value ``v``, let ``P`` be the distinct features on its
path (``d`` of them). For each ``j`` in ``P``, ``z_j`` is the product of the count ratios
(child / parent) of the splits on ``j`` along the path, and ``o_j`` is 1 if the loan satisfies
every split on ``j`` along the path, else 0. The leaf adds to feature ``i`` in ``P``

    v (o_i - z_i) Σ_{S ⊆ P∖{i}} w(|S|, d) Π_{j∈S} o_j Π_{j∈P∖S∖{i}} z_j,
    w(s, d) = s! (d - s - 1)! / d!.

Only coalitions ``S`` inside the satisfied set ``O`` survive. With
``G(U) = Σ_{S⊆U} w(|S|, d) Π_{j∈P∖S} z_j`` (a function of ``U`` alone, since the product
over ``P∖S∖{i}`` is the one over ``P∖S`` divided by ``z_i`` when ``i ∉ S``), the leaf adds

    v (1 - z_i) / z_i · G(O∖{i})   if the loan satisfies ``i`` (o_i = 1),
    -v · G(O)                      otherwise.

``G`` over all ``2^d`` subsets is tabulated once per leaf (``d`` is small: about 5 on average
and 15 at most for the 31-leaf trees of a model trained on 100,000 simulated loans); a loan
then needs each internal node's decision, one bit pattern per leaf and ``d`` look-ups. Boosters
with a leaf of more than :data:`MAX_PATH_FEATURES` distinct path features are left to LightGBM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numba
import numpy as np
import numpy.typing as npt

__all__ = ["MAX_PATH_FEATURES", "CompiledTrees", "compile_booster", "tree_shap"]

Arr = npt.NDArray[Any]
FloatArray = npt.NDArray[np.float64]

#: Largest number of distinct features on one leaf's path tabulated (2^16 entries per leaf).
MAX_PATH_FEATURES = 16

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_ZERO = 1e-35  # LightGBM's kZeroThreshold
_BLOCK = 256  # rows per block of the kernel


@dataclass(frozen=True, slots=True)
class CompiledTrees:
    """A booster's trees as flat arrays for the kernel (see the module docstring).

    Internal nodes are numbered per tree from 0 and stored tree after tree
    (``tree_node_start``); leaves likewise (``tree_leaf_start``). Each leaf has its path
    (``path_*``, slices by ``leaf_path_start``), its distinct path features with
    ``(1 - z) / z`` (``feat_*``, by ``leaf_feat_start``) and its table ``v · G``
    (``table``, by ``leaf_table_start``).
    """

    n_features: int
    expected_value: float
    node_feature: Arr
    node_threshold: Arr
    node_categorical: Arr
    node_missing: Arr
    node_default_left: Arr
    node_cat_start: Arr
    cat_values: Arr
    tree_node_start: Arr
    tree_leaf_start: Arr
    leaf_path_start: Arr
    path_node: Arr
    path_left: Arr
    path_bit: Arr
    leaf_feat_start: Arr
    feat_id: Arr
    feat_coef: Arr
    leaf_table_start: Arr
    table: Arr


@dataclass
class _Builder:
    """Lists filled while walking the dumped trees."""

    node_feature: list[int]
    node_threshold: list[float]
    node_categorical: list[bool]
    node_missing: list[int]
    node_default_left: list[bool]
    node_cat_start: list[int]
    cat_values: list[int]
    leaf_value: list[float]
    leaf_path_start: list[int]
    path_node: list[int]
    path_left: list[bool]
    path_bit: list[int]
    leaf_feat_start: list[int]
    feat_id: list[int]
    feat_z: list[float]
    expected_value: float = 0.0


def _walk(tree: dict[str, Any], b: _Builder, first_node: int) -> None:
    """Add one dumped tree's internal nodes and leaves to ``b`` (iteratively: deep trees)."""
    # Stack of (node, path so far as (local node, went left, feature, count ratio)).
    stack: list[tuple[dict[str, Any], list[tuple[int, bool, int, float]]]] = [(tree, [])]
    root_count = float(tree.get("internal_count", tree.get("leaf_count", 1)) or 1)
    while stack:
        node, path = stack.pop()
        if "split_index" not in node:
            _add_leaf(node, path, b, root_count)
            continue
        local = len(b.node_feature) - first_node
        b.node_feature.append(int(node["split_feature"]))
        b.node_default_left.append(bool(node["default_left"]))
        b.node_missing.append(_MISSING[str(node["missing_type"])])
        b.node_cat_start.append(len(b.cat_values))
        if node["decision_type"] == "==":
            b.node_categorical.append(True)
            b.node_threshold.append(0.0)
            b.cat_values.extend(sorted(int(c) for c in str(node["threshold"]).split("||")))
        else:
            b.node_categorical.append(False)
            b.node_threshold.append(float(node["threshold"]))
        count = float(node["internal_count"])
        for child, left in ((node["right_child"], False), (node["left_child"], True)):
            child_count = float(child.get("internal_count", child.get("leaf_count", 0)))
            step = (local, left, int(node["split_feature"]), child_count / count)
            stack.append((child, [*path, step]))


def _add_leaf(
    node: dict[str, Any],
    path: list[tuple[int, bool, int, float]],
    b: _Builder,
    root_count: float,
) -> None:
    value = float(node["leaf_value"])
    b.expected_value += value * float(node.get("leaf_count", root_count)) / root_count
    features: list[int] = []
    z: list[float] = []
    for local, left, feature, ratio in path:
        if feature not in features:
            features.append(feature)
            z.append(1.0)
        bit = features.index(feature)
        z[bit] *= ratio
        b.path_node.append(local)
        b.path_left.append(left)
        b.path_bit.append(bit)
    b.leaf_value.append(value)
    b.leaf_path_start.append(len(b.path_node))
    b.feat_id.extend(features)
    b.feat_z.extend(z)
    b.leaf_feat_start.append(len(b.feat_id))


def compile_booster(booster: lgb.Booster, *, num_iteration: int | None) -> CompiledTrees | None:
    """Flatten a booster's trees and tabulate each leaf; ``None`` if a leaf's path is too rich.

    Parameters
    ----------
    booster
        A LightGBM booster with numerical and categorical splits (no linear trees).
    num_iteration
        Trees to take, with ``Booster.predict``'s meaning (``None``: the best iteration if
        there is one, else all).

    Returns
    -------
    CompiledTrees or None
        ``None`` when some leaf has more than :data:`MAX_PATH_FEATURES` distinct features on
        its path (its table would be too large) or a split has a child without training
        count: use LightGBM's TreeSHAP for that booster.
    """
    dump = booster.dump_model(num_iteration=num_iteration)
    b = _Builder([], [], [], [], [], [], [], [], [0], [], [], [], [0], [], [])
    tree_node_start, tree_leaf_start = [0], [0]
    for info in dump["tree_info"]:
        _walk(info["tree_structure"], b, tree_node_start[-1])
        tree_node_start.append(len(b.node_feature))
        tree_leaf_start.append(len(b.leaf_value))
    b.node_cat_start.append(len(b.cat_values))
    feat_start = np.asarray(b.leaf_feat_start, dtype=np.int64)
    sizes = np.diff(feat_start)
    z = np.asarray(b.feat_z, dtype=np.float64)
    if (sizes.size and sizes.max() > MAX_PATH_FEATURES) or (z <= 0).any():
        return None  # too rich to tabulate, or a split without training counts
    table_start = np.concatenate([[0], np.cumsum(2**sizes)]).astype(np.int64)
    table = np.empty(int(table_start[-1]))
    _tabulate(feat_start, z, np.asarray(b.leaf_value, dtype=np.float64), table_start, table)
    return CompiledTrees(
        n_features=len(dump["feature_names"]),
        expected_value=b.expected_value,
        node_feature=np.asarray(b.node_feature, dtype=np.int64),
        node_threshold=np.asarray(b.node_threshold, dtype=np.float64),
        node_categorical=np.asarray(b.node_categorical, dtype=np.bool_),
        node_missing=np.asarray(b.node_missing, dtype=np.int64),
        node_default_left=np.asarray(b.node_default_left, dtype=np.bool_),
        node_cat_start=np.asarray(b.node_cat_start, dtype=np.int64),
        cat_values=np.asarray(b.cat_values, dtype=np.int64),
        tree_node_start=np.asarray(tree_node_start, dtype=np.int64),
        tree_leaf_start=np.asarray(tree_leaf_start, dtype=np.int64),
        leaf_path_start=np.asarray(b.leaf_path_start, dtype=np.int64),
        path_node=np.asarray(b.path_node, dtype=np.int64),
        path_left=np.asarray(b.path_left, dtype=np.bool_),
        path_bit=np.asarray(b.path_bit, dtype=np.int64),
        leaf_feat_start=feat_start,
        feat_id=np.asarray(b.feat_id, dtype=np.int64),
        feat_coef=(1.0 - z) / z,
        leaf_table_start=table_start,
        table=table,
    )


def tree_shap(trees: CompiledTrees, values: FloatArray) -> FloatArray:
    """SHAP values (n, p) of every row of ``values`` (n, p): rows add up to raw - expected.

    Parameters
    ----------
    trees
        From :func:`compile_booster`.
    values
        Feature matrix as the booster was trained on (categorical columns as codes, NaN for
        missing).

    Returns
    -------
    numpy.ndarray
        (n, p) float64; ``trees.expected_value`` is the bias term.
    """
    x = np.ascontiguousarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != trees.n_features:
        msg = f"expected a matrix with {trees.n_features} columns, got shape {x.shape}"
        raise ValueError(msg)
    out = np.zeros(x.shape)
    max_nodes = int(np.diff(trees.tree_node_start).max(initial=0))
    _shap_kernel(
        x,
        trees.node_feature,
        trees.node_threshold,
        trees.node_categorical,
        trees.node_missing,
        trees.node_default_left,
        trees.node_cat_start,
        trees.cat_values,
        trees.tree_node_start,
        trees.tree_leaf_start,
        trees.leaf_path_start,
        trees.path_node,
        trees.path_left,
        trees.path_bit,
        trees.leaf_feat_start,
        trees.feat_id,
        trees.feat_coef,
        trees.leaf_table_start,
        trees.table,
        max(max_nodes, 1),
        out,
    )
    return out


def _tabulate_impl(
    leaf_feat_start: Arr, z_all: Arr, leaf_value: Arr, table_start: Arr, table: Arr
) -> None:
    """Fill ``table`` with ``v · G(U)`` for every leaf and every subset ``U`` of its features.

    ``G(U) = Π_{j∉U} z_j · Σ_m w(|U| - m, d) e_m(z_U)``, with ``e_m`` the elementary symmetric
    polynomials of the ``z`` of ``U``, built subset by subset from the subset without its
    highest feature.
    """
    for leaf in range(leaf_value.size):
        f0 = leaf_feat_start[leaf]
        d = leaf_feat_start[leaf + 1] - f0
        t0 = table_start[leaf]
        if d == 0:
            table[t0] = 0.0
            continue
        z = z_all[f0 : f0 + d]
        w = np.empty(d)  # w[s] = s! (d - s - 1)! / d!
        w[0] = 1.0 / d
        for s in range(d - 1):
            w[s + 1] = w[s] * (s + 1) / (d - 1 - s)
        size = 1 << d
        full = size - 1
        e = np.zeros((size, d + 1))
        inside = np.ones(size)  # Π_{j∈U} z_j
        count = np.zeros(size, dtype=np.int64)
        e[0, 0] = 1.0
        for u in range(1, size):
            top = 0
            while (u >> (top + 1)) != 0:
                top += 1
            prev = u ^ (1 << top)
            count[u] = count[prev] + 1
            inside[u] = inside[prev] * z[top]
            e[u, 0] = 1.0
            for m in range(1, count[u] + 1):
                e[u, m] = e[prev, m] + z[top] * e[prev, m - 1]
        for u in range(size):
            k = count[u]
            if k == d:
                table[t0 + u] = 0.0  # never read: some feature is always outside U
                continue
            acc = 0.0
            for m in range(k + 1):
                acc += w[k - m] * e[u, m]
            table[t0 + u] = leaf_value[leaf] * inside[full ^ u] * acc


def _goes_left(  # noqa: PLR0917 - a kernel takes flat arrays
    fval: float,
    threshold: float,
    categorical: bool,
    missing: int,
    default_left: bool,
    cat_values: Arr,
    cat_first: int,
    cat_last: int,
) -> bool:
    """LightGBM's decision at one node (tree.h NumericalDecision / CategoricalDecision)."""
    if categorical:
        if np.isnan(fval) or fval < 0:
            return False
        code = int(fval)
        for c in range(cat_first, cat_last):  # noqa: SIM110 - numba compiles loops, not any()
            if cat_values[c] == code:
                return True
        return False
    if np.isnan(fval) and missing != 2:
        fval = 0.0
    if (missing == 1 and -_ZERO <= fval <= _ZERO) or (missing == 2 and np.isnan(fval)):
        return default_left
    return fval <= threshold


def _shap_impl(  # noqa: PLR0917 - a kernel takes flat arrays
    x: Arr,
    node_feature: Arr,
    node_threshold: Arr,
    node_categorical: Arr,
    node_missing: Arr,
    node_default_left: Arr,
    node_cat_start: Arr,
    cat_values: Arr,
    tree_node_start: Arr,
    tree_leaf_start: Arr,
    leaf_path_start: Arr,
    path_node: Arr,
    path_left: Arr,
    path_bit: Arr,
    leaf_feat_start: Arr,
    feat_id: Arr,
    feat_coef: Arr,
    leaf_table_start: Arr,
    table: Arr,
    max_nodes: int,
    out: Arr,
) -> None:
    n = x.shape[0]
    n_trees = tree_node_start.size - 1
    # Rows in blocks, trees outside rows within a block: a tree's tables stay in cache while
    # the block's rows use them.
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for block in numba.prange(n_blocks):
        r0 = block * _BLOCK
        r1 = min(n, r0 + _BLOCK)
        left = np.empty(max_nodes, dtype=np.bool_)
        for t in range(n_trees):
            n0 = tree_node_start[t]
            for i in range(r0, r1):
                for node in range(n0, tree_node_start[t + 1]):
                    left[node - n0] = _goes_left_jit(
                        x[i, node_feature[node]],
                        node_threshold[node],
                        node_categorical[node],
                        node_missing[node],
                        node_default_left[node],
                        cat_values,
                        node_cat_start[node],
                        node_cat_start[node + 1],
                    )
                for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                    f0 = leaf_feat_start[leaf]
                    d = leaf_feat_start[leaf + 1] - f0
                    if d == 0:
                        continue
                    pattern = (1 << d) - 1
                    for p in range(leaf_path_start[leaf], leaf_path_start[leaf + 1]):
                        if left[path_node[p]] != path_left[p]:
                            pattern &= ~(1 << path_bit[p])
                    t0 = leaf_table_start[leaf]
                    outside = table[t0 + pattern]
                    for k in range(d):
                        if (pattern >> k) & 1:
                            inside = table[t0 + (pattern ^ (1 << k))]
                            out[i, feat_id[f0 + k]] += feat_coef[f0 + k] * inside
                        else:
                            out[i, feat_id[f0 + k]] -= outside


_goes_left_jit: Callable[..., bool] = numba.njit(cache=True, inline="always")(_goes_left)
_tabulate: Callable[..., None] = numba.njit(cache=True)(_tabulate_impl)
_shap_kernel: Callable[..., None] = numba.njit(cache=True, parallel=True)(_shap_impl)
