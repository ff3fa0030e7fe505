"""Everything rich: safe printing of model text, tables, the live training panel.

Model output and user text are printed as plain text: never parsed as rich markup, and control
characters other than newline and tab are shown escaped, so a corpus cannot drive the terminal.
"""

from .plots import curves_chart, gradients_chart, sparkline, surprisal_text, unit_text
from .tables import (
    adaptation_table,
    byte_progress,
    chat_header,
    checkpoint_table,
    corpus_stats_table,
    data_catalog_table,
    score_table,
    train_summary,
)
from .text import json_line, plain, safe_text, shown_token, write_model_text
from .training import TrainingDisplay

__all__ = [
    "adaptation_table",
    "curves_chart",
    "gradients_chart",
    "sparkline",
    "surprisal_text",
    "unit_text",
    "TrainingDisplay",
    "byte_progress",
    "chat_header",
    "checkpoint_table",
    "corpus_stats_table",
    "data_catalog_table",
    "json_line",
    "plain",
    "safe_text",
    "score_table",
    "shown_token",
    "train_summary",
    "write_model_text",
]
