"""The base of django-ensign's management commands."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class EnsignCommand(BaseCommand):
    """A command whose options must be spelled out.

    argparse takes a prefix of any option by default, so ``--force`` on a command without
    it silently meant Django's ``--force-color``: here it is an error naming the option.
    """

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.allow_abbrev = False
        return parser
