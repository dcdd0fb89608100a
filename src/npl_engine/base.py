"""What every estimator of the engine shares: the fitted check, and the prediction threads.

The engine's models follow one convention (scikit-learn's, as EconML and lifelines do):
settings are typed constructor parameters, ``fit`` learns attributes ending in ``_`` and
returns ``self``, ``save(folder)`` writes a folder and returns its path, and the class method
``load(folder)`` reads it back. Before a fitted attribute is used, :func:`check_is_fitted`
says clearly that the model has not been fitted, rather than an ``AttributeError``.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

from npl_engine.errors import NplError

__all__ = ["NotFittedError", "check_is_fitted", "thread_pool"]


class NotFittedError(NplError):
    """A model was used before ``fit`` or ``load``."""


def check_is_fitted(estimator: object, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` has the fitted ``attribute``.

    Parameters
    ----------
    estimator
        The model about to be used.
    attribute
        An attribute that ``fit`` (or ``load``) sets, such as ``"classifier_"``.

    Examples
    --------
    >>> from npl_engine.scoring import RecoveryModel
    >>> check_is_fitted(RecoveryModel(), "classifier_")
    Traceback (most recent call last):
    ...
    npl_engine.base.NotFittedError: this RecoveryModel is not fitted yet: call fit() or load() first
    """
    if not hasattr(estimator, attribute):
        name = type(estimator).__name__
        msg = f"this {name} is not fitted yet: call fit() or load() first"
        raise NotFittedError(msg)


def thread_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads called ``name``, started on first use.

    Compiled predictions (boosters, the causal forest) run row ranges on these threads.
    Reused, not started per call: OpenBLAS and the C allocator keep buffers for each thread
    that calls them, so fresh threads for every prediction grew the process by about 1 KB per
    loan predicted (22 MB a call of 25,000 loans, measured), which a tape predicted in chunks
    piled up. A forked child (whose copy of a pool has no threads) starts its own.

    >>> thread_pool("npl-doc", 2) is thread_pool("npl-doc", 2)
    True
    """
    return _thread_pool(name, workers, os.getpid())


@functools.cache
def _thread_pool(name: str, workers: int, pid: int) -> ThreadPoolExecutor:
    del pid  # keys the cache: one pool per process
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
