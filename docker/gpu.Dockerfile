# scbp-edge desktop/server GPU image on NVIDIA's TensorRT base; engine built on first start into /cache.
ARG TRT_IMAGE=@@BASE_IMAGE@@
FROM ${TRT_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SCBP_ENGINE_CACHE=/cache SCBP_PRECISION=@@PRECISION@@
RUN python3 -m pip install --no-cache-dir "numpy<2" "pillow<11" "cuda-python<13" \
    && useradd --create-home --uid 10001 scbp \
    && mkdir -p /cache && chown scbp:scbp /cache
WORKDIR /app
COPY --chown=scbp:scbp runtime/ /app/runtime/
COPY --chown=scbp:scbp model.onnx manifest.json /app/
USER scbp
VOLUME ["/cache"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["python3", "-m", "runtime.server", "/app/model.onnx", "--port", "8080", "--backend", "tensorrt"]
