"""The ``orderflow`` command line's argument handling: a parser whose every refusal is one line
(no usage block), values checked as they are parsed (numbers in range, names from a fixed set
with the closest one suggested), and the package version."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import NoReturn

DISTRIBUTION = "orderflow-devtools"


class UsageError(Exception):
    """A command line the parser refuses: its message is the one line to print."""


class CommandLine(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises ``UsageError`` (one line, pointing at ``--help``)
    instead of printing its usage and exiting; its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (`{self.prog} --help` shows the options)")


def version() -> str:
    """The installed ``orderflow-devtools`` version (``unknown`` when run from a source tree
    that was never installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def unknown(what: str, value: str, known: Sequence[str]) -> str:
    """``unknown channel 'shopfy'; did you mean shopify? (known: ...)``"""
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown {what} {value!r}{hint} (known: {', '.join(known)})"


def one_of(what: str, known: Sequence[str]) -> Callable[[str], str]:
    """An argument type for a name from ``known``; given with ``choices=known`` so that the help
    lists them, it refuses any other name with the closest known one suggested."""

    def parse(value: str) -> str:
        if value not in known:
            raise argparse.ArgumentTypeError(unknown(what, value, known))
        return value

    return parse


def whole(minimum: int) -> Callable[[str], int]:
    """An argument type for a whole number of at least ``minimum``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {number}")
        return number

    return parse


def seconds(value: str) -> float:
    """An argument type for a positive number of seconds."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {value!r}")
    return number


def replicas(services: Sequence[str]) -> Callable[[str], tuple[str, int]]:
    """An argument type for ``SERVICE=N`` (``SERVICE`` alone: one): a known service, N >= 1."""
    count = whole(1)

    def parse(value: str) -> tuple[str, int]:
        name, sign, number = value.partition("=")
        if name not in services:
            raise argparse.ArgumentTypeError(unknown("service", name, services))
        if sign and not number:
            raise argparse.ArgumentTypeError(f"expected SERVICE=N, got {value!r}")
        return name, count(number) if sign else 1

    return parse
