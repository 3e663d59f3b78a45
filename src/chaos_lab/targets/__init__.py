"""Where an experiment runs: the ``Target`` protocol (``base``) and its three implementations,
each with its registry of faults: the local lab (``local``), docker compose (``compose``) and
AWS (``aws``, FIS and SSM through the Terraform outputs)."""
