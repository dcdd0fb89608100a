"""Datasets in the form of the data contract: reading, validation, summaries and writing.

The contract itself (tables, columns, types, allowed values) lives in
:mod:`npl_engine.data.contract`; everything here derives from it.
"""

from npl_engine.data.chunks import Chunk, count_loans, loan_chunks
from npl_engine.data.columns import ColumnMap, load_column_map
from npl_engine.data.dataset import Dataset, DatasetKind
from npl_engine.data.months import month_after_cutoff, month_end, months_observed
from npl_engine.data.readers import infer_kind, read_dataset, validate_dataset
from npl_engine.data.summary import DatasetSummary, SegmentSummary, summarize
from npl_engine.data.writers import write_dataset

__all__ = [
    "Chunk",
    "ColumnMap",
    "Dataset",
    "DatasetKind",
    "DatasetSummary",
    "SegmentSummary",
    "count_loans",
    "infer_kind",
    "load_column_map",
    "loan_chunks",
    "month_after_cutoff",
    "month_end",
    "months_observed",
    "read_dataset",
    "summarize",
    "validate_dataset",
    "write_dataset",
]
