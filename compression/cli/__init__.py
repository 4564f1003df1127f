"""``python -m compression``: build recipes, list and query variants, check sources. Errors are one line.

``parser`` declares the commands and their options; ``variants`` holds the commands that only read, ``jobs`` those
that do work or write; ``common`` what they share. ``main`` is the boundary that turns any error into one line.
"""

from __future__ import annotations

import os
import sys

from compression.cli.inspect import cmd_inspect
from compression.cli.jobs import cmd_bench, cmd_build, cmd_export, cmd_loadtest, cmd_publish
from compression.cli.parser import make_parser
from compression.cli.variants import cmd_advise, cmd_evaluate, cmd_list, cmd_predict, cmd_sources, cmd_verify
from compression.core.errors import LabError, describe_os_error
from compression.store.run_store import StoreError

__all__ = ["main", "make_parser", "COMMANDS"]

COMMANDS = {"sources": cmd_sources, "build": cmd_build, "list": cmd_list, "predict": cmd_predict,
            "bench": cmd_bench, "evaluate": cmd_evaluate, "advise": cmd_advise, "inspect": cmd_inspect,
            "export": cmd_export,
            "verify": cmd_verify, "publish": cmd_publish,
            "loadtest": cmd_loadtest}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = make_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # the CLI boundary: one line, no traceback (unless --debug)
        if args.debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1


def _one_line(err: Exception) -> str:
    """The error as the user reads it; unexpected kinds are named and point to --debug."""

    known = (LabError, StoreError, ValueError, FileNotFoundError, PermissionError)
    message = describe_os_error(err) or " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, known) and not describe_os_error(err):
        message = f"{type(err).__name__}: {message} (rerun with --debug for the traceback)"
    return message
