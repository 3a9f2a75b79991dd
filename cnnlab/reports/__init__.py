"""What a run shows a person: `plots` draws the learning curves, per-class results, the most
confused pairs and the worst mistakes into the run directory, `page` gathers them into one
self-contained report.html (and what a notebook shows of a run)."""

from cnnlab.reports.page import (
    CONFUSED_SHOWN,
    notebook_html,
    write_html_report,
)
from cnnlab.reports.plots import (
    CONFUSED_COLUMNS,
    PER_CLASS_COLUMNS,
    TILE,
    figure,
    most_confused,
    plot_batch,
    plot_curves,
    plot_leaks,
    plot_misclassified,
    tile_images,
    write_class_report,
    write_run_reports,
)

__all__ = [
    "CONFUSED_COLUMNS",
    "CONFUSED_SHOWN",
    "PER_CLASS_COLUMNS",
    "TILE",
    "figure",
    "most_confused",
    "notebook_html",
    "plot_batch",
    "plot_curves",
    "plot_leaks",
    "plot_misclassified",
    "tile_images",
    "write_class_report",
    "write_html_report",
    "write_run_reports",
]
