"""The base of django-ensign's management commands."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


def positive_int(text: str) -> int:
    """The argparse type of an option that counts something: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class EnsignCommand(BaseCommand):
    """A command whose options must be spelled out.

    argparse takes a prefix of any option by default, so ``--force`` on a command without
    it silently meant Django's ``--force-color``: here it is an error naming the option.
    """

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.allow_abbrev = False
        return parser
