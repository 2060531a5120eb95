"""Deployable inference runtime: numpy + onnxruntime (Pillow only to decode images), no torch.

Copied verbatim into Docker build contexts by ``scbp-edge package``, so it
imports nothing else from scbp_edge.
"""

from .model import Model

__all__ = ["Model"]
