"""Serving session for TensorRT (GPU and Jetson images; copied in as ``runtime/session.py``).

Python 3.6+, numpy and the base image's TensorRT.  On first start the engine
is built from ``model.onnx`` with the recipe the candidate was measured with
(precision, workspace and batch from ``manifest.json``; flags for this
TensorRT release from ``trt_engine.recipe``) and cached in ``$SCBP_ENGINE_CACHE``
under the same key as the measuring worker's cache, since an engine only runs
on the GPU and TensorRT version that built it.

NOT run on hardware in this repository (no GPU or TensorRT where it was
written); its recipe, cache key and Python-3.6 syntax are tested.
"""

import os

try:  # in an image: the modules are copied beside this file (runtime/)
    from . import trt_engine, trt_session
except ImportError:  # in the scbp_edge source tree
    from scbp_edge.runtimes.common import trt_engine
    from scbp_edge.runtimes.tensorrt import trt_session


class Session(object):
    """A cached TensorRT engine of ``model.onnx``, built with the measured recipe on first start."""

    name = "tensorrt"

    def __init__(self, path, manifest=None, threads=0):
        import tensorrt as trt

        manifest = manifest or {}
        build = manifest.get("engine") or {}
        rec = trt_engine.recipe(trt_engine.parse_version(trt.__version__),
                                os.environ.get("SCBP_PRECISION") or manifest.get("precision", "fp16"),
                                int(build.get("workspace_mb", 1024)), int(build.get("max_batch", 1)))
        cache = os.environ.get("SCBP_ENGINE_CACHE", "/cache")
        key = trt_engine.cache_key(trt_engine.file_sha256(path), trt_engine.device_name(), rec)
        engine = os.path.join(cache, key + ".engine")
        if not os.path.isfile(engine):
            with open(path, "rb") as f:
                data = trt_session.build_engine(trt, f.read(), rec)
            os.makedirs(cache, exist_ok=True)
            part = "%s.part%d" % (engine, os.getpid())
            with open(part, "wb") as f:
                f.write(data)
            os.rename(part, engine)  # never a half-written engine under the cache name
        with open(engine, "rb") as f:
            self.session = trt_session.TrtSession(f.read(), rec["max_batch"], trt)
        self.input_shape = self.session.input_shape
        self.recipe = rec

    def run(self, x):
        return self.session.run(x)
