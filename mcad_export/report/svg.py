"""Small, dependency-free SVG charts for the self-contained report (no plotting library, no network).

Every chart is an `<svg class="plot" data-plot=NAME>` so a browser test can find and measure it.
"""

from __future__ import annotations

import html
import math

PALETTE = ("#1f6feb", "#e36209", "#2da44e", "#8250df", "#cf222e", "#6e7781", "#bf8700")
W, H = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 36, 48


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _frame(name: str, title: str, body: list[str], xlabel: str, ylabel: str, legend: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<rect x="{LEFT + 8 + 150 * i}" y="{TOP - 26}" width="10" height="10" fill="{c}"/>'
        f'<text x="{LEFT + 22 + 150 * i}" y="{TOP - 17}" font-size="11">{_esc(n)}</text>'
        for i, (n, c) in enumerate(legend)
    )
    return (
        f'<svg class="plot" data-plot="{_esc(name)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" '
        f'width="{W}" height="{H}" role="img" aria-label="{_esc(title)}" font-family="sans-serif">'
        f"<title>{_esc(title)}</title>{items}"
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#57606a"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#57606a"/>'
        + "".join(body)
        + f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 10}" font-size="12" text-anchor="middle">{_esc(xlabel)}</text>'
        f'<text x="14" y="{(TOP + H - BOTTOM) / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {(TOP + H - BOTTOM) / 2})">{_esc(ylabel)}</text></svg>'
    )


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    step *= next(m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 2) if start + i * step <= hi + 1e-12]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0e}".replace("e+0", "e")


def histogram(
    name: str,
    title: str,
    series: dict[str, list[float]],
    xlabel: str,
    bins: int = 40,
    marker: tuple[str, float] | None = None,
) -> str:
    """Overlaid histograms (share of samples per bin), clipped at the 99.5th percentile of all series."""
    values = sorted(v for s in series.values() for v in s)
    lo, hi = values[0], values[min(len(values) - 1, int(len(values) * 0.995))]
    # A marker far beyond the data (an 8 ms budget over ~1 ms queries) would squeeze every sample into a
    # bin or two: keep the axis on the data and name the marker at the right edge instead.
    off_scale = bool(marker) and marker[1] > 2 * hi
    if marker and not off_scale:
        hi = max(hi, marker[1] * 1.05)
    hi = hi if hi > lo else lo + 1
    width = (hi - lo) / bins
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    shares = {}
    for label, samples in series.items():
        counts = [0] * bins
        for v in samples:
            counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
        shares[label] = [c / max(1, len(samples)) for c in counts]
    top = max(max(s) for s in shares.values()) or 1
    body = []
    for i, (_label, share) in enumerate(shares.items()):
        color = PALETTE[i % len(PALETTE)]
        for b, s in enumerate(share):
            if s:
                h = s / top * plot_h
                body.append(
                    f'<rect x="{LEFT + b * plot_w / bins:.1f}" y="{H - BOTTOM - h:.1f}" '
                    f'width="{plot_w / bins - 1:.1f}" height="{h:.1f}" fill="{color}" fill-opacity="0.7"/>'
                )
    for t in _ticks(lo, hi):
        x = LEFT + (t - lo) / (hi - lo) * plot_w
        if LEFT <= x <= W - RIGHT:
            body.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" font-size="11" text-anchor="middle">{_fmt(t)}</text>')
    if off_scale:
        body.append(
            f'<text x="{W - RIGHT:.1f}" y="{TOP + 12}" font-size="11" fill="#cf222e" text-anchor="end">'
            f"{_esc(marker[0])} (off scale, to the right) &#8594;</text>"
        )
    elif marker:
        x = LEFT + (marker[1] - lo) / (hi - lo) * plot_w
        body.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{H - BOTTOM}" stroke="#cf222e" '
            f'stroke-dasharray="5,3"/><text x="{x - 4:.1f}" y="{TOP + 12}" font-size="11" fill="#cf222e" '
            f'text-anchor="end">{_esc(marker[0])}</text>'
        )
    legend = [(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(series)]
    return _frame(name, title, body, xlabel, "share of queries", legend)


def line_chart(
    name: str, title: str, series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, log: bool = True
) -> str:
    """Lines with points; log-log axes by default (gallery sizes span three decades)."""
    f = (lambda v: math.log10(max(v, 1e-9))) if log else (lambda v: v)
    xs = [f(x) for s in series.values() for x, _ in s]
    ys = [f(y) for s in series.values() for _, y in s]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = (math.floor(min(ys)), math.ceil(max(ys))) if log else (0, max(ys) * 1.1)
    y1 = y1 if y1 > y0 else y0 + 1
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x, y):
        return LEFT + (f(x) - x0) / (x1 - x0) * plot_w, H - BOTTOM - (f(y) - y0) / (y1 - y0) * plot_h

    body = []
    yticks = [10**e for e in range(int(y0), int(y1) + 1)] if log else _ticks(y0, y1)
    for t in yticks:
        _, y = px(1, t) if log else px(0, t)
        body.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#d0d7de"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{_fmt(t)}</text>'
        )
    for x in sorted({x for s in series.values() for x, _ in s}):
        cx, _ = px(x, 10**y0 if log else y0)
        body.append(f'<text x="{cx:.1f}" y="{H - BOTTOM + 16}" font-size="11" text-anchor="middle">{x:,.0f}</text>')
    for i, (_label, points) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        coords = [px(x, y) for x, y in sorted(points)]
        body.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
            + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            + '"/>'
        )
        body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>' for x, y in coords]
    legend = [(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(series)]
    return _frame(name, title, body, xlabel, ylabel, legend)


def stacked_bar(name: str, title: str, parts: dict[str, float], unit: str, budget: float | None = None) -> str:
    """One horizontal bar split into parts (e.g. MB per query-path component), with the budget line."""
    total = sum(max(0.0, v) for v in parts.values())
    scale_max = max(total, budget or 0) * 1.1 or 1
    plot_w = W - LEFT - RIGHT
    body, x = [], float(LEFT)
    y, h = TOP + 60, 70
    for i, (label, v) in enumerate(parts.items()):
        w = max(0.0, v) / scale_max * plot_w
        color = PALETTE[i % len(PALETTE)]
        body.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{h}" fill="{color}">'
            f"<title>{_esc(label)}: {v:.1f} {unit}</title></rect>"
        )
        if w > 38:
            body.append(
                f'<text x="{x + w / 2:.1f}" y="{y + h / 2 + 4}" font-size="11" fill="#fff" '
                f'text-anchor="middle">{v:.0f}</text>'
            )
        x += w
    for t in _ticks(0, scale_max):
        tx = LEFT + t / scale_max * plot_w
        body.append(f'<text x="{tx:.1f}" y="{H - BOTTOM + 16}" font-size="11" text-anchor="middle">{_fmt(t)}</text>')
    if budget:
        bx = LEFT + budget / scale_max * plot_w
        body.append(
            f'<line x1="{bx:.1f}" y1="{TOP + 30}" x2="{bx:.1f}" y2="{H - BOTTOM}" stroke="#cf222e" '
            f'stroke-width="2" stroke-dasharray="6,3"/><text x="{bx:.1f}" y="{TOP + 24}" font-size="11" '
            f'fill="#cf222e" text-anchor="middle">budget {budget:g} {unit}</text>'
        )
    legend = [(f"{n} ({v:.1f})", PALETTE[i % len(PALETTE)]) for i, (n, v) in enumerate(parts.items())]
    body.append(
        "".join(
            f'<rect x="{LEFT + 8 + 190 * (i % 3)}" y="{y + h + 18 + 16 * (i // 3)}" width="10" '
            f'height="10" fill="{c}"/><text x="{LEFT + 22 + 190 * (i % 3)}" '
            f'y="{y + h + 27 + 16 * (i // 3)}" font-size="11">{_esc(n)}</text>'
            for i, (n, c) in enumerate(legend)
        )
    )
    return _frame(name, title, body, unit, "", [])
