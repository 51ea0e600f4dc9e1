# The school-meal API image (`kubernetes.image`), built from this repository:
#   docker build -t ghcr.io/example/school-meals-api:latest .
# Its default command runs one API replica (what the Deployment runs, resilience/targets/kubernetes/manifests.py
# API_COMMAND); the same image runs the harness (`resilience ...`), as deploy/cronjob-gameday.yaml does.
# The package is installed in editable mode from /app, where experiments/ and scenarios/ live beside it:
# the harness finds its catalogue and locustfiles next to the package.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY resilience ./resilience
COPY experiments ./experiments
COPY scenarios ./scenarios

# Bytecode compiled now: the pods run with a read-only root filesystem.
RUN pip install --editable . \
    && python -m compileall -q resilience scenarios \
    && groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app

# Numeric, so that the kubelet can check `runAsNonRoot: true` against it.
USER 10001:10001
EXPOSE 8000
CMD ["python", "-m", "resilience.platform", "--host", "0.0.0.0", "--port", "8000"]
