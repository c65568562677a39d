# syntax=docker/dockerfile:1
# Passage's production image. The default command serves the API; the same image runs the worker
# (`python -m worker`) and the supplier simulator (`python -m simulator`), see docker-compose.yml.
# Every setting comes from the environment (passage/settings.py); nothing secret is baked in.

# --- build: wheels for Passage and every dependency -------------------------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md worker.py ./
COPY workflows/ workflows/
COPY activities/ activities/
COPY api/ api/
COPY simulator/ simulator/
COPY passage/ passage/
COPY migrations/ migrations/
RUN pip wheel --wheel-dir /wheels .

# --- runtime: the installed package (not editable), no sources, no build tools, not root ---------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PASSAGE_API_HOST=0.0.0.0 \
    PASSAGE_API_PORT=8000
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels passage \
    && useradd --system --create-home --home-dir /home/passage --uid 10001 passage
WORKDIR /home/passage
USER passage
EXPOSE 8000
CMD ["python", "-m", "api"]
