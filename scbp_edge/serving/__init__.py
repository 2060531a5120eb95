"""Deployable serving code: HTTP server, preprocessing and scores around a runtime's ``Session``.

Copied verbatim into Docker build contexts (as ``runtime/``) by ``scbp-edge
package``, together with the runtime's own ``serve.py`` (as ``runtime/session.py``),
so it imports nothing else from scbp_edge and runs on Python 3.6 (JetPack 4).
"""

from .model import InputError, Model

__all__ = ["InputError", "Model"]
