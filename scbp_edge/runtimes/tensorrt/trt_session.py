"""A TensorRT engine with its buffers: built from the shared recipe, timed locally, served in images.

Python 3.6+, numpy, tensorrt and ``cudart.py`` (ctypes): the same class is the
local timing session of the ``tensorrt`` runtime and the served model of the
GPU and Jetson images.  TensorRT 8.0-8.4 (binding API, JetPack 4.6) and 8.5+,
10.x and 11.x (named-tensor API) are handled; every boolean TensorRT returns
and every CUDA status is checked.  Host buffers are page-locked, so copy times
compare with trtexec's and torch's.  One execution context, one stream and one
set of buffers are made at load time; requests share them under a lock.
"""

import ctypes
import threading

import numpy as np

from . import cudart


class TrtError(RuntimeError):
    """TensorRT refused a model, an engine or a call."""


def _ok(result, what):
    if result is False:  # these calls return a bool instead of raising
        raise TrtError("TensorRT: %s failed (see the TensorRT log above)" % what)


def build_engine(trt, onnx_bytes, rec, logger=None):
    """A serialized engine built from ``onnx_bytes`` with ``rec`` (see trt_engine.recipe)."""
    from_engine = _engine_module()
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TrtError("TensorRT cannot parse the ONNX: %s" % errs[:300])
    config = builder.create_builder_config()
    from_engine.configure_builder(trt, builder, network, config, rec)
    if hasattr(builder, "build_serialized_network"):  # 8.0+
        data = builder.build_serialized_network(network, config)
    else:  # pragma: no cover - TensorRT 7
        engine = builder.build_engine(network, config)
        data = engine.serialize() if engine is not None else None
    if data is None:
        raise TrtError("TensorRT could not build an engine (see the TensorRT log above)")
    return bytes(data)


def _engine_module():
    try:  # in an image, trt_engine.py is copied beside this file
        from . import trt_engine
    except ImportError:  # in the scbp_edge source tree
        from scbp_edge.runtimes.common import trt_engine
    return trt_engine


class TrtSession(object):
    """A deserialized engine, its execution context and page-locked I/O buffers for ``max_batch``."""

    def __init__(self, engine_bytes, max_batch=1, trt=None):
        if trt is None:
            import tensorrt as trt
        self.trt = trt
        self.cuda = cudart.cuda()
        self._lock = threading.Lock()
        self._allocs = []
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise TrtError("TensorRT could not load the engine (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise TrtError("TensorRT could not create an execution context (out of device memory?)")
        self.stream = self.cuda.stream_create()
        self.tensor_api = hasattr(self.engine, "num_io_tensors")  # 8.5+; 8.0-8.4 have bindings only
        self.io = self._bind(max_batch)
        self.inputs = [b for b in self.io if b["input"]]
        self.outputs = [b for b in self.io if not b["input"]]
        self.input_shape = list(self.inputs[0]["shape"])
        self._start, self._end = self.cuda.event_create(), self.cuda.event_create()

    # -- set-up --------------------------------------------------------------------------------------
    def _names(self):
        eng = self.engine
        if self.tensor_api:
            return [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        return [eng.get_binding_name(i) for i in range(eng.num_bindings)]

    def _bind(self, max_batch):
        eng, trt, io = self.engine, self.trt, []
        for i, name in enumerate(self._names()):
            if self.tensor_api:
                is_in = eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                shape, dtype = tuple(eng.get_tensor_shape(name)), eng.get_tensor_dtype(name)
            else:
                is_in, shape, dtype = eng.binding_is_input(i), tuple(eng.get_binding_shape(i)), eng.get_binding_dtype(i)
            dtype = np.dtype(trt.nptype(dtype))
            dynamic = any(d < 0 for d in shape)
            most = tuple(max_batch if d < 0 else d for d in shape)
            if is_in and dynamic:  # buffers for the largest batch; the shape is set per run
                self._set_shape(i, name, most)
            if not is_in:
                most = tuple(self.context.get_tensor_shape(name) if self.tensor_api
                             else self.context.get_binding_shape(i))
            nbytes = int(np.prod(most)) * dtype.itemsize
            host_ptr = self.cuda.malloc_host(nbytes)
            self._allocs.append(("host", host_ptr))
            dev = self.cuda.malloc(nbytes)
            self._allocs.append(("dev", dev))
            host = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(host_ptr)).view(dtype).reshape(most)
            io.append({"index": i, "name": name, "input": is_in, "dynamic": dynamic, "shape": shape, "max": most,
                       "dtype": dtype, "host": host, "dev": dev, "nbytes": nbytes})
            if self.tensor_api:
                _ok(self.context.set_tensor_address(name, dev), "set_tensor_address(%s)" % name)
        return io

    def _set_shape(self, index, name, shape):
        if self.tensor_api:
            _ok(self.context.set_input_shape(name, shape), "set_input_shape(%s, %s)" % (name, shape))
        else:
            _ok(self.context.set_binding_shape(index, shape), "set_binding_shape(%d, %s)" % (index, shape))

    # -- running -------------------------------------------------------------------------------------
    def _enqueue(self, x):
        """Copy ``x`` in, execute, copy the first output back; returns its shape (not yet synchronised)."""
        inp = self.inputs[0]
        if x.shape != inp["host"].shape:
            if not inp["dynamic"] or x.shape[0] > inp["max"][0] or x.shape[1:] != inp["max"][1:]:
                raise TrtError("input shape %s does not fit the engine's %s" % (tuple(x.shape), inp["shape"]))
            self._set_shape(inp["index"], inp["name"], tuple(x.shape))
        n = x.size * inp["dtype"].itemsize
        inp["host"].reshape(-1)[: x.size] = x.astype(inp["dtype"], copy=False).reshape(-1)
        self.cuda.memcpy_async(inp["dev"], inp["host"].ctypes.data, n, cudart.HOST_TO_DEVICE, self.stream)
        if self.tensor_api:
            _ok(self.context.execute_async_v3(self.stream), "execute_async_v3")
        else:
            _ok(self.context.execute_async_v2([b["dev"] for b in self.io], self.stream), "execute_async_v2")
        out = self.outputs[0]
        shape = tuple(self.context.get_tensor_shape(out["name"]) if self.tensor_api
                      else self.context.get_binding_shape(out["index"]))
        nbytes = int(np.prod(shape)) * out["dtype"].itemsize
        self.cuda.memcpy_async(out["host"].ctypes.data, out["dev"], nbytes, cudart.DEVICE_TO_HOST, self.stream)
        return shape

    def run(self, x):
        """The first output for one batch (a copy, safe to keep)."""
        x = np.ascontiguousarray(x)
        with self._lock:
            shape = self._enqueue(x)
            self.cuda.stream_synchronize(self.stream)
            out = self.outputs[0]
            return out["host"].reshape(-1)[: int(np.prod(shape))].reshape(shape).astype(np.float32)

    def timed_run(self, x):
        """Milliseconds between CUDA events around copy-in, execute and copy-out."""
        with self._lock:
            self.cuda.event_record(self._start, self.stream)
            self._enqueue(x)
            self.cuda.event_record(self._end, self.stream)
            self.cuda.event_synchronize(self._end)
            return self.cuda.event_elapsed_ms(self._start, self._end)

    def device_bytes(self):
        """Device memory this engine needs: its activations (from the engine) plus the I/O buffers."""
        eng = self.engine
        for attr in ("device_memory_size_v2", "device_memory_size"):
            if hasattr(eng, attr):
                return int(getattr(eng, attr)) + sum(b["nbytes"] for b in self.io)
        return sum(b["nbytes"] for b in self.io)

    def close(self):
        for kind, ptr in reversed(self._allocs):
            (self.cuda.free_host if kind == "host" else self.cuda.free)(ptr)
        self._allocs = []
        for ev in (self._start, self._end):
            self.cuda.event_destroy(ev)
        self.cuda.stream_destroy(self.stream)

