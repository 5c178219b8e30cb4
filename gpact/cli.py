"""Command line: thin click commands that parse options, call one library function and print.

Every GpactError (bad grammar, formula, config) becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys

import click

from gpact.errors import GpactError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GpactError as exc:
            click.echo(f"gpact: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="gpact")
def main() -> None:
    """gpact: genetic-programming search for activation functions, scored out of distribution."""


# Commands are added below, one function each; keep them thin.
