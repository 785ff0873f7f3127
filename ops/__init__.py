"""The operator's floor: the ``insidetrack`` command, the supervisor of ``insidetrack up``, the
container health check, the demo company and the local Kafka/FerretDB.

The only code that may import the services (and shared); nothing imports it back
(tests/unit/test_import_rules.py)."""
