# The workbench as a container in the hosted configuration, the same as `make serve`
# (python -m workbench.serve hosted: all interfaces, warm start, Prometheus metrics on 9464).
#   docker build -t saliency-workbench .
#   docker build --build-arg PREFETCH_MODELS="resnet50" -t saliency-workbench .
#   docker run --rm -p 8501:8501 saliency-workbench
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SALIENCY_CACHE=/app/models_cache \
    PYTHONPATH=/app

# PYTHONPATH: Ray workers started by `ray start` (deploy/) import saliency_core from /app too.
# The app writes to the model cache (fetch) and its share store at run time, so /app belongs
# to the unprivileged user that runs it.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin workbench \
    && mkdir -p /app/models_cache /app/share_store \
    && chown -R workbench:workbench /app
WORKDIR /app

# Dependencies first: this layer is the slow one and survives changes to the code.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY --chown=workbench:workbench .streamlit/ .streamlit/
COPY --chown=workbench:workbench saliency_core/ saliency_core/
COPY --chown=workbench:workbench pages/ pages/
COPY --chown=workbench:workbench workbench/ workbench/
COPY --chown=workbench:workbench app.py ./

USER workbench

# Optional: bake downloaded weights into the image, e.g. PREFETCH_MODELS="resnet50 vgg16".
ARG PREFETCH_MODELS=""
RUN if [ -n "$PREFETCH_MODELS" ]; then python -m saliency_core fetch $PREFETCH_MODELS; fi

# Like `make serve` (whose hosted mode sets these too): serve only what is in the image, never
# reach for a model hub at run time; metrics for a Prometheus scraper on their own port.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    SALIENCY_HOSTED=1 \
    SALIENCY_METRICS_PORT=9464

EXPOSE 8501 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).status != 200)"]

CMD ["python", "-m", "workbench.serve", "hosted", "app.py", "--server.port", "8501"]
