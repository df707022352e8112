# One image for the three services; the compose file picks the service with its command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# README* may be absent; the wildcard keeps the build working either way.
COPY pyproject.toml README* ./
COPY shared ./shared
COPY services ./services
COPY tandem ./tandem
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home tandem

USER tandem
# JSON logs for the log collector; the scheduler's API must be reachable from other containers.
ENV TANDEM_LOG_FORMAT=json \
    TANDEM_API_HOST=0.0.0.0
EXPOSE 8080
CMD ["tandem", "--help"]
