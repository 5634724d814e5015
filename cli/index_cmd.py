"""`provenance index` (placeholder until its issue lands; replace this module whole)."""

import click


@click.command(name="index", hidden=True)
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("'index' is not implemented yet")
