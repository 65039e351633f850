"""The ``beyondvis`` command line. Each module here with a ``register(subparsers)`` adds commands.

The CLI is the ``beyondvis`` console script (``beyondvis.cli.main:main``), not a library API: it
imports only the public names of the other packages (tests/test_public_api.py checks that).
"""

__all__: list[str] = []
