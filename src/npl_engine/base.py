"""What every estimator of the engine shares: the fitted check.

The engine's models follow one convention (scikit-learn's, as EconML and lifelines do):
settings are typed constructor parameters, ``fit`` learns attributes ending in ``_`` and
returns ``self``, ``save(folder)`` writes a folder and returns its path, and the class method
``load(folder)`` reads it back. Before a fitted attribute is used, :func:`check_is_fitted`
says clearly that the model has not been fitted, rather than an ``AttributeError``.
"""

from __future__ import annotations

from npl_engine.errors import NplError

__all__ = ["NotFittedError", "check_is_fitted"]


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
