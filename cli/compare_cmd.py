"""`provenance compare` (placeholder until its issue lands; replace this module whole)."""

import click


@click.command(name="compare", hidden=True)
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("'compare' is not implemented yet")
