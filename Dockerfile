# claude-mem worker image (the `worker` service of compose.yaml).
#
# Two stages: `builder` installs the locked dependencies and the package into a virtualenv;
# `runtime` copies only that virtualenv onto a clean slim base and runs it as a non-root user.
# Every dependency in requirements.lock ships a manylinux wheel, so no compiler is needed, and the
# bundled Claude Code CLI (inside the claude-agent-sdk wheel) needs only glibc, which the base has.
#
# No `# syntax=` line on purpose: it makes BuildKit (what `docker compose build` uses) fetch its front
# end from an image registry, so the build would fail wherever none is reachable; the built-in front end
# builds this file as is.
#
# No secret is baked in: the worker token comes from compose's environment and the gateway
# credentials from a file mounted read-only at ~/.claude-mem/.env when the container starts.

FROM python:3.11.15-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src

# Dependencies first, from the lock file alone, so this layer is cached until the lock changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir --only-binary=:all: -r requirements.lock

# Then the package itself, without letting pip resolve anything beyond the lock.
COPY pyproject.toml README.md ./
COPY worker/ ./worker/
RUN pip install --no-cache-dir --no-deps . \
    && claude-mem --help > /dev/null

# Then out with what the worker never runs (README "Team sandbox", image size): chromadb's dependency
# for its distributed server mode, kubernetes, with the packages only it pulls in (requirements.lock says
# "via kubernetes"), 130 MB; and the installers pip and setuptools, 24 MB. The bytecode stays: without it
# the non-root worker would recompile every module at each start (imports take twice as long).
RUN pip uninstall --yes --quiet kubernetes aiohttp-retry durationpy requests-oauthlib websocket-client \
    && python -c "import chromadb, worker.server, worker.vectors, worker.agent.claude, worker.agent.rest" \
    && pip uninstall --yes --quiet setuptools pip


FROM python:3.11.15-slim-bookworm AS runtime

# The virtualenv first: this large layer does not depend on the uid/gid below, so images built for
# different WORKER_UID/WORKER_GID share it.
COPY --from=builder /opt/venv /opt/venv

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
