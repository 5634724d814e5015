"""`provenance policy` (placeholder until its issue lands; replace this module whole)."""

import click


@click.command(name="policy", hidden=True)
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("'policy' is not implemented yet")
