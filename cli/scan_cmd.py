"""`provenance scan` (placeholder until its issue lands; replace this module whole)."""

import click


@click.command(name="scan", hidden=True)
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("'scan' is not implemented yet")
