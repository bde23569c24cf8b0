"""A scale-permuted architecture drawn like the SpineNet paper's figures: blocks in build order, placed by level.

Independent of the results database, so a model card (`spinenas export`) can use it too. Matplotlib is imported
inside the functions, with no pyplot state: the read-only CLI stays light and the drawing is thread-safe.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search_space import ArchSpec

logger = logging.getLogger(__name__)

# Block type -> (marker, face colour). Bottlenecks (Cin = Cout = 4C) are squares, residual blocks (C) circles.
BLOCK_STYLE: dict[str, tuple[str, str]] = {"bottleneck": ("s", "#4c72b0"), "residual": ("o", "#dd8452")}
STEM_COLOUR = "#9a9a9a"
DEAD_COLOUR = "#d9d9d9"
PARENT_EDGE = "#404040"
MERGED_EDGE = "#2ca02c"
IMAGE_FORMATS = ("png", "svg")


def text_diagram(arch: ArchSpec) -> str:
    """A plain-text sketch of `draw_arch`'s picture: one row per level (L7 top), one column per block.

    ``S`` = stem candidate, ``B`` / ``R`` = bottleneck / residual block, ``*`` = output block (endpoint),
    lowercase = dead block (feeds no endpoint).
    """
    m = arch.num_stem_candidates
    live = set(arch.network().live)
    cols: list[tuple[int, str]] = [(lvl, " S ") for lvl in arch.stem_levels]
    for i, b in enumerate(arch.blocks):
        sym = b.block_fn[0].upper() if i in live else b.block_fn[0]
        endpoint = b.is_output and b.level in (3, 4, 5, 6, 7) and i in live
        cols.append((b.level, f" {sym}{'*' if endpoint else ' '}"))
    header = "    " + "".join(f"{j:>3}" for j in range(m)) + " |" + "".join(f"{j:>3}" for j in range(m, len(cols)))
    lines = [header]
    for lvl in range(7, 1, -1):
        row = [cell if level == lvl else "   " for level, cell in cols]
        lines.append(f"L{lvl}  " + "".join(row[:m]) + " |" + "".join(row[m:]))
    return "\n".join(line.rstrip() for line in lines)


def draw_arch_on(ax: Any, arch: ArchSpec, title: str | None = None, *, legend: bool = True) -> None:
    """Draws `arch` on a matplotlib Axes (see `draw_arch`)."""
    _draw_edges(ax, arch)
    _draw_blocks(ax, arch)
    _draw_axes(ax, arch, title)
    if legend:
        _draw_legend(ax)


def _draw_edges(ax: Any, arch: ArchSpec) -> None:
    """The two parents of every block (grey and dotted for dead blocks), then the merges into output blocks."""
    m = arch.num_stem_candidates
    net = arch.network()
    live = set(net.live)
    levels = list(arch.stem_levels) + [b.level for b in arch.blocks]
    for i, b in enumerate(arch.blocks):
        alive = i in live
        for o in b.input_offsets:
            _draw_edge(
                ax,
                levels,
                o,
                m + i,
                colour=PARENT_EDGE if alive else DEAD_COLOUR,
                style="-" if alive else ":",
                width=1.0,
                alpha=0.75 if alive else 1.0,
                z=1,
            )
    for k, (_lvl, _fn, _parents, merged, _endpoint) in enumerate(net.blocks):
        for j in merged:
            # j indexes [stem..., live blocks...]; the drawing indexes [stem..., blocks...].
            source = j if j < m else m + net.live[j - m]
            _draw_edge(ax, levels, source, m + net.live[k], colour=MERGED_EDGE, style="--", width=1.4, alpha=0.9, z=2)


def _draw_edge(ax: Any, levels: list[int], a: int, b: int, *, colour: str, style: str, width: float, alpha: float,
               z: int) -> None:
    """An arrow from node `a` to node `b`, each drawn at (its index, its level)."""
    from matplotlib.patches import FancyArrowPatch

    (x0, y0), (x1, y1) = (float(a), float(levels[a])), (float(b), float(levels[b]))
    # Bend long edges more, so that edges between the same two levels do not lie on top of each other, and
    # towards the middle levels, so that they stay inside the axes (arc3: rad > 0 bulges right of travel).
    bulge = -1 if (y0 + y1) / 2 < 4.5 else 1
    rad = 0.0 if b - a == 1 else min(0.5, 0.05 + 0.03 * (b - a)) * bulge
    ax.add_patch(
        FancyArrowPatch(
            (x0, y0),
            (x1, y1),
            connectionstyle=f"arc3,rad={rad:.3f}",
            arrowstyle="-|>",
            mutation_scale=8,
            shrinkA=7,
            shrinkB=7,
            color=colour,
            linestyle=style,
            linewidth=width,
            alpha=alpha,
            zorder=z,
        )
    )


def _draw_blocks(ax: Any, arch: ArchSpec) -> None:
    """The stem candidates, then the blocks in `BLOCK_STYLE`; output blocks bordered and named (P3..P7)."""
    m = arch.num_stem_candidates
    live = set(arch.network().live)
    for j, lvl in enumerate(arch.stem_levels):
        ax.scatter([j], [lvl], marker="s", s=150, c=STEM_COLOUR, edgecolors="#555555", linewidths=1.0, zorder=3)
    for i, b in enumerate(arch.blocks):
        marker, colour = BLOCK_STYLE[b.block_fn]
        alive = i in live
        endpoint = alive and b.is_output and b.level in (3, 4, 5, 6, 7)
        ax.scatter(
            [m + i],
            [b.level],
            marker=marker,
            s=230 if endpoint else 150,
            c=colour if alive else DEAD_COLOUR,
            edgecolors="black" if endpoint else ("#555555" if alive else "#aaaaaa"),
            linewidths=2.4 if endpoint else 1.0,
            zorder=4,
        )
        if endpoint:
            ax.annotate(
                f"P{b.level}", (m + i, b.level), xytext=(0, 11), textcoords="offset points", ha="center",
                fontsize=8, fontweight="bold", zorder=5,
            )


def _draw_axes(ax: Any, arch: ArchSpec, title: str | None) -> None:
    """Levels up the side, build order along the bottom, a line between the stem candidates and the blocks."""
    m = arch.num_stem_candidates
    n = m + len(arch.blocks)
    ax.axvline(m - 0.5, color="#bbbbbb", linestyle="--", linewidth=0.8, zorder=0)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylim(1.4, 7.7)
    ax.set_yticks(range(2, 8))
    ax.set_yticklabels([f"L{lvl}  (1/{2**lvl})" for lvl in range(2, 8)], fontsize=8)
    ax.set_xticks(range(n))
    # One numbering with `spinenas show`'s table, the text diagram and Model Garden's block specs: the offsets a
    # block's inputs name (the stem candidates first), not the blocks' own indices.
    ax.set_xticklabels([str(j) for j in range(n)], fontsize=7)
    ax.set_xlabel("stem candidates | scale-permuted blocks in build order (numbered by the offsets the inputs name)")
    ax.grid(axis="y", color="#eeeeee", zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)


def _draw_legend(ax: Any) -> None:
    """The legend of markers and edges, outside the axes on the right."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="s", linestyle="", markersize=8, markerfacecolor=BLOCK_STYLE["bottleneck"][1],
               markeredgecolor="#555555", label="bottleneck block"),
        Line2D([], [], marker="o", linestyle="", markersize=8, markerfacecolor=BLOCK_STYLE["residual"][1],
               markeredgecolor="#555555", label="residual block"),
        Line2D([], [], marker="s", linestyle="", markersize=8, markerfacecolor=STEM_COLOUR,
               markeredgecolor="#555555", label="stem candidate"),
        Line2D([], [], marker="s", linestyle="", markersize=9, markerfacecolor="white", markeredgecolor="black",
               markeredgewidth=2.4, label="output block (P3..P7)"),
        Line2D([], [], marker="s", linestyle="", markersize=8, markerfacecolor=DEAD_COLOUR,
               markeredgecolor="#aaaaaa", label="dead block (feeds no output)"),
        Line2D([], [], color=PARENT_EDGE, label="parent (resampled)"),
        Line2D([], [], color=MERGED_EDGE, linestyle="--", label="unconsumed block summed into output"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def draw_arch(arch: ArchSpec, path: str | os.PathLike[str], title: str | None = None) -> str:
    """Writes a diagram of `arch` as PNG or SVG (by the file's extension), like the SpineNet paper's figures.

    Blocks go left to right in build order, stem candidates first, each at the height of its level (L2 bottom,
    L7 top). Solid arrows are the two resampled parents of each block; dashed green arrows the unconsumed blocks
    Model Garden sums into an output block of the same level and type. Bottleneck blocks are blue squares,
    residual blocks orange circles; output blocks have a thick border and their endpoint name; dead blocks
    (feeding no endpoint) are grey.

    Args:
      arch: the architecture.
      path: where to write; ``.png`` or ``.svg``.
      title: a title above the drawing (default: the key and the compact spec).

    Returns:
      The path written.

    Raises:
      ValueError: an extension other than .png or .svg.
    """
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"image path must end in .png or .svg, got {path!r}")
    fig = arch_figure(arch, title)
    fig.savefig(path, format=fmt, dpi=150 if fmt == "png" else None, metadata=None if fmt == "png" else {"Date": None})
    logger.info("wrote %s", path)
    return path


def arch_figure(arch: ArchSpec, title: str | None = None) -> Any:
    """The matplotlib Figure `draw_arch` writes (no pyplot state), for a caller that saves it elsewhere (the
    dashboard's trial page)."""
    from matplotlib.figure import Figure

    n = arch.num_stem_candidates + len(arch.blocks)
    fig = Figure(figsize=(max(7.0, 0.55 * n + 1.5) + 3.2, 4.6), layout="constrained")
    draw_arch_on(fig.subplots(), arch, title if title is not None else f"{arch.key}   {arch.summary()}")
    return fig
