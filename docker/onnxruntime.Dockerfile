# scbp-edge CPU inference image: numpy + onnxruntime (+ Pillow to decode images), no torch.
# BASE_IMAGE defaults to the target's base_image (a slim Python image); any Debian-like image with
# python3 and pip works (CI builds it on a Debian made with debootstrap).
ARG BASE_IMAGE=@@BASE_IMAGE@@
FROM ${BASE_IMAGE}
# PIP_BREAK_SYSTEM_PACKAGES: a distribution's own python3 (PEP 668) takes pip installs in an image
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# --no-compile and no tests/: 40 MB less (the image budget is 300 MB); sources compile in memory at start.
RUN python3 -m pip install --no-compile "numpy==@@NUMPY@@" "onnxruntime==@@ONNXRUNTIME@@" "pillow==@@PILLOW@@" \
    && find /usr/local/lib -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
    && useradd --create-home --uid 10001 scbp
WORKDIR /app
COPY --chown=scbp:scbp runtime/ /app/runtime/
COPY --chown=scbp:scbp model.onnx manifest.json /app/
USER scbp
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
# Bound to 0.0.0.0 inside the container; publish the port only where it is needed, and mount a
# token file (--token-file) or set SCBP_TOKEN so that /predict and /metrics need a bearer token.
ENTRYPOINT ["python3", "-m", "runtime.server", "/app/model.onnx", "--host", "0.0.0.0", "--port", "8080"]
