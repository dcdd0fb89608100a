"""Recovery scoring: calibrated p_recover and expected monthly collections per loan.

See ``docs/models.md`` for the design and its checks against the simulator's truth.
"""

from npl_engine.scoring._chunked import AUTO_CHUNK_ROWS, chunk_rows_for, score_in_chunks
from npl_engine.scoring._collections import CHANNELS, has_collateral
from npl_engine.scoring._definition import RecoveryDefinition
from npl_engine.scoring._model import MODEL_FORMAT, RecoveryModel, Scores
from npl_engine.scoring._targets import build_targets

__all__ = [
    "AUTO_CHUNK_ROWS",
    "CHANNELS",
    "MODEL_FORMAT",
    "RecoveryDefinition",
    "RecoveryModel",
    "Scores",
    "build_targets",
    "chunk_rows_for",
    "has_collateral",
    "score_in_chunks",
]
