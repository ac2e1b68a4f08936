"""Server-side SVG bar charts: no JavaScript, readable on a phone, accessible titles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup


def bars(
    points: Sequence[tuple[datetime, int]],
    *,
    label: str,
    tick: str = "%H:%M",
    width: int = 600,
    height: int = 140,
) -> Markup:
    """A bar chart of (bucket start, count); each bar has a <title> with its exact value."""
    n = max(1, len(points))
    top = max([c for _, c in points] + [1])
    pad_l, pad_b, pad_t = 36, 18, 8
    plot_w, plot_h = width - pad_l - 4, height - pad_b - pad_t
    step = plot_w / n
    bar_w = max(1.0, step * 0.8)
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">',
        f'<text x="2" y="{pad_t + 8}" class="axis">{top}</text>',
        f'<text x="2" y="{pad_t + plot_h}" class="axis">0</text>',
        f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 4}" y2="{pad_t + plot_h}" '
        'class="base"/>',
    ]
    every = max(1, n // 6)
    for i, (at, count) in enumerate(points):
        h = plot_h * count / top
        x = pad_l + i * step + (step - bar_w) / 2
        y = pad_t + plot_h - h
        when = at.strftime("%Y-%m-%d %H:%M UTC")
        out.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
            f"<title>{escape(when)}: {count}</title></rect>"
        )
        if i % every == 0:
            text = escape(at.strftime(tick))
            out.append(f'<text x="{x:.1f}" y="{height - 4}" class="axis">{text}</text>')
    out.append("</svg>")
    return Markup("".join(out))  # every interpolated text above is escaped
