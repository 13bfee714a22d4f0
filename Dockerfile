# claude-mem worker image (the `worker` service of compose.yaml).
#
# Stages: `deps` installs the locked dependencies into a virtualenv and `venv` trims it; `builder`
# installs the package itself into a separate prefix; `runtime` copies both onto a clean slim base and
# runs them as a non-root user. The large dependency layer changes only with requirements.lock, so a
# code change rebuilds and ships only the package's own small layer.
# Every dependency in requirements.lock ships a manylinux wheel, so no compiler is needed, and the
# bundled Claude Code CLI (inside the claude-agent-sdk wheel) needs only glibc, which the base has.
#
# No `# syntax=` line on purpose: it makes BuildKit (what `docker compose build` uses) fetch its front
# end from an image registry, so the build would fail wherever none is reachable; the built-in front end
# builds this file as is.
#
# No secret is baked in: the worker token comes from compose's environment and the gateway
# credentials from a file mounted read-only at ~/.claude-mem/.env when the container starts.

FROM python:3.11.15-slim-bookworm AS deps

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src

# The dependencies, from the lock file alone, so this layer is cached until the lock changes. Then out
# with what the worker never runs: chromadb's dependency for its distributed server mode, kubernetes,
# with the packages only it pulls in (requirements.lock says "via kubernetes"), 130 MB; and polars, which
# only the LiteLLM proxy's FOCUS cost export imports (the proxy runs in its own container), 180 MB.
# tests/test_compose.py checks that nothing else needs them. The bytecode stays: without it the non-root
# worker would recompile every module at each start (its imports take twice as long).
COPY requirements.lock ./
RUN pip install --no-cache-dir --only-binary=:all: -r requirements.lock \
    && pip uninstall --yes --quiet kubernetes aiohttp-retry durationpy requests-oauthlib websocket-client \
        polars polars-runtime-32 \
    && LITELLM_LOCAL_MODEL_COST_MAP=True python -c "import chromadb, claude_agent_sdk, litestar, litellm, onnxruntime"


# The installers are not needed at run time either (24 MB).
FROM deps AS venv
RUN pip uninstall --yes --quiet setuptools pip


# The package itself, into its own prefix, without letting pip resolve anything beyond the lock.
FROM deps AS builder
COPY pyproject.toml README.md ./
COPY worker/ ./worker/
RUN pip install --no-cache-dir --no-deps --prefix /opt/package . \
    && PYTHONPATH=/opt/package/lib/python3.11/site-packages /opt/package/bin/claude-mem --help > /dev/null \
    && PYTHONPATH=/opt/package/lib/python3.11/site-packages \
        python -c "import worker.server, worker.vectors, worker.agent.claude, worker.agent.rest"


FROM python:3.11.15-slim-bookworm AS runtime

# The dependencies first: this large layer depends neither on the code nor on the uid/gid below, so it
# is shared by every rebuild after a code change and by images for different WORKER_UID/WORKER_GID.
COPY --from=venv /opt/venv /opt/venv

# The uid/gid can be set at build time (compose passes WORKER_UID/WORKER_GID) so the bind-mounted
# credentials file can stay mode 0600 and owned by the admin on the host. Any id an admin can have
# works, also ids the base already has (0 = root, 20 = Debian's dialout = macOS's staff): an existing
# group or user is used as is instead of being created again.
ARG APP_UID=10001
ARG APP_GID=10001

RUN set -eu; \
    getent group "${APP_GID}" > /dev/null || groupadd --system --gid "${APP_GID}" claude-mem; \
    getent passwd "${APP_UID}" > /dev/null || useradd --system --uid "${APP_UID}" --gid "${APP_GID}" \
        --home-dir /home/claude-mem --no-create-home --shell /usr/sbin/nologin claude-mem; \
    install -d -o "${APP_UID}" -g "${APP_GID}" -m 0700 /home/claude-mem /home/claude-mem/.claude-mem

# The package (the worker's code and the `claude-mem` script), merged into the virtualenv.
COPY --from=builder /opt/package/ /opt/venv/

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/claude-mem \
    CLAUDE_MEM_DATA_DIR=/home/claude-mem/.claude-mem \
    CLAUDE_MEM_WORKER_HOST=0.0.0.0 \
    CLAUDE_MEM_WORKER_PORT=37777

USER ${APP_UID}:${APP_GID}
WORKDIR /home/claude-mem

EXPOSE 37777

# Liveness only (/api/health); readiness is /api/readiness. The slim base has no curl: use python.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CLAUDE_MEM_WORKER_PORT', '37777') + '/api/health', timeout=4)"]

CMD ["claude-mem", "worker", "start", "--foreground"]
