"""What the reports share: markdown tables, values over seeds, the report head and its failures, and
PNG figures (matplotlib, optional: without it a report has no PNG and says so on stderr).

Values over seeds are written ``mean ± std`` (std with ddof=1; 0 for one seed); a run without the
value (None) is left out.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterable, List, Optional, Sequence

import numpy as np

from mmrec_motor.experiments.store import RunSpec, load_commands, load_failures
from mmrec_motor.fileio import write_text


def markdown_table(header: List[str], rows: List[List[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: Iterable[float]) -> str:
    """``mean ± std`` (ddof=1); one value alone, without a spread it does not have."""
    array = np.asarray(list(values), dtype=float)
    return f"{array.mean():.4f} ± {array.std(ddof=1):.4f}" if len(array) > 1 else f"{array.mean():.4f}"


def known(values: Sequence[Optional[float]]) -> List[float]:
    """The values that are not None (a run without the metric)."""
    return [v for v in values if v is not None]


def stat(values: Sequence[Optional[float]]) -> str:
    """``mean ± std`` of the known values, ``-`` when there is none."""
    values = known(values)
    return mean_std(values) if values else "-"


def mean(values: Sequence[Optional[float]]) -> Optional[float]:
    values = known(values)
    return float(np.mean(values)) if values else None


def std(values: Sequence[Optional[float]]) -> float:
    values = known(values)
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def relative_change(id_values: Sequence[Optional[float]], motor_values: Sequence[Optional[float]]) -> str:
    """``(mean MOTOR - mean ID) / mean ID`` in percent, signed; ``-`` when a side is missing."""
    id_values, motor_values = known(id_values), known(motor_values)
    if not id_values or not motor_values:
        return "-"
    base = float(np.mean(id_values))
    if base == 0:
        return "n/a"
    return f"{(float(np.mean(motor_values)) - base) / base * 100:+.1f}%"


def variant_label(variant: str) -> str:
    """``ID`` or ``MOTOR``."""
    return "ID" if variant == "id" else "MOTOR"


def commands_block(out: str, missing: str = "# (no bench.json)") -> List[str]:
    """``Produced by:`` and the command lines recorded in ``DIR/bench.json``, as a bash block."""
    return ["Produced by:", "", "```bash", *(load_commands(out) or [missing]), "```", ""]


def report_head(out: str, title: str, explanation: str) -> List[str]:
    """A report's first lines: its title, the command lines that produced DIR, what the tables show."""
    return [f"# {title}", ""] + commands_block(out) + [explanation, ""]


def failures_block(out: str, specs: Optional[Sequence[RunSpec]] = None) -> List[str]:
    """``## Failed runs`` and one line per failed run (of ``specs`` when given); empty when none."""
    names = None if specs is None else {s.name for s in specs}
    failures = {n: m for n, m in load_failures(out).items() if names is None or n in names}
    if not failures:
        return []
    return ["## Failed runs", "", *[f"- `{n}`: {m}" for n, m in sorted(failures.items())], ""]


def save_png(path: str, rows: int, cols: int, width: float, height: float,
             draw: Callable[[Any], None]) -> bool:
    """Draw a rows x cols grid of width x height panels with ``draw(axes)`` (axes: a rows x cols
    array) and save it as the PNG ``path`` (a matplotlib Figure: no pyplot, no global backend);
    without matplotlib, False and a note on stderr."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(f"matplotlib is not installed (pip install 'mmrec-motor[plot]'): no {path}", file=sys.stderr)
        return False
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    draw(fig.subplots(rows, cols, squeeze=False))
    fig.savefig(path, dpi=120)
    return True


def write_report(out: str, stem: str, lines: List[str], specs: Sequence[RunSpec], plots: Sequence[Any],
                 plot: Callable[[Sequence[Any], str], bool]) -> List[str]:
    """Write ``DIR/<stem>.md`` (``lines``, then the runs' failures) and, when there is something to
    plot, ``DIR/<stem>.png`` with ``plot(plots, path)`` (False when it wrote none); returns the paths."""
    md = os.path.join(out, f"{stem}.md")
    write_text(md, "\n".join(lines + failures_block(out, specs)))
    written = [md]
    if plots:
        png = os.path.join(out, f"{stem}.png")
        if plot(plots, png):
            written.append(png)
    return written
