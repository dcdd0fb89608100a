"""Errors a user can act on.

Every error the engine raises for bad input or bad settings derives from :class:`NplError`; the
CLI turns them into a clear message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AssumedDefaultWarning",
    "ContractError",
    "NplError",
    "Problem",
    "SettingsError",
    "where_in_rows",
]


def where_in_rows(n_rows: int, examples: tuple[str, ...]) -> str:
    """How many rows a problem has, and examples: `` (3 rows; e.g. L1, L2)``; empty for none.

    >>> where_in_rows(3, ("L1", "L2")), where_in_rows(1, ()), where_in_rows(0, ())
    (' (3 rows; e.g. L1, L2)', ' (1 row)', '')
    """
    if not n_rows:
        return ""
    listed = f"; e.g. {', '.join(examples)}" if examples else ""
    return f" ({n_rows:,} row{'s' if n_rows != 1 else ''}{listed})"


class NplError(Exception):
    """Base class of errors whose message is meant for the user."""


class AssumedDefaultWarning(UserWarning):
    """An optional column that feeds a number is absent: the contract's default was assumed.

    The message names the table, the column, the value taken and what it means; the CLI prints
    it as a ``note:`` line on stderr.
    """


class SettingsError(NplError):
    """A settings or scenario file is malformed; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule of the data contract.

    Parameters
    ----------
    table
        Contract table (``loans``, ``actions``, ``payments``) or ``dataset`` for folder-level
        problems.
    column
        Offending column, or ``None`` where the rule concerns the whole table.
    rule
        What the rule says, in words an analyst understands.
    n_rows
        Number of rows breaking it (0 where the problem is not about rows).
    examples
        Up to five ``loan_id`` values (or row numbers) of offending rows.
    """

    table: str
    column: str | None
    rule: str
    n_rows: int = 0
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = self.table if self.column is None else f"{self.table}.{self.column}"
        return f"{where}: {self.rule}{where_in_rows(self.n_rows, self.examples)}"


class ContractError(NplError):
    """A dataset breaks the data contract; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        lines = [f"the dataset breaks the data contract ({len(self.problems)} problem(s)):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))
