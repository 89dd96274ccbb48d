"""The placement service (``autoflow serve``): the scheduler core and its policies behind
an HTTP API, a durable store, tokens, metrics and a dashboard. Needs the ``serve`` extra;
importing this package alone does not."""

DEFAULT_DB = "sqlite:///autoflow-data/autoflow.db"
