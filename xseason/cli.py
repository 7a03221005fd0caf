"""The `xseason` command line: `xseason COMMAND [options]`, `xseason COMMAND --help`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from xseason import __version__
from xseason.commands import COMMANDS
from xseason.core.errors import XSeasonError
from xseason.core.log import configure, set_progress


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xseason",
        description="Cross-season 2D-2D correspondence datasets, and training for seasonal robustness.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<11} {text}" for name, text in COMMANDS.items())
        + "\n\nRun 'xseason COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"xseason {__version__}")
    parser.add_argument(
        "command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below"
    )
    return parser


def _load(command: str) -> ModuleType:
    """The module of `command` (imported only when it runs, so that `xseason --help` stays fast)."""
    return importlib.import_module(f"{__package__}.commands.{command.replace('-', '_')}")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    """`--quiet` and `-v/--verbose`, which every command takes."""
    group = parser.add_argument_group("output").add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true", help="no progress bars, only warnings and errors")
    group.add_argument("-v", "--verbose", action="store_true", help="also debug messages on stderr")


def _configure_output(args: argparse.Namespace) -> None:
    """Console logging at INFO (WARNING with --quiet, DEBUG with --verbose); bars off with --quiet."""
    configure(logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO)
    set_progress(not args.quiet)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv or ["--help"])
        return 2
    command = argv[0]
    try:
        module = _load(command)
        parser = argparse.ArgumentParser(prog=f"xseason {command}", description=COMMANDS[command])
        module.add_arguments(parser)
        _add_output_options(parser)
        args = parser.parse_args(argv[1:])
        _configure_output(args)
        return int(module.run(args) or 0)
    except XSeasonError as exc:
        print(f"xseason {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xseason {command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
