"""EconML's causal forest prediction, compiled: per-loan effect and interval in one pass.

:class:`CompiledForest` reads the fitted trees of an :class:`econml.dml.CausalForestDML` and
computes what its ``const_marginal_effect_inference(X)`` gives (``point_estimate`` and
``conf_int(alpha)``) with numba kernels run on chunks of loans in parallel threads (no GIL).

What EconML computes (``econml/grf/_base_grf.py``, ``BaseGRF._predict_point_and_var``).
Each tree's leaf stores the means, over its honest (estimation) half, of the moment's
``A = y·T`` (``tree_.precond``) and ``J = T·Tᵀ`` (``tree_.jac``), ``T`` the residualised one-hot
treatment with a constant appended. For a loan ``x`` reaching leaf ``l_t`` in tree ``t``:

- ``α(x) = mean_t A[l_t]``, ``J(x) = mean_t J[l_t]``, ``θ(x) = pinv(J(x)) α(x)``: the point
  estimate is ``θ`` without its last (constant's) component.
- Variance (bootstrap of little bags): trees come in bags (``slices_``, 4 trees each). Per tree
  the moment ``m_t = A[l_t] − J[l_t] θ(x)``; per bag ``b`` its mean ``m_b`` and the mean
  ``V_b`` of ``m_t m_tᵀ``. With ``m̄ = mean_b m_b``, ``S = mean_b m_b m_bᵀ``:
  ``between = S − m̄ m̄ᵀ``, ``correction = (mean_b V_b − S) / (trees per bag − 1)``, each
  sandwiched as ``pinv(J) · pinv(J)ᵀ``; the diagonal's naive estimate ``between − correction``
  is debiased with a truncated normal (the "objective Bayes" step), giving the variance of
  each component of ``θ``. The interval is ``θ ± z·sd`` (``scipy.stats.norm.ppf``), or ``θ``
  alone where the standard deviation is not positive.

The kernels keep EconML's order of summation over trees and bags and call NumPy's ``pinv`` and
``einsum`` on the same arrays, so results agree with EconML's to the last bits
(``tests/causal/test_forest.py`` checks 1e-9 relative; see ``docs/causal.md``).

This reads EconML's private, undocumented internals (tree arrays, ``slices_``, the inference
wrapper's arithmetic), which may change in any release: :meth:`CompiledForest.from_econml`
refuses any EconML version not in :data:`TESTED_ECONML_VERSIONS`, and :func:`compiled_forest`
then warns and lets the caller use EconML's own prediction. To take a new EconML: run
``tests/causal/test_forest.py`` with it, then add its version here.
"""

from __future__ import annotations

import functools
import math
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import econml
import numba
import numpy as np
import numpy.typing as npt
import scipy.stats

from npl_engine.base import thread_pool
from npl_engine.errors import NplError

__all__ = ["TESTED_ECONML_VERSIONS", "CompiledForest", "compiled_forest"]

#: EconML versions whose causal forest internals the compiled prediction was checked against.
TESTED_ECONML_VERSIONS: tuple[str, ...] = ("0.17.0",)

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Rows per chunk, the unit of work of a thread: bounds the (rows, trees) leaf index kept
#: between the two passes (16,384 × 400 trees × 4 bytes = 26 MB per thread).
_CHUNK = 16_384
#: Rows per block inside a kernel: a tree's leaves stay in cache while the block uses them.
_BLOCK = 64
#: Rows that descend a tree together in the first kernel.
_LOCKSTEP = 8
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT_2 = math.sqrt(2.0)


def _np_maximum(a: float, b: float) -> float:
    """``numpy.maximum`` of two floats: NaN if either is NaN."""
    if a != a:  # noqa: PLR0124 - NaN test that numba compiles
        return a
    if b != b:  # noqa: PLR0124
        return b
    return a if a >= b else b


@functools.cache
def _kernels(d: int) -> tuple[Callable[..., None], Callable[..., None]]:  # noqa: PLR0915
    """The two kernels compiled for ``d`` components of the parameter (actions + 1).

    ``d`` is a constant of the compiled code, so LLVM unrolls the d × d loops: the interval
    kernel ran twice as fast as with ``d`` read from the arrays (same results to the bit).
    """
    dd = d * d

    def _apply_impl(  # noqa: PLR0917 - a numba kernel takes flat arrays
        x: Array,
        root: IntArray,
        left: IntArray,
        right: IntArray,
        feature: IntArray,
        threshold: Array,
        leaf_precond: Array,
        leaf_jac: Array,
        leaves: npt.NDArray[np.int32],
        alpha: Array,
        jac: Array,
    ) -> None:
        """Leaf of each row in each tree, and the sums over trees of the leaves' A and J.

        Nodes are coded as in :class:`CompiledForest`: ``>= 0`` an internal node, ``-1 - k`` leaf
        ``k``. Sums run over trees in their order, as EconML adds them (one tree at a time).
        """
        n = x.shape[0]
        n_trees = root.size
        nodes = np.empty(_LOCKSTEP, dtype=np.int64)
        n_blocks = (n + _BLOCK - 1) // _BLOCK
        for block in range(n_blocks):
            r0 = block * _BLOCK
            r1 = min(n, r0 + _BLOCK)
            for i in range(r0, r1):
                alpha[i, :] = 0.0
                jac[i, :] = 0.0
            for t in range(n_trees):
                # a few rows descend together: their chains of dependent loads overlap
                for i0 in range(r0, r1, _LOCKSTEP):
                    w = min(_LOCKSTEP, r1 - i0)
                    nodes[:w] = root[t]
                    moving = True
                    while moving:
                        moving = False
                        for k in range(w):
                            node = nodes[k]
                            if node >= 0:
                                below = x[i0 + k, feature[node]] <= threshold[node]
                                nodes[k] = left[node] if below else right[node]
                                moving = True
                    for k in range(w):
                        leaves[i0 + k, t] = -1 - nodes[k]
                for i in range(r0, r1):
                    leaf = leaves[i, t]
                    for k in range(d):
                        alpha[i, k] += leaf_precond[leaf, k]
                    for k in range(dd):
                        jac[i, k] += leaf_jac[leaf, k]

    def _interval_impl(  # noqa: PLR0912, PLR0915, PLR0917 - one fused kernel
        leaves: npt.NDArray[np.int32],
        leaf_precond: Array,
        leaf_jac: Array,
        bags: IntArray,
        invjac: Array,
        parameter: Array,
        z_low: float,
        z_high: float,
        low: Array,
        high: Array,
    ) -> None:
        """Bootstrap-of-little-bags variance of each relevant component, then its interval.

        The arithmetic of ``BaseGRF._predict_point_and_var(var=True)`` and
        ``econml.utilities._safe_norm_ppf``, row by row; see the module docstring.
        """
        n = leaves.shape[0]
        n_bags, per_bag = bags.shape
        n_relevant = low.shape[1]
        se_scale = math.sqrt(2.0 / n_bags)
        n_blocks = (n + _BLOCK - 1) // _BLOCK
        for block in range(n_blocks):
            r0 = block * _BLOCK
            r1 = min(n, r0 + _BLOCK)
            nb = r1 - r0
            m_sum = np.empty((nb, d))
            v_sum = np.empty((nb, d, d))
            mean_m = np.zeros((nb, d))
            sq_between = np.zeros((nb, d, d))
            var_total = np.zeros((nb, d, d))
            m = np.empty(d)
            for b in range(n_bags):
                m_sum[:] = 0.0
                v_sum[:] = 0.0
                for j in range(per_bag):
                    t = bags[b, j]
                    for ii in range(nb):
                        i = r0 + ii
                        leaf = leaves[i, t]
                        for a in range(d):
                            acc = 0.0
                            for c in range(d):
                                acc += leaf_jac[leaf, a * d + c] * parameter[i, c]
                            m[a] = leaf_precond[leaf, a] - acc
                        for a in range(d):
                            m_sum[ii, a] += m[a]
                            # m_a m_c = m_c m_a exactly: the upper triangle, mirrored below
                            for c in range(a, d):
                                v_sum[ii, a, c] += m[a] * m[c]
                for ii in range(nb):
                    for a in range(d):
                        m_sum[ii, a] /= per_bag
                    for a in range(d):
                        mean_m[ii, a] += m_sum[ii, a]
                        for c in range(d):
                            sq_between[ii, a, c] += m_sum[ii, a] * m_sum[ii, c]
                            v = v_sum[ii, a, c] if c >= a else v_sum[ii, c, a]
                            var_total[ii, a, c] += v / per_bag
            between = np.empty((d, d))
            correction = np.empty((d, d))
            for ii in range(nb):
                i = r0 + ii
                for a in range(d):
                    mean_m[ii, a] /= n_bags
                for a in range(d):
                    for c in range(d):
                        sq = sq_between[ii, a, c] / n_bags
                        between[a, c] = sq - mean_m[ii, a] * mean_m[ii, c]
                        correction[a, c] = (var_total[ii, a, c] / n_bags - sq) / (per_bag - 1)
                for t in range(n_relevant):
                    pred_var = 0.0
                    pred_var_correction = 0.0
                    for a in range(d):
                        inner_b = 0.0
                        inner_c = 0.0
                        for c in range(d):
                            inner_b += between[a, c] * invjac[i, t, c]
                            inner_c += correction[a, c] * invjac[i, t, c]
                        pred_var += invjac[i, t, a] * inner_b
                        pred_var_correction += invjac[i, t, a] * inner_c
                    naive = pred_var - pred_var_correction
                    se = _np_maximum_jit(pred_var, pred_var_correction) * se_scale
                    clipped = se if se >= 1e-10 or se != se else 1e-10  # noqa: PLR0124 - np.clip
                    zstat = naive / clipped
                    numerator = math.exp(-(zstat * zstat) / 2) / _SQRT_2PI
                    denominator = 0.5 * math.erfc(-zstat / _SQRT_2)
                    corrected = naive + se * numerator / denominator
                    sd = math.sqrt(corrected) if corrected >= 0.0 else np.nan
                    point = parameter[i, t]
                    if sd > 0.0:
                        low[i, t] = z_low * sd + point
                        high[i, t] = z_high * sd + point
                    else:
                        low[i, t] = point
                        high[i, t] = point

    return (
        numba.njit(cache=False, nogil=True)(_apply_impl),
        numba.njit(cache=False, nogil=True)(_interval_impl),
    )


_np_maximum_jit: Callable[[float, float], float] = numba.njit(cache=False, inline="always")(
    _np_maximum
)


@dataclass(frozen=True, slots=True)
class CompiledForest:
    """A fitted EconML causal forest as flat arrays, predicted by numba kernels.

    Internal nodes of all trees are numbered together (``left``, ``right``, ``feature``,
    ``threshold``); a child or root ``< 0`` is leaf ``-1 - child``, and leaves of all trees are
    numbered together too (``leaf_precond``, ``leaf_jac``: each leaf's mean A and flattened J).
    ``bags`` holds the tree numbers of each little bag (EconML's ``slices_``).

    Build it with :meth:`from_econml`; it holds arrays only, so it pickles.
    """

    root: IntArray
    left: IntArray
    right: IntArray
    feature: IntArray
    threshold: Array
    leaf_precond: Array
    leaf_jac: Array
    bags: IntArray
    n_features: int
    n_relevant: int

    @classmethod
    def from_econml(cls, forest: Any) -> CompiledForest:
        """Read the trees of a fitted :class:`econml.dml.CausalForestDML`.

        Raises
        ------
        NplError
            If the installed EconML is not one of :data:`TESTED_ECONML_VERSIONS`, or the forest
            is not of the kind checked (one outcome, no featurizer, inference on, bags of equal
            size).
        """
        found = econml.__version__
        if found not in TESTED_ECONML_VERSIONS:
            msg = (
                f"the compiled causal forest reads EconML internals checked with EconML "
                f"{', '.join(TESTED_ECONML_VERSIONS)}, not {found}"
            )
            raise NplError(msg)
        grf = _single_causal_forest(forest)
        roots, lefts, rights, features, thresholds, preconds, jacs = [], [], [], [], [], [], []
        n_internal = n_leaves = 0
        for estimator in grf.estimators_:
            tree = estimator.tree_
            children_left = np.asarray(tree.children_left, dtype=np.int64)
            is_leaf = children_left == -1
            internal = ~is_leaf
            code = np.empty(children_left.size, dtype=np.int64)
            code[internal] = n_internal + np.arange(int(internal.sum()))
            code[is_leaf] = -1 - (n_leaves + np.arange(int(is_leaf.sum())))
            roots.append(code[0])
            lefts.append(code[children_left[internal]])
            rights.append(code[np.asarray(tree.children_right, dtype=np.int64)[internal]])
            features.append(np.asarray(tree.feature, dtype=np.int64)[internal])
            thresholds.append(np.asarray(tree.threshold, dtype=np.float64)[internal])
            preconds.append(np.asarray(tree.precond, dtype=np.float64)[is_leaf])
            jacs.append(np.asarray(tree.jac, dtype=np.float64)[is_leaf])
            n_internal += int(internal.sum())
            n_leaves += int(is_leaf.sum())
        bags = [np.asarray(s, dtype=np.int64) for s in grf.slices_]
        if len({b.size for b in bags}) != 1 or bags[0].size < 2:
            msg = "the causal forest's little bags differ in size: not the kind compiled"
            raise NplError(msg)
        return cls(
            root=np.asarray(roots, dtype=np.int64),
            left=np.concatenate(lefts),
            right=np.concatenate(rights),
            feature=np.concatenate(features),
            threshold=np.concatenate(thresholds),
            leaf_precond=np.ascontiguousarray(np.concatenate(preconds)),
            leaf_jac=np.ascontiguousarray(np.concatenate(jacs)),
            bags=np.stack(bags),
            n_features=int(grf.n_features_),
            n_relevant=int(grf.n_relevant_outputs_),
        )

    @property
    def n_outputs(self) -> int:
        """Components of the local parameter: one per action, then the constant."""
        return int(self.leaf_precond.shape[1])

    def _check(self, X: Array) -> Array:  # noqa: N803
        X = np.ascontiguousarray(X, dtype=np.float64)  # noqa: N806
        if X.ndim != 2 or X.shape[1] != self.n_features:
            msg = f"X must have {self.n_features} columns; it has shape {X.shape}"
            raise ValueError(msg)
        if not np.isfinite(X).all():
            msg = "X has missing or infinite values (fill them as the forest was fitted)"
            raise ValueError(msg)
        return X

    def _point(self, X: Array) -> tuple[Array, Array, npt.NDArray[np.int32]]:  # noqa: N803
        """Full parameter θ(x), pinv(J(x)) and the leaves of each row (one chunk)."""
        n, d = X.shape[0], self.n_outputs
        leaves = np.empty((n, self.root.size), dtype=np.int32)
        alpha = np.empty((n, d))
        jac = np.empty((n, d * d))
        _kernels(d)[0](
            X,
            self.root,
            self.left,
            self.right,
            self.feature,
            self.threshold,
            self.leaf_precond,
            self.leaf_jac,
            leaves,
            alpha,
            jac,
        )
        alpha /= self.root.size
        jac /= self.root.size
        # EconML's own calls on the same arrays
        invjac = np.ascontiguousarray(np.linalg.pinv(jac.reshape((-1, d, d))), dtype=np.float64)
        parameter = np.ascontiguousarray(np.einsum("ijk,ik->ij", invjac, alpha), dtype=np.float64)
        return parameter, invjac, leaves

    def effect(self, X: Array) -> Array:  # noqa: N803
        """Effect of each action per row: ``const_marginal_effect(X)``, (n, actions)."""
        X = self._check(X)  # noqa: N806
        out = np.empty((X.shape[0], self.n_relevant))

        def run(rows: slice) -> None:
            out[rows] = self._point(X[rows])[0][:, : self.n_relevant]

        _each_chunk(X.shape[0], run)
        return out

    def effect_and_interval(
        self,
        X: Array,  # noqa: N803
        *,
        alpha: float = 0.05,
    ) -> tuple[Array, Array, Array]:
        """Effect and its (1 − alpha) interval per row, each (n, actions).

        What ``const_marginal_effect_inference(X)`` gives as ``point_estimate`` and
        ``conf_int(alpha)``.
        """
        X = self._check(X)  # noqa: N806
        n = X.shape[0]
        effect = np.empty((n, self.n_relevant))
        low = np.empty((n, self.n_relevant))
        high = np.empty((n, self.n_relevant))
        z_low = float(scipy.stats.norm.ppf(alpha / 2))
        z_high = float(scipy.stats.norm.ppf(1 - alpha / 2))

        def run(rows: slice) -> None:
            parameter, invjac, leaves = self._point(X[rows])
            effect[rows] = parameter[:, : self.n_relevant]
            _kernels(self.n_outputs)[1](
                leaves,
                self.leaf_precond,
                self.leaf_jac,
                self.bags,
                invjac,
                parameter,
                z_low,
                z_high,
                low[rows],
                high[rows],
            )

        _each_chunk(n, run)
        return effect, low, high


def _each_chunk(n: int, run: Callable[[slice], None]) -> None:
    """``run`` on chunks of ``n`` rows, on numba's number of threads.

    The kernels and NumPy's ``pinv`` release the GIL, so threads run chunks in parallel; each
    row's arithmetic is the same whatever the chunk, so results do not depend on the threads.
    Threads rather than ``parallel=True`` kernels: compiling serial kernels takes half the time
    (3.7 against 8.2 CPU-seconds, measured), and the ``pinv`` between the passes runs in
    parallel too.
    """
    chunks = [slice(i, min(n, i + _CHUNK)) for i in range(0, n, _CHUNK)]
    workers = min(len(chunks), numba.get_num_threads())
    if workers <= 1:
        for rows in chunks:
            run(rows)
        return
    for done in thread_pool("npl-forest", numba.get_num_threads()).map(run, chunks):
        del done


def _single_causal_forest(forest: Any) -> Any:
    """The one ``econml.grf.CausalForest`` inside a fitted ``CausalForestDML``, checked."""
    if type(forest).__name__ != "CausalForestDML":
        msg = f"expected a fitted econml CausalForestDML, got {type(forest).__name__}"
        raise NplError(msg)
    if getattr(forest, "featurizer_", None) is not None:
        msg = "the causal forest has a featurizer: not the kind compiled"
        raise NplError(msg)
    inference = getattr(forest, "_inference", None)
    if type(inference).__name__ != "_GenericSingleOutcomeModelFinalWithCovInference":
        msg = "the causal forest was fitted without its bootstrap-of-little-bags inference"
        raise NplError(msg)
    forests = forest.model_final_.estimators_
    if len(forests) != 1:
        msg = "the causal forest has several outcomes: not the kind compiled"
        raise NplError(msg)
    grf = forests[0]
    if type(grf).__name__ != "CausalForest" or not grf.inference or not grf.fit_intercept:
        msg = "the causal forest is not a CausalForest with inference and an intercept"
        raise NplError(msg)
    return grf


#: Compiled form of each fitted forest seen, kept while the forest lives (never pickled with a
#: model: a loaded model's forest is a new object, compiled again on first use).
_COMPILED: weakref.WeakKeyDictionary[Any, CompiledForest | None] = weakref.WeakKeyDictionary()


def compiled_forest(forest: Any) -> CompiledForest | None:
    """:meth:`CompiledForest.from_econml` of a forest, built once; ``None`` with a warning.

    ``None`` (warned once per forest) when the forest cannot be compiled, for instance under an
    EconML version not in :data:`TESTED_ECONML_VERSIONS`: the caller then predicts with EconML
    itself (the same numbers, slower). Other EconML estimators (a DR learner's forest) are not
    compiled: ``None`` without a warning.
    """
    if type(forest).__name__ != "CausalForestDML":
        return None
    if forest in _COMPILED:
        return _COMPILED[forest]
    try:
        compiled: CompiledForest | None = CompiledForest.from_econml(forest)
    except NplError as error:
        warnings.warn(
            f"{error}; per-loan effects use EconML's own (slower) prediction",
            UserWarning,
            stacklevel=2,
        )
        compiled = None
    _COMPILED[forest] = compiled
    return compiled
