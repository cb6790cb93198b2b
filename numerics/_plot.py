"""Bound-vs-Monte-Carlo figures (matplotlib; every plot function takes an ``ax``) and
:func:`save`, the one helper that writes a figure (numerics' and experiments' figures)."""

from __future__ import annotations

from collections import defaultdict

STYLE = {"exact": "-", "numerical": "--", "limit": ":"}
DPI = 120  # PNG resolution of every figure the toolkit writes (the PDF is vector)


def save(fig, path_stem: str) -> list[str]:
    """Write ``fig`` as ``path_stem.png`` (:data:`DPI`) and ``path_stem.pdf``, cropped to
    what is drawn; returns the two paths."""
    paths = [f"{path_stem}.png", f"{path_stem}.pdf"]
    # the tight box measured once (``bbox_inches="tight"`` draws the figure an extra time per
    # file: four layouts of every tick label instead of two)
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.1)  # inches, as "tight"
    for p in paths:
        fig.savefig(p, dpi=DPI, bbox_inches=box)
    return paths


def plot_grid(ax, rows, *, x="width", group="depth"):
    """B̄_S against ``x`` (width, or depth for a budget grid), one colour per ``group``.

    Theory as lines (solid: exact, dashed: numerical, dotted: limit), Monte Carlo ratio of
    means as points with ±2 SE error bars. Log axes.
    """
    groups = defaultdict(list)
    for r in rows:
        groups[r[group] if group else "all"].append(r)
    def order(kv):  # numeric groups in numeric order, others after, by name
        return (0, kv[0], "") if isinstance(kv[0], (int, float)) else (1, 0, str(kv[0]))

    for g, rs in sorted(groups.items(), key=order):
        rs = sorted(rs, key=lambda r: r[x])
        xs = [r[x] for r in rs]
        label = f"{group}={g}" if group else "Monte Carlo"
        err = ax.errorbar(xs, [r["mc_batch_size_bound"] for r in rs],
                          yerr=[2 * r["mc_batch_size_bound_se"] for r in rs], fmt="o",
                          capsize=3, label=f"MC {label}")
        th = [r for r in rs if r.get("theory_batch_size_bound") not in (None, "")]
        if th:
            kind = th[0].get("theory_kind") or "exact"
            ax.plot([r[x] for r in th], [r["theory_batch_size_bound"] for r in th],
                    STYLE.get(kind, "-"), color=err[0].get_color(),
                    label=f"theory ({kind}) {label}")
    from matplotlib.ticker import LogFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers, not 4x10^0, on the log axes
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.set_xlabel("hidden width K" if x == "width" else "depth L (weight matrices)")
    ax.set_ylabel(r"$\bar B_S = n\,E[S_1]/E[S_2]$")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def save_figure(rows, path_stem, *, x="width", group="depth", title=""):
    """Write ``path_stem.png`` and ``path_stem.pdf`` (Agg backend); returns the two paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    try:
        plot_grid(ax, rows, x=x, group=group)
        if title:
            ax.set_title(title, fontsize="small")
        fig.tight_layout()
        return save(fig, path_stem)
    finally:
        plt.close(fig)
