"""`provenance tokenizer` (placeholder until its issue lands; replace this module whole)."""

import click


@click.command(name="tokenizer", hidden=True)
def command() -> None:
    """Not implemented yet."""
    raise click.UsageError("'tokenizer' is not implemented yet")
