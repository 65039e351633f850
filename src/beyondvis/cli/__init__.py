"""The ``beyondvis`` command line. Each module here with a ``register(subparsers)`` adds commands."""
