"""LightGBM boosters compiled to machine code (lleaves' code generator): same numbers, less CPU.

Scoring a tape runs 21 boosters (the classifier, and per channel a total model and one timing
model per knot month) over each loan: 1,150 trees per loan for a model trained on 50,000 loans,
85–90 % of ``npl score``'s CPU. LightGBM's ``Booster.predict`` walks each tree as data (≈70 ns
per tree and loan on this 2-core machine); lleaves (Böhm, MIT licence) turns each tree into
branches with its thresholds as constants, and the same predictions take 3–5 times less CPU.
A collections channel's timing boosters read the same matrix: :func:`predict_boosters` prepares
it once and runs every booster's row ranges on one pool of threads.

What is used. lleaves 1.3.0's parser and code generator (``parse_to_ast``, ``gen_forest``)
produce the LLVM IR of a booster; the engine compiles it itself with llvmlite, because lleaves
1.3.0 still calls llvmlite's legacy pass manager, removed in llvmlite 0.45 (numba 0.68 needs
llvmlite 0.50; lleaves issue #95). Boosters of up to :data:`_OPTIMISE_MAX_TREES` trees (the
timing models) are optimised (``-O2``, trees inlined into the loop: about 1 s of compiling
each); larger ones are not, as optimising them took ten times longer (16 s for the 107-tree
classifier) for a third less prediction time.

Why the numbers are the same. The generated code takes LightGBM's decisions (``tree.h``
``NumericalDecision`` and ``CategoricalDecision``: NaN and missing types, categorical bitsets,
NaN and negative categories to the right) on the same doubles, and applies the same link
(``exp``; ``1 / (1 + exp(-x))``). Values LightGBM reads as zero (``|x| ≤ 1e-35``) are set to 0
first. The trees are summed in LightGBM's order, one after the other (the generated loop runs
as one block), so the predictions are LightGBM's to the bit (``tests/scoring/test_compiled.py``
checks every booster on awkward inputs). This matters beyond the last digit: a tape scored in
chunks, partitions or in one piece takes LightGBM's or the compiled path by the size of each
piece, and must give identical rows either way; and the isotonic calibration of ``p_recover``
magnified differences in the last place to 2e-11. Summing in lleaves' blocks of 34 trees was
14 % faster on the predictions (200,000 loans: 6.8 against 7.9 CPU-s for the 21 boosters of a
50,000-loan model, issue 18) and is not used.

Compiled code is cached on disk (:func:`cache_dir`) by a hash of the booster's text, the
lleaves and llvmlite versions and the CPU, so a model is compiled once per machine. Inputs of
fewer than :data:`MIN_ROWS` loans (the service's single loans) keep LightGBM: compiling or
loading is not worth it for them. Under a lleaves version not in
:data:`TESTED_LLEAVES_VERSIONS`, or when compiling fails, :func:`predict_booster` warns once
and uses LightGBM.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import math
import os
import tempfile
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from npl_engine.base import thread_pool

__all__ = [
    "MIN_ROWS",
    "TESTED_LLEAVES_VERSIONS",
    "CompiledBooster",
    "cache_dir",
    "compile_booster",
    "predict_booster",
    "predict_boosters",
]

FloatArray = npt.NDArray[np.float64]

#: lleaves versions whose code generator was checked against LightGBM (and that the lock pins).
TESTED_LLEAVES_VERSIONS: tuple[str, ...] = ("1.3.0",)
#: Fewest rows predicted with compiled code; fewer go to LightGBM.
MIN_ROWS = 20_000
#: Boosters of at most this many trees are optimised (LLVM -O2 with inlining): their prediction
#: takes a third less time for about 1 s of compiling each; larger ones are compiled without
#: optimisation passes, whose time grows faster than their gain (16 s for 107 trees).
_OPTIMISE_MAX_TREES = 64
#: LightGBM's kZeroThreshold: its dense-row reader drops values this close to 0.
_ZERO = 1e-35
_ENTRY = "forest_root"
_ENTRY_TYPE = ctypes.CFUNCTYPE(
    None,
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
    ctypes.c_int32,
    ctypes.c_int32,
)


def cache_dir() -> Path:
    """Folder of compiled boosters: ``$NPL_ENGINE_CACHE_DIR``, else the user's cache folder.

    The user's cache folder is ``$XDG_CACHE_HOME/npl_engine/compiled`` (``~/.cache`` when
    ``XDG_CACHE_HOME`` is not set). Files there can be deleted at any time; they are rebuilt
    when next needed.
    """
    explicit = os.environ.get("NPL_ENGINE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "npl_engine" / "compiled"


@dataclass(frozen=True, eq=False)
class CompiledBooster:
    """A booster's prediction as native code.

    Attributes
    ----------
    n_features
        Columns the booster reads.
    n_trees
        Trees compiled (those ``Booster.predict`` uses by default: up to the best iteration).
    """

    n_features: int
    n_trees: int
    _engine: Any  # the LLVM execution engine: owns the code, kept alive with the object
    _function: Callable[..., None]

    def predict(self, values: FloatArray) -> FloatArray:
        """What ``Booster.predict(values)`` returns, to the bit.

        Parameters
        ----------
        values
            (n, n_features) feature matrix as the booster was trained on (categorical
            columns as codes, NaN for missing).
        """
        return _run([self], _prepared(values, self.n_features))[0]


def _prepared(values: FloatArray, n_features: int) -> FloatArray:
    """``values`` as the compiled code reads them: C-ordered doubles, LightGBM's zeros as 0."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != n_features:
        msg = f"expected a matrix with {n_features} columns, got shape {x.shape}"
        raise ValueError(msg)
    if _has_tiny()(x.reshape(-1)):  # LightGBM reads these as 0.0: so must the compiled code
        x = np.where(np.abs(x) <= _ZERO, 0.0, x)
    return x


def _run(compiled: Sequence[CompiledBooster], x: FloatArray) -> list[FloatArray]:
    """Each booster's predictions on the prepared matrix ``x``, all in one pool.

    Every booster's rows are cut into one range per CPU; the ranges of all boosters go to
    the pool together, so a thread never waits for the slowest range of one booster before
    starting the next (ctypes releases the GIL during each call).
    """
    n = x.shape[0]
    outs = [np.zeros(n) for _ in compiled]
    data = x.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
    threads = max(1, min(os.cpu_count() or 1, n // 10_000))
    if threads == 1 and len(compiled) == 1:
        compiled[0]._function(data, outs[0].ctypes.data_as(ctypes.POINTER(ctypes.c_double)), 0, n)
        return outs
    step = math.ceil(n / threads) if n else 1
    futures = [
        thread_pool("npl-trees", os.cpu_count() or 1).submit(
            booster._function,
            data,
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            start,
            min(start + step, n),
        )
        for booster, out in zip(compiled, outs, strict=True)
        for start in range(0, n, step)
    ]
    for future in futures:
        future.result()
    return outs


def _has_tiny_impl(values: FloatArray) -> bool:
    """Whether some value is not 0 but within LightGBM's zero threshold (one pass, no copy)."""
    for v in values:  # noqa: SIM110 - numba compiles loops, not any() over a generator
        if v != 0.0 and -_ZERO <= v <= _ZERO:
            return True
    return False


@functools.cache
def _has_tiny() -> Callable[[FloatArray], bool]:
    """:func:`_has_tiny_impl` compiled; numba is imported only when a tape is scored."""
    import numba  # noqa: PLC0415

    out: Callable[[FloatArray], bool] = numba.njit(cache=True)(_has_tiny_impl)
    return out


def _lleaves_version() -> str | None:
    try:
        return version("lleaves")
    except PackageNotFoundError:
        return None


def _target_machine() -> Any:
    import llvmlite.binding as llvm  # noqa: PLC0415 - loaded only when compiling

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    # "large": forests of a few hundred trees overflow the small code model's offsets.
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=_host_features(), reloc="pic", codemodel="large"
    )


def _cache_key(text: str, *, optimise: bool, block: int) -> str:
    """Hash of what the compiled code depends on: the trees, the compiler and the CPU."""
    import llvmlite  # noqa: PLC0415
    import llvmlite.binding as llvm  # noqa: PLC0415

    digest = hashlib.sha256(text.encode())
    for part in (
        f"lleaves {_lleaves_version()}",
        f"llvmlite {llvmlite.__version__}",
        f"blocks {block} optimise {optimise}",
        f"target {llvm.get_process_triple()}",
        f"cpu {_host_cpu()}",
    ):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def _host_cpu() -> str:
    import llvmlite.binding as llvm  # noqa: PLC0415

    return f"{llvm.get_host_cpu_name()} {_host_features()}"


def _host_features() -> str:
    """The host CPU's features as LLVM spells them ("" where LLVM cannot tell)."""
    import llvmlite.binding as llvm  # noqa: PLC0415

    try:
        features: str = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot tell on some machines
        return ""
    return features


def _ir(text: str, *, block: int) -> str:
    """LLVM IR of a booster's text (lleaves' parser reads a file), not yet optimised."""
    from lleaves.compiler.ast import parse_to_ast  # noqa: PLC0415
    from lleaves.compiler.codegen import gen_forest  # noqa: PLC0415
    from llvmlite import binding as llvm  # noqa: PLC0415
    from llvmlite import ir  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="npl_lleaves_") as tmp:
        path = Path(tmp) / "model.txt"
        path.write_text(text)
        forest = parse_to_ast(str(path))
    forest.raw_score = False
    module = ir.Module(name="forest")
    gen_forest(forest, module, block, _ENTRY, True)
    module.triple = llvm.get_process_triple()
    return str(module)


def compile_booster(booster: lgb.Booster, *, cache: Path | None = None) -> CompiledBooster:
    """Compile a booster (or load it from the cache).

    Parameters
    ----------
    booster
        A LightGBM booster; its trees up to the best iteration are compiled (what
        ``Booster.predict`` uses without ``num_iteration``).
    cache
        Folder of compiled code (default :func:`cache_dir`); created if missing. A file that
        cannot be written is not an error: the code is then compiled again next time.

    Raises
    ------
    RuntimeError
        Under a lleaves version not in :data:`TESTED_LLEAVES_VERSIONS` (or none installed).
    """
    found = _lleaves_version()
    if found not in TESTED_LLEAVES_VERSIONS:
        msg = (
            f"lleaves {found} is not a version the compiled prediction was checked with "
            f"({', '.join(TESTED_LLEAVES_VERSIONS)})"
        )
        raise RuntimeError(msg)
    import llvmlite.binding as llvm  # noqa: PLC0415

    text = booster.model_to_string()
    machine = _target_machine()
    n_trees = text.count("\nTree=")  # up to the best iteration, as predict uses them
    optimise = n_trees <= _OPTIMISE_MAX_TREES
    block = max(n_trees, 1)  # one block: the trees summed in LightGBM's order
    folder = cache_dir() if cache is None else cache
    path = folder / f"{_cache_key(text, optimise=optimise, block=block)}.o"
    cached = path.is_file()
    module = llvm.parse_assembly("" if cached else _ir(text, block=block))
    module.verify()
    if optimise and not cached:
        options = llvm.create_pipeline_tuning_options(speed_level=2)
        options.inlining_threshold = 1  # any threshold inlines the trees into the loop
        passes = llvm.create_pass_builder(machine, options)
        passes.getModulePassManager().run(module, passes)
    engine = llvm.create_mcjit_compiler(module, machine)
    if cached:
        engine.set_object_cache(getbuffer_func=lambda _: path.read_bytes())
    else:
        engine.set_object_cache(notify_func=lambda _, code: _write(path, code))
    engine.finalize_object()
    function = _ENTRY_TYPE(engine.get_function_address(_ENTRY))
    return CompiledBooster(
        n_features=booster.num_feature(),
        n_trees=n_trees,
        _engine=engine,
        _function=function,
    )


def _write(path: Path, code: bytes) -> None:
    """Write compiled code whole (rename into place) or not at all."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(code)
        tmp.replace(path)


_COMPILED: weakref.WeakKeyDictionary[lgb.Booster, CompiledBooster | None] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()
_WARNED: set[str] = set()


def _compiled(booster: lgb.Booster) -> CompiledBooster | None:
    """The booster's compiled code, built once per booster; ``None`` (warned once) on failure."""
    with _LOCK:
        if booster in _COMPILED:
            return _COMPILED[booster]
        try:
            compiled: CompiledBooster | None = compile_booster(booster)
        except Exception as error:
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            if reason not in _WARNED:
                _WARNED.add(reason)
                warnings.warn(
                    f"compiled tree prediction unavailable ({reason}); using LightGBM's "
                    "predict (same numbers, several times slower)",
                    RuntimeWarning,
                    stacklevel=3,
                )
            compiled = None
        _COMPILED[booster] = compiled
        return compiled


def predict_booster(booster: lgb.Booster, values: FloatArray) -> FloatArray:
    """``booster.predict(values)`` (best iteration), compiled for :data:`MIN_ROWS` rows or more.

    Parameters
    ----------
    booster
        A LightGBM booster.
    values
        (n, p) feature matrix.

    Returns
    -------
    FloatArray
        (n,) predictions, LightGBM's to the bit; from LightGBM itself for fewer than
        :data:`MIN_ROWS` rows or when the booster cannot be compiled (see the module docstring).
    """
    if values.shape[0] >= MIN_ROWS:
        compiled = _compiled(booster)
        if compiled is not None:
            return compiled.predict(values)
    return _lightgbm(booster, values)


def predict_boosters(boosters: Sequence[lgb.Booster], values: FloatArray) -> list[FloatArray]:
    """:func:`predict_booster` of each booster on the same ``values``, in one pass.

    The matrix is prepared once and the compiled boosters' row ranges share one pool of
    threads (a collections model runs 10 timing boosters per channel on the same loans);
    each result is the one :func:`predict_booster` gives, to the bit.

    Parameters
    ----------
    boosters
        LightGBM boosters reading the same columns.
    values
        (n, p) feature matrix.

    Returns
    -------
    list of FloatArray
        (n,) predictions of each booster, in the order given.
    """
    if values.shape[0] < MIN_ROWS or not boosters:
        return [_lightgbm(booster, values) for booster in boosters]
    compiled = [_compiled(booster) for booster in boosters]
    ready = [c for c in compiled if c is not None]
    fast = iter(_run(ready, _prepared(values, ready[0].n_features)) if ready else [])
    return [
        next(fast) if c is not None else _lightgbm(booster, values)
        for booster, c in zip(boosters, compiled, strict=True)
    ]


def _lightgbm(booster: lgb.Booster, values: FloatArray) -> FloatArray:
    """LightGBM's own prediction at the best iteration, as float64."""
    if values.shape[0] == 0:
        return np.zeros(0)
    out = booster.predict(values, num_iteration=booster.best_iteration)
    return np.asarray(out, dtype=np.float64)
