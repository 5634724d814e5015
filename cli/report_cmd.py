"""`provenance report` (placeholder until its issue lands; replace this module whole)."""

import click


@click.command(name="report", hidden=True)
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("'report' is not implemented yet")
