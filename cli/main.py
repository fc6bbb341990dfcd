"""The ``poisonguard`` command."""

from __future__ import annotations

import click
from poisonguard.cli.evaluate import evaluate_command
from poisonguard.cli.options import configure_logging
from poisonguard.cli.poison import poison
from poisonguard.cli.privacy import privacy
from poisonguard.cli.sanitize import sanitize
from poisonguard.cli.scan import scan

from poisonguard import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poisonguard")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Audit machine-learning training data for poisoning.

    Exit codes: 0 success, 1 error (bad input, unreadable file), 2 usage error,
    3 samples flagged (only with --fail-on-findings).
    """
    configure_logging(verbose)


main.add_command(scan)
main.add_command(poison)
main.add_command(sanitize)
main.add_command(evaluate_command)
main.add_command(privacy)
