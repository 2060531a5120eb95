"""The few CUDA runtime calls TensorRT needs, through ctypes over ``libcudart`` (as Polygraphy does).

Python 3.6+ and the standard library only: no cuda-python, whose releases do
not cover JetPack 4.6 (Python 3.6, CUDA 10.2), so the same code serves a
Jetson Nano, a JetPack 6 board and a desktop GPU.  Every call's status is
checked; a failure raises :class:`CudaError` naming the call and CUDA's own words.
"""

import ctypes
import ctypes.util
import glob
import os
import sys

HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2
_HINTS = {
    35: "the NVIDIA driver is missing or older than this CUDA runtime needs (this is not 'no GPU': "
        "update the driver, or use a CUDA runtime the driver supports)",
    100: "no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES, and --runtime nvidia / --gpus all for containers)",
    999: "the driver reported an unknown error (on Jetson: run the container with --runtime nvidia)",
}


class CudaError(RuntimeError):
    """A CUDA runtime call failed, or libcudart cannot be found."""


def _candidates():
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    dirs += ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/aarch64-linux/lib", "/usr/lib/aarch64-linux-gnu",
             "/usr/lib/x86_64-linux-gnu"]
    dirs += glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "nvidia", "cu*", "lib"))
    dirs += glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "nvidia", "cuda_runtime", "lib"))
    found = [p for d in dirs for p in sorted(glob.glob(os.path.join(d, "libcudart.so*")), reverse=True)]
    name = ctypes.util.find_library("cudart")
    return found + ([name] if name else [])


class Cuda(object):
    """A loaded ``libcudart``; methods mirror the runtime API and raise on any error."""

    def __init__(self, path=None):
        self.lib, errors = None, []
        for cand in ([path] if path else _candidates()):
            try:
                self.lib = ctypes.CDLL(cand)
                self.path = cand
                break
            except OSError as exc:
                errors.append(str(exc))
        if self.lib is None:
            raise CudaError("libcudart (the CUDA runtime library) was not found%s; install CUDA, or on a Jetson "
                            "run the container with --runtime nvidia" % ("" if not errors else ": " + errors[-1]))
        lib = self.lib
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        lib.cudaGetErrorName.restype = ctypes.c_char_p
        for fn in ("cudaMalloc", "cudaMallocHost"):
            getattr(lib, fn).argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        for fn in ("cudaFree", "cudaFreeHost", "cudaStreamSynchronize", "cudaStreamDestroy", "cudaEventSynchronize",
                   "cudaEventDestroy"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                        ctypes.c_void_p]
        lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.cudaEventCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.cudaEventRecord.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.cudaEventElapsedTime.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_void_p]
        lib.cudaDeviceGetPCIBusId.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.cudaMemGetInfo.argtypes = [ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]

    def check(self, status, call):
        if status != 0:
            name = (self.lib.cudaGetErrorName(status) or b"?").decode()
            text = (self.lib.cudaGetErrorString(status) or b"").decode()
            hint = _HINTS.get(status)
            raise CudaError("%s failed with CUDA error %d (%s: %s)%s" % (call, status, name, text,
                                                                        "; " + hint if hint else ""))

    def _out(self, fn, ctype, *args):
        out = ctype()
        self.check(getattr(self.lib, fn)(ctypes.byref(out), *args), fn)
        return out.value

    def device_count(self):
        return self._out("cudaGetDeviceCount", ctypes.c_int)

    def malloc(self, nbytes):
        return self._out("cudaMalloc", ctypes.c_void_p, ctypes.c_size_t(max(1, nbytes)))

    def malloc_host(self, nbytes):
        """Page-locked host memory: copies from it are asynchronous and as fast as trtexec's and torch's."""
        return self._out("cudaMallocHost", ctypes.c_void_p, ctypes.c_size_t(max(1, nbytes)))

    def free(self, ptr):
        self.check(self.lib.cudaFree(ptr), "cudaFree")

    def free_host(self, ptr):
        self.check(self.lib.cudaFreeHost(ptr), "cudaFreeHost")

    def memcpy_async(self, dst, src, nbytes, kind, stream):
        self.check(self.lib.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def stream_create(self):
        return self._out("cudaStreamCreate", ctypes.c_void_p)

    def stream_synchronize(self, stream):
        self.check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream):
        self.check(self.lib.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def event_create(self):
        return self._out("cudaEventCreate", ctypes.c_void_p)

    def event_record(self, event, stream):
        self.check(self.lib.cudaEventRecord(event, stream), "cudaEventRecord")

    def event_synchronize(self, event):
        self.check(self.lib.cudaEventSynchronize(event), "cudaEventSynchronize")

    def event_elapsed_ms(self, start, end):
        out = ctypes.c_float()
        self.check(self.lib.cudaEventElapsedTime(ctypes.byref(out), start, end), "cudaEventElapsedTime")
        return float(out.value)

    def event_destroy(self, event):
        self.check(self.lib.cudaEventDestroy(event), "cudaEventDestroy")

    def pci_bus_id(self, device=0):
        """``"00000000:3B:00.0"``: how NVML names the GPU that CUDA calls ``device``."""
        buf = ctypes.create_string_buffer(32)
        self.check(self.lib.cudaDeviceGetPCIBusId(buf, 32, device), "cudaDeviceGetPCIBusId")
        return buf.value.decode()

    def mem_get_info(self):
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self.check(self.lib.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)), "cudaMemGetInfo")
        return free.value, total.value


_CUDA = []


def cuda():
    """The process-wide :class:`Cuda` (loaded once)."""
    if not _CUDA:
        _CUDA.append(Cuda())
    return _CUDA[0]
