"""`provenance inspect` (placeholder until its issue lands; replace this module whole)."""

import click


@click.command(name="inspect", hidden=True)
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("'inspect' is not implemented yet")
