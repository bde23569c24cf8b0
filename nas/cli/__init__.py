"""The `spinenas` command line.

Read-only commands (`space`, `spec`, `top`, `show`, `searches`) import neither TensorFlow nor Ray, so they answer
in about a second; heavy modules are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from nas.cli import plugins
from nas.engine import signals
from nas.cli.ui import UserError, printable
from results_db.errors import DatabaseOpenError, LeaseLostError

logger = logging.getLogger(__name__)

PROG = "spinenas"

#: The exit code of a search or study whose driver was fenced out: another driver took its lease over (this one was
#: paused or cut off for longer than the lease), so it stopped without writing more.
EXIT_LEASE_LOST = 3

# Each module has `register(subparsers)` and imports nothing heavy at module level: TensorFlow, Ray and SQLAlchemy
# are imported inside the command functions that need them.
COMMAND_MODULES: tuple[str, ...] = (
    "nas.cli.commands.space",
    "nas.cli.commands.proxy",
    "nas.cli.commands.search",
    "nas.cli.commands.calibrate",
    "nas.cli.commands.db",
    "nas.cli.commands.export",
    "nas.cli.commands.dashboard",
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump) and exit with code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The full `spinenas` argument parser."""
    parser = _Parser(
        prog=PROG,
        description="Search SpineNet backbones: the paper's search space, controllers, a Model Garden RetinaNet "
        "proxy task, a SQL results database and a Ray search job.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `spinenas` console script."""
    try:  # Ctrl-C while the commands' modules load (~50 ms): the one line a command gives, not a traceback
        parser = build_parser()
        plugins.preimport(argv)  # their names are choices of flags such as --evaluator
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except UserError as e:  # a plug-in that cannot be imported
        print(f"{PROG}: error: {printable(e)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # Commands may turn their own loggers up for a log file; the terminal shows warnings unless --verbose.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    # SIGTERM (a scheduler, `kill`, a container stop) is handled like Ctrl-C: the job stops cleanly, exit code 143.
    previous = signals.install()
    try:
        code = func(args)
        return signals.EXIT_TERMINATED if signals.terminated() else code
    except UserError as e:  # stored text may be quoted in it: no escape sequence reaches the terminal
        print(f"{PROG}: error: {printable(e)}", file=sys.stderr)
        return 2
    except LeaseLostError as e:
        print(f"{PROG}: stopped: {printable(e)}", file=sys.stderr)
        return EXIT_LEASE_LOST
    except DatabaseOpenError as e:  # the database failed under a running command (a full disk): not the user's input
        print(f"{PROG}: error: {printable(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: {'terminated' if signals.terminated() else 'interrupted'}", file=sys.stderr)
        return signals.EXIT_TERMINATED if signals.terminated() else 130
    except BrokenPipeError:
        return 0
    finally:
        signals.restore(previous)

