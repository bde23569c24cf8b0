"""The `spinenas` command line.

Read-only commands (`space`, `spec`, `top`, `show`, `searches`) import neither TensorFlow nor Ray, so they answer
in about a second; heavy modules are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

logger = logging.getLogger(__name__)

PROG = "spinenas"


class UserError(Exception):
    """A mistake in the command line or its inputs: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump) and exit with code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _fmt_int(n: int) -> str:
    """An exact integer, with its order of magnitude when large."""
    if n < 10**6:
        return f"{n:,}"
    return f"{n:.3e}  ({n})"


def _print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


# --------------------------------------------------------------------------------------------------- space
def _cmd_space(args: argparse.Namespace) -> int:
    from search_space import SearchSpace, get_family

    try:
        family = get_family(args.family)
    except LookupError as e:
        raise UserError(str(e)) from None
    if args.window == 1 or args.window < 0:
        raise UserError(f"--window must be 0 (no limit) or at least 2 (every block takes 2 parents), got {args.window}")
    window = None if args.window == 0 else args.window
    space = SearchSpace(family, window=window)
    sizes = space.sizes()
    if args.json:
        print(json.dumps(sizes, indent=2))
        return 0
    print(f"family {family.name}: {family.description}")
    print(
        f"stem L2..L5 {list(family.stem)}, stem candidates m = {sizes['m']} (levels {list(family.stem_levels)}); "
        f"scale-permuted blocks N = {sizes['N']} ({sizes['N'] - 5} intermediate + 5 output)"
    )
    print(f"parent window for intermediate blocks: {window if window else 'none'}\n")
    rows = [
        ("permutations", "(N-5)! * 5!", _fmt_int(sizes["permutations"])),
        ("connections", "prod_{i=m}^{N+m-1} C(i,2)", _fmt_int(sizes["connections"])),
        ("connections_windowed", "intermediate parents in the window", _fmt_int(sizes["connections_windowed"])),
        (
            "level_adjustments",
            "4^(N-5)" if family.level_shifts else "not searched",
            _fmt_int(sizes["level_adjustments"]),
        ),
        ("block_types", "2^N" if family.search_block_fns else "not searched", _fmt_int(sizes["block_types"])),
        ("log10_total", "paper's product (unwindowed)", f"{sizes['log10_total']:.2f}"),
        ("log10_total_windowed", "product with the window", f"{sizes['log10_total_windowed']:.2f}"),
        ("distinct_permutations", "orderings of distinct levels", _fmt_int(sizes["distinct_permutations"])),
        ("decisions", "steps of the encoding", sizes["decisions"]),
        ("decision_sequences", "size of the encoding", _fmt_int(sizes["decision_sequences"])),
    ]
    _print_table(("size", "counts", "value"), rows)
    return 0


# --------------------------------------------------------------------------------------------------- spec
def _load_arch(ref: str):  # noqa: ANN202 - returns ArchSpec, kept lazy
    from search_space import InvalidArchError, load_arch

    try:
        return load_arch(ref)
    except (LookupError, FileNotFoundError, InvalidArchError) as e:
        raise UserError(str(e).strip("'\"")) from None


def _cmd_spec_show(args: argparse.Namespace) -> int:
    arch = _load_arch(args.arch)
    if args.format == "json":
        print(json.dumps(arch.to_dict(), indent=2))
        return 0
    if args.format == "model-garden":
        print("[")
        for t in arch.to_model_garden():
            print(f"    {t!r},")
        print("]")
        return 0
    from search_space import FAMILIES, SearchSpace

    net = arch.network()
    live = set(net.live)
    m = arch.num_stem_candidates
    print(f"key {arch.key}   stem L2..L5 {list(arch.stem)} (candidates: levels {list(arch.stem_levels)})")
    rows = [(j, f"L{lvl}", "bottleneck", "-", "stem", "") for j, lvl in enumerate(arch.stem_levels)]
    for i, b in enumerate(arch.blocks):
        role = "output" if b.is_output else "intermediate"
        note = "" if i in live else "dead: feeds no endpoint"
        if b.is_output and b.level not in (3, 4, 5, 6, 7):
            role = "output (no endpoint)"
        rows.append((m + i, f"L{b.level}", b.block_fn, f"{b.input_offsets[0]},{b.input_offsets[1]}", role, note))
    _print_table(("offset", "level", "block_fn", "inputs", "role", "note"), rows)
    spaces = [name for name in FAMILIES if SearchSpace(name).contains(arch)]
    print(f"\nin search space(s): {', '.join(spaces) if spaces else 'none of the built-in families (window 5)'}")
    return 0


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

    p = sub.add_parser(
        "space",
        help="print a search space's size as the paper counts it",
        description="Print the size of a family's search space as the SpineNet paper counts it (section 3): "
        "N = blocks in the scale-permuted network, m = stem blocks that are parent candidates.",
    )
    p.add_argument(
        "--family",
        required=True,
        help="r35-sp18, r23-sp30, r14-sp39, r0-sp53 or spinenet49 (R0-SP53 plus block adjustments)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=5,
        help="parents of an intermediate block come from the last K blocks built (default 5 as in the paper; "
        "Vertex AI uses 4; 0 = no limit)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (exact integers)")
    p.set_defaults(func=_cmd_space)

    p = sub.add_parser("spec", help="inspect an architecture spec", description="Inspect an architecture spec.")
    spec_sub = p.add_subparsers(dest="spec_command", metavar="SUBCOMMAND", parser_class=_Parser, required=True)
    q = spec_sub.add_parser(
        "show",
        help="print a spec as a table, JSON or Model Garden tuples",
        description="Print an architecture: a table of its blocks (dead blocks marked), its canonical JSON, or "
        "the Python list of (level, block_fn, (input0, input1), is_output) tuples that Model Garden's "
        "build_block_specs accepts.",
    )
    q.add_argument("arch", help="'spinenet-49' or the path of a JSON spec file")
    q.add_argument("--format", choices=("table", "json", "model-garden"), default="table")
    q.set_defaults(func=_cmd_spec_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `spinenas` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
