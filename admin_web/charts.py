"""Charts for the admin web, as inline SVG: no JavaScript, no fonts or files to fetch.

The admin page runs offline on the gate's own network, so a chart is a string
of SVG that the template embeds as it is. The functions here are pure: counts
in, :class:`markupsafe.Markup` out, ready for ``{{ chart }}`` in Jinja.

Every piece of text that reaches the SVG is escaped, the callers' translated
labels included: a translation is data too. Styling uses SVG presentation
attributes only (no ``style`` attributes or elements), so a Content Security
Policy without ``'unsafe-inline'`` does not strip it; every element carries a
class for the page's stylesheet to override.

Example::

    chart = hourly_bars_svg(entries, exits, labels=HourlyLabels(title=_("Entries and exits")))
    return render_template("today.html", chart=chart)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

log = logging.getLogger(__name__)

# Drawing size in SVG user units (pixels at 100 %); the viewBox scales it to the page.
WIDTH = 720
HEIGHT = 300
_MARGIN_LEFT = 52
_MARGIN_RIGHT = 24
_MARGIN_TOP = 44
_MARGIN_BOTTOM = 44

HOURS_PER_DAY = 24
_HOUR_TICK_EVERY = 3

# Okabe-Ito colours: told apart by colour-blind readers too.
ENTRY_COLOUR = "#0072B2"
EXIT_COLOUR = "#E69F00"
LINE_COLOUR = "#0072B2"
CAPACITY_COLOUR = "#D55E00"
_AXIS_COLOUR = "#555555"
_GRID_COLOUR = "#dddddd"
_TEXT_COLOUR = "#222222"
_FONT = "system-ui, sans-serif"


@dataclass(frozen=True)
class HourlyLabels:
    """Texts of :func:`hourly_bars_svg`, in English by default; the web passes translations."""

    title: str = "Entries and exits by hour"
    entries: str = "Entries"
    exits: str = "Exits"
    hour_axis: str = "Hour of day"


@dataclass(frozen=True)
class OccupancyLabels:
    """Texts of :func:`occupancy_line_svg`, in English by default; the web passes translations."""

    title: str = "People inside over the day"
    people: str = "People inside"
    hour_axis: str = "Hour of day"
    capacity: str = "Capacity"


ENGLISH_HOURLY = HourlyLabels()
ENGLISH_OCCUPANCY = OccupancyLabels()

# --------------------------------------------------------------------------- public


def hourly_bars_svg(
    entries: Sequence[int],
    exits: Sequence[int],
    *,
    labels: HourlyLabels = ENGLISH_HOURLY,
) -> Markup:
    """Entries and exits per hour of the day, as 24 pairs of bars.

    ``entries[h]`` and ``exits[h]`` count events from ``h:00`` to ``h+1:00``
    local time (24 each, non-negative). Each bar has a ``<title>`` (the
    browser's hover tooltip) with its hour and count; the chart has
    ``role="img"`` and an ``aria-label`` for screen readers.
    """
    _check_counts("entries", entries)
    _check_counts("exits", exits)
    top, step = _nice_scale(max([*entries, *exits, 0]))
    plot = _Plot(y_max=top, x_max=HOURS_PER_DAY)
    parts = _open_svg("chart-hourly", labels.title)
    parts += _y_grid(plot, top, step)
    parts += _hour_axis(plot, labels.hour_axis)

    group_w = plot.width / HOURS_PER_DAY
    bar_w = group_w * 0.4
    pad = (group_w - 2 * bar_w) / 2
    for hour in range(HOURS_PER_DAY):
        span = f"{hour:02d}:00–{hour + 1:02d}:00"
        left = plot.x(hour) + pad
        for offset, count, name, colour, css in (
            (0.0, entries[hour], labels.entries, ENTRY_COLOUR, "bar bar-entries"),
            (bar_w, exits[hour], labels.exits, EXIT_COLOUR, "bar bar-exits"),
        ):
            y = plot.y(count)
            parts.append(
                f'<rect class="{css}" x="{_n(left + offset)}" y="{_n(y)}" '
                f'width="{_n(bar_w)}" height="{_n(plot.y(0) - y)}" fill="{colour}">'
                f"<title>{_e(f'{span} · {name}: {count}')}</title></rect>"
            )
    parts += _legend(((labels.entries, ENTRY_COLOUR), (labels.exits, EXIT_COLOUR)))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in parts went through _e()


SPARK_WIDTH = 96
SPARK_HEIGHT = 24


def hourly_spark_svg(counts: Sequence[int], *, title: str) -> Markup:
    """A row-sized chart of one day: ``counts[h]`` events from ``h:00`` to
    ``h+1:00`` as 24 thin bars scaled to the day's busiest hour, for a table
    cell. Each bar's ``<title>`` gives its hour and count; ``title`` is the
    accessible name. An empty day is a flat baseline."""
    _check_counts("counts", counts)
    highest = max(counts, default=0)
    bar_w = SPARK_WIDTH / HOURS_PER_DAY
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" '
        f'viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" width="{SPARK_WIDTH}" '
        f'height="{SPARK_HEIGHT}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<line class="spark-base" x1="0" y1="{SPARK_HEIGHT - 0.5}" x2="{SPARK_WIDTH}" '
        f'y2="{SPARK_HEIGHT - 0.5}" stroke="{_GRID_COLOUR}"/>',
    ]
    for hour, count in enumerate(counts):
        height = (SPARK_HEIGHT - 1) * count / highest if highest else 0.0
        parts.append(
            f'<rect class="spark-bar" x="{_n(hour * bar_w + 0.5)}" '
            f'y="{_n(SPARK_HEIGHT - 1 - height)}" width="{_n(bar_w - 1)}" '
            f'height="{_n(height)}" fill="{ENTRY_COLOUR}">'
            f"<title>{_e(f'{hour:02d}:00–{hour + 1:02d}:00: {count}')}</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in parts went through _e()


def occupancy_line_svg(
    points: Sequence[tuple[float, int]],
    *,
    capacity: int | None = None,
    labels: OccupancyLabels = ENGLISH_OCCUPANCY,
) -> Markup:
    """How many people were inside over the day, as a step line.

    ``points`` are ``(hour, people)``: ``hour`` is local time as a float hour
    of the day (0.0 to 24.0; 8.5 is 08:30), in non-decreasing order;
    ``people`` is the count from that moment until the next point. The line
    ends at the last point (it does not guess the future). ``capacity``, the
    site's limit of people inside, is drawn as a dashed line when given.
    """
    _check_points(points)
    if capacity is not None and (isinstance(capacity, bool) or capacity < 0):
        raise ValueError(f"capacity must be a non-negative int, not {capacity!r}")
    highest = max([people for _, people in points] + [capacity or 0, 0])
    top, step = _nice_scale(highest)
    plot = _Plot(y_max=top, x_max=HOURS_PER_DAY)
    parts = _open_svg("chart-occupancy", labels.title)
    parts += _y_grid(plot, top, step)
    parts += _hour_axis(plot, labels.hour_axis)

    legend = [(labels.people, LINE_COLOUR)]
    if capacity is not None:
        y = plot.y(capacity)
        text = f"{labels.capacity}: {capacity}"
        parts.append(
            f'<line class="capacity" x1="{_n(plot.left)}" y1="{_n(y)}" '
            f'x2="{_n(plot.right)}" y2="{_n(y)}" stroke="{CAPACITY_COLOUR}" '
            f'stroke-width="2" stroke-dasharray="6 4"><title>{_e(text)}</title></line>'
        )
        legend.append((text, CAPACITY_COLOUR))

    if points:
        (x0, y0), *rest = points
        path = [f"M{_n(plot.x(x0))},{_n(plot.y(y0))}"]
        for hour, people in rest:
            path.append(f"H{_n(plot.x(hour))}V{_n(plot.y(people))}")
        parts.append(
            f'<path class="occupancy" d="{"".join(path)}" fill="none" '
            f'stroke="{LINE_COLOUR}" stroke-width="2" stroke-linejoin="round">'
            f"<title>{_e(labels.people)}</title></path>"
        )
        last_hour, last_people = points[-1]
        parts.append(
            f'<circle class="occupancy-last" cx="{_n(plot.x(last_hour))}" '
            f'cy="{_n(plot.y(last_people))}" r="4" fill="{LINE_COLOUR}">'
            f"<title>{_e(f'{_clock(last_hour)} · {labels.people}: {last_people}')}</title>"
            "</circle>"
        )
    parts += _legend(legend)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in parts went through _e()


# --------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class _Plot:
    """The plotting area and its mapping from data (hours, people) to SVG units."""

    y_max: float
    x_max: float
    left: float = _MARGIN_LEFT
    right: float = WIDTH - _MARGIN_RIGHT
    top: float = _MARGIN_TOP
    bottom: float = HEIGHT - _MARGIN_BOTTOM

    @property
    def width(self) -> float:
        return self.right - self.left

    def x(self, hour: float) -> float:
        return self.left + self.width * hour / self.x_max

    def y(self, value: float) -> float:
        return self.bottom - (self.bottom - self.top) * value / self.y_max


def _open_svg(css: str, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{_e(title)}" font-family="{_FONT}" font-size="12">',
        f"<title>{_e(title)}</title>",
        f'<text class="chart-title" x="{_MARGIN_LEFT}" y="20" font-size="14" '
        f'font-weight="bold" fill="{_TEXT_COLOUR}">{_e(title)}</text>',
    ]


def _y_grid(plot: _Plot, top: float, step: float) -> list[str]:
    """Horizontal grid lines with their values, from 0 to ``top`` every ``step``."""
    parts = ['<g class="axis axis-y">']
    ticks = round(top / step)
    for i in range(ticks + 1):
        value = i * step
        y = plot.y(value)
        parts.append(
            f'<line x1="{_n(plot.left)}" y1="{_n(y)}" x2="{_n(plot.right)}" y2="{_n(y)}" '
            f'stroke="{_AXIS_COLOUR if i == 0 else _GRID_COLOUR}" stroke-width="1"/>'
            f'<text x="{_n(plot.left - 6)}" y="{_n(y + 4)}" text-anchor="end" '
            f'fill="{_TEXT_COLOUR}">{_e(_count_text(value))}</text>'
        )
    parts.append("</g>")
    return parts


def _hour_axis(plot: _Plot, label: str) -> list[str]:
    """Hour ticks every 3 h (00:00 to 24:00) and the axis name below them."""
    parts = ['<g class="axis axis-x">']
    for hour in range(0, HOURS_PER_DAY + 1, _HOUR_TICK_EVERY):
        x = plot.x(hour)
        parts.append(
            f'<line x1="{_n(x)}" y1="{_n(plot.bottom)}" x2="{_n(x)}" y2="{_n(plot.bottom + 5)}" '
            f'stroke="{_AXIS_COLOUR}" stroke-width="1"/>'
            f'<text x="{_n(x)}" y="{_n(plot.bottom + 18)}" text-anchor="middle" '
            f'fill="{_TEXT_COLOUR}">{_e(f"{hour:02d}:00")}</text>'
        )
    parts.append(
        f'<text class="axis-label" x="{_n((plot.left + plot.right) / 2)}" '
        f'y="{HEIGHT - 6}" text-anchor="middle" fill="{_TEXT_COLOUR}">{_e(label)}</text>'
    )
    parts.append("</g>")
    return parts


def _legend(items: Sequence[tuple[str, str]]) -> list[str]:
    """Swatches and names, right-aligned above the plot; widths are estimated, not measured."""
    # No font metrics without a browser: about 7 units per character at 12 px.
    total = sum(7 * len(name) + 28 for name, _ in items)
    x = float(WIDTH - _MARGIN_RIGHT - total)
    parts = ['<g class="legend">']
    for name, colour in items:  # In reading order, for screen readers too.
        parts.append(
            f'<rect x="{_n(x)}" y="10" width="12" height="12" fill="{colour}"/>'
            f'<text x="{_n(x + 16)}" y="20" fill="{_TEXT_COLOUR}">{_e(name)}</text>'
        )
        x += 7 * len(name) + 28
    parts.append("</g>")
    return parts


# --------------------------------------------------------------------------- helpers


def _nice_scale(highest: float) -> tuple[float, float]:
    """(top of the y axis, tick step): a 1-2-5 step giving at most 5 intervals above ``highest``."""
    if highest <= 0:
        return 1.0, 1.0
    raw = highest / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1)  # Counts of people: no fractional ticks.
    return math.ceil(highest / step) * step, step


def _check_counts(name: str, counts: Sequence[int]) -> None:
    if len(counts) != HOURS_PER_DAY:
        raise ValueError(f"{name} must have {HOURS_PER_DAY} hourly counts, not {len(counts)}")
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{name} must be non-negative ints, not {count!r}")


def _check_points(points: Sequence[tuple[float, int]]) -> None:
    previous = 0.0
    for hour, people in points:
        if not (math.isfinite(hour) and 0 <= hour <= HOURS_PER_DAY):
            raise ValueError(f"hour must be within 0..{HOURS_PER_DAY}, not {hour!r}")
        if hour < previous:
            raise ValueError("points must be in order of hour")
        if isinstance(people, bool) or not isinstance(people, int) or people < 0:
            raise ValueError(f"people must be a non-negative int, not {people!r}")
        previous = hour


def _clock(hour: float) -> str:
    """A float hour of the day as ``HH:MM`` (8.5 -> ``08:30``)."""
    minutes = round(hour * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _count_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _n(value: float) -> str:
    """A coordinate, to 0.1 unit: finer is invisible and only bloats the page."""
    return f"{value:.1f}"


def _e(text: str) -> str:
    """Escape text for SVG content and attribute values (``& < > " '``)."""
    return str(escape(text))
