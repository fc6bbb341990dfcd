import click

from poisonguard import __version__


@click.group()
@click.version_option(__version__, prog_name="poisonguard")
def main() -> None:
    """PoisonGuard."""
