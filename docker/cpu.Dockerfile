# scbp-edge CPU inference image: numpy + onnxruntime (+ Pillow to decode images), no torch.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir "numpy==@@NUMPY@@" "onnxruntime==@@ONNXRUNTIME@@" "pillow==@@PILLOW@@" \
    && useradd --create-home --uid 10001 scbp
WORKDIR /app
COPY --chown=scbp:scbp runtime/ /app/runtime/
COPY --chown=scbp:scbp model.onnx manifest.json /app/
USER scbp
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["python", "-m", "runtime.server", "/app/model.onnx", "--port", "8080"]
