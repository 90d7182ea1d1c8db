"""The ``genbench`` command line (typer); one module per command group."""
