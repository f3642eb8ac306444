"""Setting up the AWS side: least-privilege policy documents (:mod:`.policies`), side-effect-free
checks (:mod:`.preflight`), deployment of the state machine and Lambda (:mod:`.deploy`), and where
the bundled ``asl/``, ``functions/`` and ``dags/`` are (:mod:`.resources`). Used by the CLI and by
the operators' preflight; Airflow only inside :func:`.preflight.run_preflight_with_connection`."""
