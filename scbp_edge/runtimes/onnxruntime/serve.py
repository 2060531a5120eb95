"""Serving session for ONNX Runtime on the CPU (copied into images as ``runtime/session.py``).

Python 3.6+, numpy and onnxruntime only.  ONNX Runtime's ``InferenceSession.run``
is thread-safe, so one session serves every request thread.
"""

import numpy as np


class Session(object):
    """One ONNX model on ONNX Runtime's CPU provider."""

    name = "onnxruntime"

    def __init__(self, path, manifest=None, threads=0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = [d if isinstance(d, int) else -1 for d in inp.shape]

    def run(self, x):
        """Class scores (first output) for one float32 batch."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
