# TensorFlow 2.9 + the MLflow client on a debootstrapped Debian bullseye (Python 3.9).
# The host's CA bundle comes in as a build secret: pip behind the package proxy needs it,
# and it never lands in a layer.
ARG BASE
FROM ${BASE}
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    TF_CPP_MIN_LOG_LEVEL=2
COPY requirements.txt /opt/tfrepro-requirements.txt
RUN --mount=type=secret,id=cacert,target=/run/secrets/cacert \
    python3 -m venv /opt/venv \
 && PIP_CERT=/run/secrets/cacert pip install --no-cache-dir -q --upgrade pip setuptools wheel \
 && PIP_CERT=/run/secrets/cacert pip install --no-cache-dir -q -r /opt/tfrepro-requirements.txt \
 && pip check
