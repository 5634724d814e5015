"""Hub sub-commands of `provenance index` (pull, fetch, export, import); placeholder until issue 9 lands."""

import click

COMMANDS: list[click.Command] = []
