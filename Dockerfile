# The gateway on Python 3.11, run by an unprivileged user.
#
# The gateway finds mappings/, profiles/fhir-r4-elements.json, fixtures/ and its default
# SQLite store (var/gateway.db) relative to the folder that holds the gateway package
# (gateway/config.py, gateway/fhir/structure.py). It is therefore installed in place, in
# /app, with `pip install -e .`, so that those paths are /app/mappings, /app/profiles and so
# on, exactly as in a checkout.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --create-home --home-dir /home/gateway \
       --shell /usr/sbin/nologin gateway

WORKDIR /app

# The package and its metadata first (pyproject.toml names README.md as the readme), so
# that changing a mapping or a fixture does not reinstall the dependencies.
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
RUN pip install -e .

COPY profiles/ profiles/
COPY mappings/ mappings/
COPY fixtures/ fixtures/

# The SQLite store lives in /app/var; the rest of /app stays read-only for the gateway user.
RUN mkdir -p /app/var && chown gateway:gateway /app/var
VOLUME ["/app/var"]

USER gateway

# Listen on every interface inside the container only; the default elsewhere is 127.0.0.1.
ENV GATEWAY_HOST=0.0.0.0
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_PORT', '8080'), timeout=4)"]

CMD ["gateway", "serve"]
