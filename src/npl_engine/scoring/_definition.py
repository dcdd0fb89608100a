"""What the engine predicts: the recovery definition and the valuation horizon."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RecoveryDefinition"]


@dataclass(frozen=True, slots=True)
class RecoveryDefinition:
    """The contract's recovery event and the horizon of the collections curve.

    Parameters
    ----------
    horizon_months
        A loan recovers if its collections within this many months after its cut-off date
        reach ``threshold`` × exposure (contract default 24).
    threshold
        Share of the exposure at cut-off (contract default 0.5).
    valuation_horizon_months
        Length of the expected monthly collections curve (contract default 60).
    """

    horizon_months: int = 24
    threshold: float = 0.5
    valuation_horizon_months: int = 60

    def __post_init__(self) -> None:
        if not 1 <= self.horizon_months <= 600:
            msg = f"horizon_months must be between 1 and 600, got {self.horizon_months}"
            raise ValueError(msg)
        if not 0.0 < self.threshold <= 1.0:
            msg = f"threshold must be in (0, 1], got {self.threshold}"
            raise ValueError(msg)
        if not 1 <= self.valuation_horizon_months <= 600:
            msg = (
                "valuation_horizon_months must be between 1 and 600, "
                f"got {self.valuation_horizon_months}"
            )
            raise ValueError(msg)
