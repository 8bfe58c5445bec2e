"""Search spaces built on :class:`goldnas_fast.nn.DAGCell`.

* :mod:`goldnas_fast.spaces.goldnas`: the enlarged GOLD-NAS space (DARTS skeleton, independent cells,
  any number of inputs per node and of operators per edge).
"""
