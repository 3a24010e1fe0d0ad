# The rotator image: `python -m ksecrets.rotate`, run by the rotation CronJobs.
#   docker build -t ghcr.io/example/ksecrets-rotator:0.1.0 .
# The tag goes into the stack config (k8s-secrets:rotation.image); never :latest.
#
# Pinned base by tag (Debian bookworm, Python 3.11 like the project's venv). The rotator needs only
# hvac, PyYAML and psycopg (psycopg[binary]: libpq ships in the wheel, no apt packages): the package
# is installed without its dependencies (those of the CLI and the Pulumi program: no Pulumi SDK, no
# kubernetes-validate), then the `rotate` extra's requirements, read from pyproject.toml, the one
# place their exact pins are written.
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
RUN pip install --no-deps . \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['rotate']))" > /tmp/rotate.txt \
 && pip install -r /tmp/rotate.txt \
 && rm -rf /src /tmp/rotate.txt \
 && python -c "import ksecrets.jobs.rotate.postgres, hvac, psycopg" \
 && ! python -c "import pulumi" 2>/dev/null

# A numeric user: the kubelet can only verify runAsNonRoot for a numeric UID (the CronJob also
# sets runAsUser: 10001).
RUN groupadd --gid 10001 rotator \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin rotator
USER 10001:10001
WORKDIR /

ENTRYPOINT ["python", "-m", "ksecrets.rotate"]
