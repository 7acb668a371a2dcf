"""Entry point of the `container-lock` command."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="container-lock")
def main() -> None:
    """Pin, check and audit the container images that BitBake recipes embed."""


@main.command("parse-url")
@click.argument("url")
def parse_url_command(url: str) -> None:
    """Validate a docker:// URL and print its normalised reference."""
    from containerlock.reference import InvalidReference, parse_url

    try:
        ref = parse_url(url)
    except InvalidReference as err:
        raise click.ClickException(f"{url}: {err}") from None
    click.echo(ref.tagged + (f"@{ref.digest}" if ref.digest else ""))
