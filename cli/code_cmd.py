"""`provenance code` (placeholder until its issue lands; replace this module whole)."""

import click


@click.command(name="code", hidden=True)
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("'code' is not implemented yet")
