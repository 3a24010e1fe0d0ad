# The rotator image: `python -m ksecrets.rotate`, run by the rotation CronJobs.
#   docker build -t ghcr.io/example/ksecrets-rotator:0.1.0 .
# The tag goes into the stack config (k8s-secrets:rotation.image); never :latest.
#
# Pinned base by tag (Debian bookworm, Python 3.11 like the project's venv). The project is
# installed with its `rotate` extra (psycopg[binary]: libpq ships in the wheel, no apt packages),
# with the exact pins of pyproject.toml. The rotator itself needs only hvac, PyYAML and psycopg.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY ksecrets ./ksecrets
# Installed as root into site-packages (not editable), then the sources go: nothing at runtime
# is writable by the process, so readOnlyRootFilesystem holds (/tmp is an emptyDir in the pod).
RUN pip install ".[rotate]" \
 && rm -rf /src \
 && python -c "import ksecrets.rotate.postgres, hvac, psycopg"

# A numeric user: the kubelet can only verify runAsNonRoot for a numeric UID (the CronJob also
# sets runAsUser: 10001).
RUN groupadd --gid 10001 rotator \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin rotator
USER 10001:10001
WORKDIR /

ENTRYPOINT ["python", "-m", "ksecrets.rotate"]
