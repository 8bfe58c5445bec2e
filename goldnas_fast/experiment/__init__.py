"""The NAS-Bench-201 study of ``RESULTS.md`` and the GOLD-NAS-space check, run as ``goldnas-fast experiment``.

Every search is a ``goldnas-fast search`` subprocess writing its own run directory; tables and figures are
made from those directories' ``result.json`` files only.

- ``study``: what runs (methods, seeds, budgets, scale) as search command lines.
- ``data``: the 25k training half of the NB201 split as one ``.npz`` (GOLD-NAS trains on it).
- ``runner``: runs the searches concurrently, skips finished runs and resumes unfinished ones.
- ``reference``: the NB201 paper's numbers beside which ours are shown.
- ``report``: markdown tables from the run directories.
- ``plots``: the accuracy-FLOPs figures.
- ``trajectory``: per-epoch figures of the supernet searches from their ``log.jsonl``.
- ``space``: the GOLD-NAS-space stage (one search, then the smallest and largest genotypes trained).
"""
