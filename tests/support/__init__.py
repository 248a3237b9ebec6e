"""Builders shared by the tests of every stage (importable as ``support``: pyproject's pytest ``pythonpath``).

* :mod:`support.builders`: stage outputs written where :class:`neuronmoe.layout.Layout` puts them, in the shape
  the producing stage writes them (allocations through the allocation stage's own record builder).
* :mod:`support.evalfixtures`: synthetic UDHR paragraphs and held-out documents.
* :mod:`support.replicas`: offline replicas of the paper's evaluation datasets, laid out like the hub.
* :mod:`support.paper_tables`: the paper's published tables used as fixtures.
"""
