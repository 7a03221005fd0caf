"""The `xseason` command line: `xseason COMMAND [options]`, `xseason COMMAND --help`."""

from __future__ import annotations

import argparse
import importlib
import sys

from xseason import __version__
from xseason.commands import COMMANDS
from xseason.core.errors import NotBuiltYet, XSeasonError


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xseason",
        description="Cross-season 2D-2D correspondence datasets, and training for seasonal robustness.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<11} {text}" for name, text in COMMANDS.items())
        + "\n\nRun 'xseason COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"xseason {__version__}")
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def _load(command: str):
    name = f"{__package__}.commands.{command.replace('-', '_')}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise NotBuiltYet(f"'xseason {command}' is not built yet") from None


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
        args = parser.parse_args(argv[1:])
        return int(module.run(args) or 0)
    except NotBuiltYet as exc:
        print(f"xseason: {exc}", file=sys.stderr)
        return 3
    except XSeasonError as exc:
        print(f"xseason {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xseason {command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
