"""GPU energy from NVML (nvidia-ml-py, imported lazily): the total-energy counter, else power sampling.

Volta and newer GPUs keep a total-energy counter (millijoules since driver
load); older ones only report instantaneous power, which is sampled on a
thread and integrated.  Without NVML the reason is said, never a number.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class NvmlEnergy:
    """Energy of one GPU over timed windows; ``reason`` is set (and ``source`` None) when unavailable."""

    def __init__(self, pci_bus_id: str | None, interval_ms: int = 100) -> None:
        """``pci_bus_id``: the GPU the model runs on, as CUDA names it (NVML's order may differ from CUDA's)."""
        self.reason: str | None = None
        self.source: str | None = None
        self.interval = interval_ms / 1000.0
        self._nv: Any = None
        self._handle: Any = None
        self._counter = False
        try:
            import pynvml
        except ImportError:
            self.reason = "nvidia-ml-py is not installed (pip install 'scbp-edge[gpu]')"
            return
        try:
            pynvml.nvmlInit()
            if not pci_bus_id:
                self.reason = "the GPU's PCI bus id is unknown, so its NVML sensor cannot be told from another GPU's"
                return
            self._handle = pynvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
            name = pynvml.nvmlDeviceGetName(self._handle)
        except pynvml.NVMLError as exc:
            self.reason = f"NVML is unavailable ({exc}): no NVIDIA driver or GPU here"
            return
        self._nv = pynvml
        self.gpu = name.decode() if isinstance(name, bytes) else str(name)
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self._counter = True
            self.source = f"nvml total-energy counter ({self.gpu})"
        except pynvml.NVMLError:  # pre-Volta: no counter
            self.source = f"nvml power samples every {interval_ms} ms ({self.gpu})"

    def start(self) -> None:
        """Begin a window."""
        if self._nv is None:
            return
        self._t0 = time.perf_counter()
        if self._counter:
            self._e0 = self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            return
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._samples.append(self._nv.nvmlDeviceGetPowerUsage(self._handle))  # mW
            self._stop.wait(self.interval)

    def stop(self) -> float | None:
        """End the window; its energy in microjoules (None when NVML is unavailable)."""
        if self._nv is None:
            return None
        if self._counter:
            return (self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._e0) * 1000.0  # mJ -> uJ
        self._stop.set()
        self._thread.join()
        if not self._samples:
            return None
        return sum(self._samples) / len(self._samples) * (time.perf_counter() - self._t0) * 1000.0  # mW*s -> uJ

    def idle_w(self, seconds: float) -> float | None:
        """Mean power over a pause (the GPU idle just before timing)."""
        self.start()
        t0 = time.perf_counter()
        time.sleep(seconds)
        uj = self.stop()
        return None if uj is None else uj / 1e6 / (time.perf_counter() - t0)
