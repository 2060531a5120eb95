# scbp-edge desktop/server GPU image on NVIDIA's TensorRT base (TensorRT, CUDA and Python included).
# The engine is built on first start with the recipe the model was measured with (runtime/trt_engine.py)
# and cached in the /cache volume: an engine only runs on the GPU and TensorRT that built it.
# Run: docker run --gpus all -p 8080:8080 -v scbp-cache:/cache IMAGE
# NEVER built or run in this repository (no GPU there); checked by hadolint and a structural test.
ARG BASE_IMAGE=@@BASE_IMAGE@@
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SCBP_ENGINE_CACHE=/cache SCBP_PRECISION=@@PRECISION@@ \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m pip install "numpy<2" "pillow<11" \
    && useradd --create-home --uid 10001 --groups video scbp \
    && mkdir -p /cache && chown scbp:scbp /cache
WORKDIR /app
COPY --chown=scbp:scbp runtime/ /app/runtime/
COPY --chown=scbp:scbp model.onnx manifest.json /app/
USER scbp
VOLUME ["/cache"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["python3", "-m", "runtime.server", "/app/model.onnx", "--host", "0.0.0.0", "--port", "8080"]
