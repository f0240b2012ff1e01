# The checkout's tfrepro on top of the cached deps image. --no-deps keeps the image's
# TensorFlow; a real (non-editable) install registers the CLI and the MLflow plugin entry point.
ARG DEPS
FROM ${DEPS}
COPY src /tmp/tfrepro-src
RUN pip install --no-cache-dir -q --no-deps --no-build-isolation /tmp/tfrepro-src \
 && rm -rf /tmp/tfrepro-src \
 && python -c "import tfrepro, tfrepro_mlflow" \
 && tfrepro --help >/dev/null
LABEL org.opencontainers.image.title="tfrepro-test"
