"""The search layer: typed configurations (``config``), the :class:`~goldnas_fast.search.algorithm.SearchAlgorithm`
interface and its registry (``algorithm``, ``registry``), the algorithms (GOLD-NAS ``onelevel``,
``darts``, random search and evolution ``multitrial``), the GOLD-NAS controller and resource
regularizer, the one generic loop (``runner``), data-parallel runs (``distributed``) and results.

How it fits with the other layers: ``docs/architecture.md``.
"""
