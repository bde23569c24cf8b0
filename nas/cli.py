"""The `spinenas` command line.

Read-only commands (`space`, `spec`, `top`, `show`, `searches`) import neither TensorFlow nor Ray, so they answer
in about a second; heavy modules are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from nas.ui import UserError

logger = logging.getLogger(__name__)

PROG = "spinenas"

# Each module has `register(subparsers)` and imports nothing heavy at module level: TensorFlow, Ray and SQLAlchemy
# are imported inside the command functions that need them.
COMMAND_MODULES: tuple[str, ...] = (
    "nas.commands.space",
    "nas.commands.proxy",
    "nas.commands.search",
    "nas.commands.calibrate",
    "nas.commands.db",
    "nas.commands.export",
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so a search stops as on Ctrl-C (nothing lost; resume later)."""


_TERMINATED = {"seen": False}


def _on_sigterm(signum: int, frame: object) -> None:
    _TERMINATED["seen"] = True
    raise Terminated()


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
    parser = build_parser()
    args = parser.parse_args(argv)
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
    # SIGINT too, even when the shell that started a background job set it to be ignored.
    _TERMINATED["seen"] = False
    try:
        previous = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGTERM, _on_sigterm), (signal.SIGINT, signal.default_int_handler))}
    except ValueError:  # not the main thread (an embedding host): leave the signals as they are
        previous = {}
    try:
        code = func(args)
        return 143 if _TERMINATED["seen"] else code
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: {'terminated' if _TERMINATED['seen'] else 'interrupted'}", file=sys.stderr)
        return 143 if _TERMINATED["seen"] else 130
    except BrokenPipeError:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
