"""The NAS-Bench-201 paper's numbers (ICLR 2020, Table 5, search on CIFAR-10), shown beside ours.

X. Dong and Y. Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search",
ICLR 2020 (arXiv:2001.00326), Table 5; the project's notes cross-checked them against a second source. Test accuracies in %, mean ± std over the paper's runs: CIFAR-10 (``cifar10`` / ``ori-test``),
CIFAR-100 and ImageNet16-120 (``x-test``).
"""
from __future__ import annotations

__all__ = ["PAPER_ROWS", "PAPER_SOURCE"]

PAPER_SOURCE = "NB201 paper (Dong & Yang, ICLR 2020, arXiv:2001.00326), Table 5"

# (method, C10 test, C100 test, IN16 test), each (mean, std)
PAPER_ROWS: tuple[tuple[str, tuple[float, float], tuple[float, float], tuple[float, float]], ...] = (
    ("DARTS-V1", (54.30, 0.00), (15.61, 0.00), (16.32, 0.00)),
    ("GDAS", (93.61, 0.09), (70.70, 0.30), (41.71, 0.98)),
    ("RSPS", (84.07, 3.61), (52.31, 5.77), (26.28, 3.09)),
    ("random search (RS)", (93.70, 0.36), (71.04, 1.07), (44.57, 1.25)),
    ("regularized evolution (REA)", (93.92, 0.30), (71.84, 0.99), (45.54, 1.03)),
    ("REINFORCE", (93.85, 0.37), (71.71, 1.09), (45.24, 1.18)),
)
