"""Experiments: many runtime runs into one folder, and the reports built from them.

Modules, in the order a command goes through them:

* :mod:`.commands`     the command lines (parsers that load nothing heavy, so --help is instant)
* :mod:`.plan`         the command line -> the runs (``RunSpec``) and the config each trains with
* :mod:`.store`        the run folder: bench.json, one result JSON (or error file) per run, top-K files
* :mod:`.runner`       the one runner: trains what has no result yet, progress and time left, failures
* :mod:`.tables`       what the reports share: markdown tables, mean ± std, report heads, PNGs
* :mod:`.report`       the bench report: results.csv and summary.md
* :mod:`.bench`        ``mmrec-motor bench`` and ``report``
* :mod:`.buckets`      metrics per bucket of the items' training counts
* :mod:`.cold_items`, :mod:`.token_budget`, :mod:`.cold_start`: one analysis each (command and table)
"""
