"""`spinenas space` and `spinenas spec show`: the search space's size and a spec's blocks (TF-free)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nas.commands.common import load_arch_or_exit
from nas.ui import UserError, fmt_int, print_table


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
        ("permutations", "(N-5)! * 5!", fmt_int(sizes["permutations"])),
        ("connections", "prod_{i=m}^{N+m-1} C(i,2)", fmt_int(sizes["connections"])),
        ("connections_windowed", "intermediate parents in the window", fmt_int(sizes["connections_windowed"])),
        (
            "level_adjustments",
            "4^(N-5)" if family.level_shifts else "not searched",
            fmt_int(sizes["level_adjustments"]),
        ),
        ("block_types", "2^N" if family.search_block_fns else "not searched", fmt_int(sizes["block_types"])),
        ("log10_total", "paper's product (unwindowed)", f"{sizes['log10_total']:.2f}"),
        ("log10_total_windowed", "product with the window", f"{sizes['log10_total_windowed']:.2f}"),
        ("distinct_permutations", "orderings of distinct levels", fmt_int(sizes["distinct_permutations"])),
        ("decisions", "steps of the encoding", sizes["decisions"]),
        ("decision_sequences", "size of the encoding", fmt_int(sizes["decision_sequences"])),
    ]
    print_table(("size", "counts", "value"), rows)
    return 0


# --------------------------------------------------------------------------------------------------- spec
def _cmd_spec_show(args: argparse.Namespace) -> int:
    arch = load_arch_or_exit(args.arch)
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
    print_table(("offset", "level", "block_fn", "inputs", "role", "note"), rows)
    spaces = [name for name in FAMILIES if SearchSpace(name).contains(arch)]
    print(f"\nin search space(s): {', '.join(spaces) if spaces else 'none of the built-in families (window 5)'}")
    return 0


def register(sub: Any) -> None:
    """Adds `space` and `spec` to the `spinenas` subcommands."""
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
    spec_sub = p.add_subparsers(dest="spec_command", metavar="SUBCOMMAND", parser_class=type(p), required=True)
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
