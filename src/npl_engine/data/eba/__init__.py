"""EBA NPL data templates: import a seller's template set into the data contract, and write one.

:func:`import_eba` reads the counterparty, relationship, loan, collateral and enforcement
templates of Commission Implementing Regulation (EU) 2023/2083 (a folder of CSV files or an
``.xlsx`` workbook), joins them by their identifiers, converts units and codes, and returns the
contract's ``loans`` table with a report saying where each column came from and what could not
be mapped. :func:`write_template_files` goes the other way, for simulated tapes. The fields and
code lists read are in :data:`TEMPLATES`; docs/import.md shows them field by field.
"""

from npl_engine.data.eba._import import (
    REPORT_FILES,
    EbaImport,
    TemplateError,
    TemplateProblem,
    import_eba,
)
from npl_engine.data.eba._read import TemplateSet, TemplateTable, read_template_set
from npl_engine.data.eba._report import ColumnMapping, ImportReport
from npl_engine.data.eba._templates import TEMPLATES, Field, Template, field_key
from npl_engine.data.eba._write import TEMPLATE_FILES, template_frames, write_template_files

__all__ = [
    "REPORT_FILES",
    "TEMPLATES",
    "TEMPLATE_FILES",
    "ColumnMapping",
    "EbaImport",
    "Field",
    "ImportReport",
    "Template",
    "TemplateError",
    "TemplateProblem",
    "TemplateSet",
    "TemplateTable",
    "field_key",
    "import_eba",
    "read_template_set",
    "template_frames",
    "write_template_files",
]
