"""Reading a secret for a CLI command: from a file, from standard input, or asked for at
the terminal, never from the command line (where every local user's ``ps`` shows it)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from citypilot.model.errors import BadRequestData


def add_secret_options(parser: argparse.ArgumentParser, what: str = "password") -> None:
    """The options that say where the secret comes from (the terminal when neither)."""
    group = parser.add_mutually_exclusive_group()
    # refused with the reason, rather than argparse's guess at an abbreviation
    group.add_argument(f"--{what}", dest=f"{what.replace('-', '_')}_given", help=argparse.SUPPRESS)
    group.add_argument(
        f"--{what}-stdin",
        action="store_true",
        help=f"read the {what} from the first line of standard input",
    )
    group.add_argument(
        f"--{what}-file", type=Path, metavar="FILE", help=f"read the {what} from FILE's first line"
    )


def read_secret(args: argparse.Namespace, prompt: str, what: str = "password") -> str:
    """The secret the options name, or asked for twice at the terminal.

    BadRequestData (naming the option) when the source is empty or there is no terminal
    to ask at.
    """
    key = what.replace("-", "_")
    if getattr(args, f"{key}_given", None) is not None:
        raise BadRequestData(
            f"a {what} on the command line is visible to every local user (ps): "
            f"use --{what}-stdin or --{what}-file FILE, or type it when asked",
            f"--{what}",
        )
    path: Path | None = getattr(args, f"{key}_file")
    if path is not None:
        try:
            secret = path.read_text().splitlines()[0] if path.stat().st_size else ""
        except OSError as exc:
            raise BadRequestData(f"cannot read {path}: {exc.strerror}", f"--{what}-file") from None
        return _non_empty(secret, f"--{what}-file")
    if getattr(args, f"{key}_stdin"):
        return _non_empty(sys.stdin.readline().rstrip("\r\n"), f"--{what}-stdin")
    if not sys.stdin.isatty():
        raise BadRequestData(
            f"no terminal to ask for the {what} at: pass --{what}-stdin (and pipe it in) "
            f"or --{what}-file FILE",
            f"--{what}-stdin",
        )
    try:
        secret = getpass.getpass(prompt)
        again = getpass.getpass("Again: ")
    except EOFError:
        raise BadRequestData(f"no {what} was entered", f"--{what}-stdin") from None
    if secret != again:
        raise BadRequestData(f"the two {what}s differ", what)
    return _non_empty(secret, what)


def _non_empty(secret: str, option: str) -> str:
    if not secret:
        raise BadRequestData(f"the {option} source gave an empty secret", option)
    return secret
