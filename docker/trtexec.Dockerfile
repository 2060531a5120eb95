# scbp-edge Jetson image. An L4T container runs only on a host of the same L4T major release, so
# BASE_IMAGE comes from the target (package --base-image overrides):
#   Jetson Nano, JetPack 4.6 (L4T r32.7, Python 3.6, TensorRT 8.2): nvcr.io/nvidia/l4t-base:r32.7.1
#     (CUDA and TensorRT are mounted from the host by the NVIDIA container runtime)
#   JetPack 5 (L4T r35, TensorRT 8.5): nvcr.io/nvidia/l4t-jetpack:r35.4.1
#   JetPack 6 (L4T r36, TensorRT 10.3): nvcr.io/nvidia/l4t-jetpack:r36.4.0
# The engine is built on first start with the recipe the model was measured with (runtime/trt_engine.py)
# and cached in /cache. Run it with the NVIDIA runtime and the GPU's groups:
#   docker run --runtime nvidia --group-add video -p 8080:8080 -v scbp-cache:/cache IMAGE
# (JetPack 6: also --group-add "$(getent group render | cut -d: -f3)").
# NEVER built or run in this repository (no arm64 L4T base, no Jetson); checked by hadolint and a structural test.
ARG BASE_IMAGE=@@BASE_IMAGE@@
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SCBP_ENGINE_CACHE=/cache SCBP_PRECISION=@@PRECISION@@
# numpy and Pillow from the base's own distribution: they match its Python (3.6 on JetPack 4), which
# PyPI's current wheels no longer do; no pip needed. The versions follow the L4T release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-numpy python3-pil \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --groups video scbp \
    && if getent group render >/dev/null; then usermod -aG render scbp; fi \
    && mkdir -p /cache && chown scbp:scbp /cache
WORKDIR /app
COPY --chown=scbp:scbp runtime/ /app/runtime/
COPY --chown=scbp:scbp model.onnx manifest.json /app/
USER scbp
VOLUME ["/cache"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["python3", "-m", "runtime.server", "/app/model.onnx", "--host", "0.0.0.0", "--port", "8080"]
