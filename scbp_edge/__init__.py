"""scbp-edge: Structured Coarse Block Pruning for edge targets.

The importable API mirrors the pipeline: seeds -> segments/space -> derive ->
export -> backends -> profile -> rank -> report.  The CLI (``scbp_edge.cli``)
is a thin layer over these modules.
"""

__version__ = "0.1.0"
