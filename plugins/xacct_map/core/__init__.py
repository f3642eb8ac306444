"""The pure core: what to list, how to filter and batch it, how to write the manifest, how to read a
Map Run. Airflow-free (imports no ``airflow`` at all): everything takes boto3 clients and plain
values, so the Airflow shells, the CLI and the tests share it. The only other part it uses is the
listing engine, :mod:`xacct_map._engine`."""
