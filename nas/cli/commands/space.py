"""`spinenas space` and `spinenas spec show`: the search space's size, a spec's blocks and its cost (TF-free)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from nas.cli.commands.common import load_arch_or_exit, load_config
from nas.cli.ui import UserError, fmt_count, fmt_int, print_table

# Classes of the detector `spinenas export` builds unless told otherwise (Model Garden's retinanet_spinenet_coco).
EXPORT_NUM_CLASSES = 91
# The preset whose proxy `spec show --cost` counts when given neither --scale nor --preset (as `proxy run`).
DEFAULT_PRESET = "demo"
# Keys of `spec show --cost --format json`, in order (scaling's are `search_space.cost.Scaling`'s fields).
COST_FIELDS = ("key", "params", "flops", "backbone_params", "backbone_flops", "head_params", "head_flops",
               "image_size", "num_classes", "scale", "preset", "filter_size_scale", "resample_alpha", "block_repeats",
               "endpoints_num_filters", "head_num_convs", "head_num_filters", "activation", "use_sync_bn")


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
    given = [flag for flag, value in (("--scale", args.scale), ("--preset", args.preset),
                                      ("--image-size", args.image_size), ("--num-classes", args.num_classes))
             if value is not None]
    if given and not args.cost:
        raise UserError(f"{given[0]} goes with --cost")
    if args.cost and args.format == "model-garden":
        raise UserError("--cost prints a table or --format json, not --format model-garden")
    arch = load_arch_or_exit(args.arch)
    if args.cost:
        figures = cost_figures(arch, scale=args.scale, preset=args.preset, image_size=args.image_size,
                               num_classes=args.num_classes)
        if args.format == "json":
            print(json.dumps(figures, indent=2))
        else:
            _print_cost(args.arch, figures)
        return 0
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


def cost_figures(arch: Any, *, scale: str | None = None, preset: str | None = None, image_size: int | None = None,
                 num_classes: int | None = None) -> dict[str, Any]:
    """Params and FLOPs of the RetinaNet of `arch` as export builds it at `scale`, or as a preset's proxy trial does.

    Args:
      arch: the architecture.
      scale: one of export's named scales (`search_space.cost.SCALINGS`): the detector `spinenas export --scale`
        builds (Model Garden's synchronized batch norms, `IMAGE_SIZES[scale]`, 91 classes by default). None: the
        proxy's detector of `preset` (fused batch norms, the proxy's image size, its dataset's classes), exactly
        what a trial stores (`ProxyConfig.cost`).
      preset: a preset name or YAML file (`DEFAULT_PRESET` when None); not with `scale`.
      image_size: the input side instead of the default (a positive multiple of 128).
      num_classes: the classes instead of the default (at least 1).

    Returns:
      A dict with the keys `COST_FIELDS`, in that order; ``scale`` or ``preset`` is None, the one not used.

    Raises:
      UserError: a bad value, an unknown scale or preset, or a stem the builder does not build.
    """
    from search_space.cost import IMAGE_SIZES, SCALINGS, count_cost

    if scale is not None and preset is not None:
        raise UserError("--scale (the detector export builds) and --preset (a proxy's) exclude each other")
    if image_size is not None and (image_size < 128 or image_size % 128):
        raise UserError(f"--image-size must be a positive multiple of 128, got {image_size}")
    if num_classes is not None and num_classes < 1:
        raise UserError(f"--num-classes must be at least 1, got {num_classes}")
    try:
        if scale is not None:
            if scale not in SCALINGS:
                raise UserError(f"unknown scale {scale!r}; expected one of {', '.join(SCALINGS)}")
            scaling, activation, sync_bn = SCALINGS[scale], "swish", True
            size = image_size or IMAGE_SIZES[scale]
            classes = num_classes or EXPORT_NUM_CLASSES
            cost = count_cost(arch, image_size=size, num_classes=classes, scaling=scaling, activation=activation,
                              use_sync_bn=sync_bn)
        else:
            from proxy_task.data import num_classes_of

            preset = preset or DEFAULT_PRESET
            proxy = load_config(preset, []).proxy
            if image_size is not None:
                proxy = dataclasses.replace(proxy, image_size=image_size)
            scaling, activation, sync_bn, size = proxy.scaling(), proxy.activation, False, proxy.image_size
            classes = num_classes or num_classes_of(proxy.data)
            cost = proxy.cost(arch, classes)
    except ValueError as e:  # a ResNet stem `count_cost` (like the builder) does not build
        raise UserError(str(e)) from None
    return {"key": arch.key, "params": cost.params, "flops": cost.flops, "backbone_params": cost.backbone_params,
            "backbone_flops": cost.backbone_flops, "head_params": cost.head_params, "head_flops": cost.head_flops,
            "image_size": size, "num_classes": classes, "scale": scale, "preset": preset,
            **dataclasses.asdict(scaling), "activation": activation, "use_sync_bn": sync_bn}


def _print_cost(name: str, f: dict[str, Any]) -> None:
    if f["scale"] is not None:
        built = f"as `spinenas export --scale {f['scale']}` builds it"
    else:
        built = f"as a trial of preset {f['preset']} counts it"
    print(f"{name} (key {f['key']}), {built}: {f['image_size']} px, {f['num_classes']} classes")
    print(f"filter scale {f['filter_size_scale']:g}, resample alpha {f['resample_alpha']:g}, block repeats "
          f"{f['block_repeats']}, endpoints {f['endpoints_num_filters']}, head {f['head_num_convs']} convs of "
          f"{f['head_num_filters']}, {f['activation']}, {'synchronized' if f['use_sync_bn'] else 'fused'} batch norm")
    rows = [(part, *(f"{f[prefix + what]:,} ({fmt_count(f[prefix + what])})" for what in ("params", "flops")))
            for part, prefix in (("backbone", "backbone_"), ("head", "head_"), ("detector", ""))]
    print_table(("part", "params", "FLOPs"), rows)
    print("FLOPs: multiply-adds per image (TF profiler float operations / 2); params: every weight, batch norm "
          "statistics included (model.count_params())")


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
        help="print a spec as a table, JSON or Model Garden tuples, or what its detector costs",
        description="Print an architecture: a table of its blocks (dead blocks marked), its canonical JSON, or "
        "the Python list of (level, block_fn, (input0, input1), is_output) tuples that Model Garden's "
        "build_block_specs accepts. With --cost: the parameters and FLOPs of its RetinaNet (backbone, head, "
        "whole detector), counted from the spec alone by Model Garden's layer rules (search_space/cost.py), "
        "either as `spinenas export --scale S` builds it (--scale) or as a proxy trial of a preset does "
        "(default: the demo preset's; what a trial stores). FLOPs are multiply-adds per image: TF's profiler "
        "float operations on the inference graph of backbone and head, halved, as the export's and a trial's "
        "counts are; params are every weight, batch norm statistics included (model.count_params()).",
    )
    q.add_argument("arch", help="'spinenet-49' or the path of a JSON spec file")
    q.add_argument("--format", choices=("table", "json", "model-garden"), default="table")
    q.add_argument("--cost", action="store_true",
                   help="print params and FLOPs (multiply-adds per image) of backbone, head and detector instead")
    where = q.add_mutually_exclusive_group()
    where.add_argument("--scale", help="with --cost: count the detector `spinenas export --scale S` builds "
                       "(49S, 49, 96, 143 or 190: its paper image size, 91 classes, synchronized batch norm)")
    where.add_argument("--preset", help="with --cost: count a trial of this preset's proxy (name or YAML file; "
                       f"default {DEFAULT_PRESET}: its image size, its dataset's classes, fused batch norm)")
    q.add_argument("--image-size", type=int, metavar="N",
                   help="with --cost: the image side (a multiple of 128; default the scale's or the proxy's)")
    q.add_argument("--num-classes", type=int, metavar="C",
                   help="with --cost: the detector's classes (default 91 with --scale, else the proxy dataset's)")
    q.set_defaults(func=_cmd_spec_show)
