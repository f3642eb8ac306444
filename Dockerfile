# Airflow 3.3.2 with the xacct-map provider installed, for docker-compose.yaml (every Airflow
# component, and the `aws` service that runs the local two-account emulator with the real processor
# Lambda code). Build context: the repository root (see .dockerignore).
FROM apache/airflow:3.3.2-python3.11

# xacct_map.setup.resources finds asl/, functions/ and dags/ here (an editable install has no bundled copy).
ENV XACCT_MAP_HOME=/opt/xacct-map

COPY --chown=airflow:0 pyproject.toml README.md LICENSE /opt/xacct-map/
COPY --chown=airflow:0 plugins/xacct_map /opt/xacct-map/plugins/xacct_map
COPY --chown=airflow:0 asl /opt/xacct-map/asl
COPY --chown=airflow:0 functions /opt/xacct-map/functions

# Editable install: compose mounts ./plugins over /opt/xacct-map/plugins, so code edits need no rebuild
# (the package metadata and its provider entry point live in site-packages, outside the mount).
# apache-airflow is named with the image's own version so pip can never move it.
RUN pip install --no-cache-dir -e "/opt/xacct-map[local]" "apache-airflow==${AIRFLOW_VERSION}" \
    && python -c "import xacct_map, moto; print('xacct-map', xacct_map.__version__, 'moto', moto.__version__)"
