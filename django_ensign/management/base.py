"""The base of django-ensign's management commands."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.connection import ConnectionDoesNotExist


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
    """A command whose options must be spelled out, and whose unknown aliases are named.

    argparse takes a prefix of any option by default, so ``--force`` on a command without
    it silently meant Django's ``--force-color``: here it is an error naming the option.
    A ``--database`` (or a router's answer) naming no configured alias is a one-line
    error, not a traceback.
    """

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except ConnectionDoesNotExist as err:
            raise CommandError(str(err)) from err

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.allow_abbrev = False
        return parser
