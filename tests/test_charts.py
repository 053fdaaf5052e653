"""Inline SVG charts: well-formed XML, one bar per hour and series, escaped labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from admin_web.charts import (
    HourlyLabels,
    OccupancyLabels,
    hourly_bars_svg,
    hourly_spark_svg,
    occupancy_line_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script> & \"quoted\" 'single'"

ENTRIES = [0, 0, 0, 0, 0, 2, 15, 40, 22, 10, 8, 9, 30, 12, 7, 6, 9, 25, 33, 5, 2, 1, 0, 0]
EXITS = [0, 0, 0, 0, 0, 0, 1, 3, 5, 6, 7, 10, 28, 14, 6, 5, 8, 30, 45, 20, 6, 2, 1, 0]


def parse(svg: Markup) -> ET.Element:
    return ET.fromstring(str(svg))


def bars(root: ET.Element, series: str) -> list[ET.Element]:
    return [
        rect for rect in root.iter(f"{SVG}rect") if f"bar-{series}" in rect.get("class", "").split()
    ]


def title_of(element: ET.Element) -> str:
    title = element.find(f"{SVG}title")
    assert title is not None
    assert title.text is not None
    return title.text


# --------------------------------------------------------------------------- hourly bars


def test_hourly_chart_is_accessible_svg_markup() -> None:
    svg = hourly_bars_svg(ENTRIES, EXITS)
    assert isinstance(svg, Markup)
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Entries and exits by hour"
    assert title_of(root) == "Entries and exits by hour"


def test_hourly_chart_has_one_bar_per_hour_and_series_with_counts_in_titles() -> None:
    root = parse(hourly_bars_svg(ENTRIES, EXITS))
    entries, exits = bars(root, "entries"), bars(root, "exits")
    assert len(entries) + len(exits) == 48
    assert [title_of(bar) for bar in entries][7] == "07:00–08:00 · Entries: 40"
    assert [title_of(bar) for bar in exits][18] == "18:00–19:00 · Exits: 45"
    for series, counts in ((entries, ENTRIES), (exits, EXITS)):
        assert [title_of(bar).rsplit(": ", 1)[1] for bar in series] == [str(c) for c in counts]


def test_hourly_bar_heights_are_proportional_to_counts() -> None:
    root = parse(hourly_bars_svg(ENTRIES, EXITS))
    heights = [float(bar.get("height", "nan")) for bar in bars(root, "exits")]
    assert heights[0] == 0
    assert heights[18] == pytest.approx(heights[9] * 45 / 6, abs=0.5)
    assert heights[18] == max(heights)


def test_hourly_chart_labels_hours_every_three_hours_and_shows_a_legend() -> None:
    root = parse(hourly_bars_svg(ENTRIES, EXITS))
    texts = [text.text for text in root.iter(f"{SVG}text")]
    hour_ticks = [t for t in texts if t and t.endswith(":00")]
    assert hour_ticks == [f"{h:02d}:00" for h in range(0, 25, 3)]
    legend = root.find(f"{SVG}g[@class='legend']")
    assert legend is not None
    assert [text.text for text in legend.iter(f"{SVG}text")] == ["Entries", "Exits"]


def test_hourly_chart_with_no_events_draws_empty_bars() -> None:
    root = parse(hourly_bars_svg([0] * 24, [0] * 24))
    assert len(bars(root, "entries")) == 24
    assert all(float(bar.get("height", "nan")) == 0 for bar in bars(root, "entries"))


def test_hourly_chart_escapes_translated_labels() -> None:
    labels = HourlyLabels(title=HOSTILE, entries="Vào <b>", exits="Ra & đi", hour_axis=HOSTILE)
    svg = hourly_bars_svg(ENTRIES, EXITS, labels=labels)
    assert "<script>" not in svg
    assert "<b>" not in svg
    root = parse(svg)
    assert root.get("aria-label") == HOSTILE
    assert title_of(root) == HOSTILE
    assert title_of(bars(root, "entries")[7]) == "07:00–08:00 · Vào <b>: 40"
    assert title_of(bars(root, "exits")[7]) == "07:00–08:00 · Ra & đi: 3"


@pytest.mark.parametrize(
    ("entries", "exits"),
    [([0] * 23, [0] * 24), ([0] * 24, [0] * 25), ([-1] + [0] * 23, [0] * 24)],
)
def test_hourly_chart_refuses_anything_but_24_counts(entries: list[int], exits: list[int]) -> None:
    with pytest.raises(ValueError, match=r"hourly counts|non-negative"):
        hourly_bars_svg(entries, exits)


# --------------------------------------------------------------------------- occupancy line

POINTS = [(6.0, 0), (7.25, 10), (8.5, 42), (12.0, 30), (17.75, 5)]


def test_occupancy_chart_is_a_step_line_through_the_points() -> None:
    root = parse(occupancy_line_svg(POINTS))
    assert root.get("role") == "img"
    assert root.get("aria-label") == "People inside over the day"
    (path,) = [p for p in root.iter(f"{SVG}path") if p.get("class") == "occupancy"]
    d = path.get("d", "")
    assert d.startswith("M")
    # One horizontal then one vertical move per later point: a step, never a slope.
    assert d.count("H") == d.count("V") == len(POINTS) - 1
    last = root.find(f"{SVG}circle")
    assert last is not None
    assert title_of(last) == "17:45 · People inside: 5"


def test_occupancy_chart_draws_a_dashed_capacity_line_only_when_given() -> None:
    without = parse(occupancy_line_svg(POINTS))
    assert not [line for line in without.iter(f"{SVG}line") if line.get("class") == "capacity"]

    with_capacity = parse(occupancy_line_svg(POINTS, capacity=50))
    (capacity,) = [
        line for line in with_capacity.iter(f"{SVG}line") if line.get("class") == "capacity"
    ]
    assert capacity.get("stroke-dasharray")
    assert capacity.get("y1") == capacity.get("y2")
    assert title_of(capacity) == "Capacity: 50"


def test_occupancy_capacity_above_every_point_stays_on_the_chart() -> None:
    root = parse(occupancy_line_svg(POINTS, capacity=500))
    (capacity,) = [line for line in root.iter(f"{SVG}line") if line.get("class") == "capacity"]
    assert float(capacity.get("y1", "nan")) >= 0


def test_occupancy_chart_without_points_has_axes_and_no_line() -> None:
    root = parse(occupancy_line_svg([]))
    assert list(root.iter(f"{SVG}path")) == []
    assert list(root.iter(f"{SVG}circle")) == []


def test_occupancy_chart_escapes_translated_labels() -> None:
    labels = OccupancyLabels(title=HOSTILE, people="Người <i>", capacity="Sức chứa & giới hạn")
    svg = occupancy_line_svg(POINTS, capacity=50, labels=labels)
    assert "<script>" not in svg
    assert "<i>" not in svg
    root = parse(svg)
    assert root.get("aria-label") == HOSTILE
    (capacity,) = [line for line in root.iter(f"{SVG}line") if line.get("class") == "capacity"]
    assert title_of(capacity) == "Sức chứa & giới hạn: 50"


@pytest.mark.parametrize(
    "points",
    [[(25.0, 1)], [(-0.5, 1)], [(float("nan"), 1)], [(9.0, 1), (8.0, 2)], [(9.0, -1)]],
)
def test_occupancy_chart_refuses_points_off_the_day_or_out_of_order(
    points: list[tuple[float, int]],
) -> None:
    with pytest.raises(ValueError, match=r"hour|people"):
        occupancy_line_svg(points)


def test_occupancy_chart_refuses_a_negative_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        occupancy_line_svg(POINTS, capacity=-1)


def test_a_spark_scales_its_bars_to_the_busiest_hour_and_escapes_its_name() -> None:
    svg = hourly_spark_svg(ENTRIES, title=HOSTILE)
    root = ET.fromstring(str(svg))  # well-formed: the hostile name was escaped
    assert root.get("aria-label") == HOSTILE
    bars = root.findall(f"{SVG}rect")
    assert len(bars) == 24
    heights = [float(bar.get("height", "")) for bar in bars]
    busiest = heights[ENTRIES.index(max(ENTRIES))]
    assert busiest == max(heights) > 0
    for count, height in zip(ENTRIES, heights, strict=True):
        assert height == pytest.approx(busiest * count / max(ENTRIES), abs=0.051)  # to 0.1 unit
    assert [bar.findtext(f"{SVG}title") for bar in bars][7] == "07:00–08:00: 40"


def test_an_empty_day_is_a_flat_spark_and_a_wrong_day_is_refused() -> None:
    root = ET.fromstring(str(hourly_spark_svg([0] * 24, title="x")))
    assert {bar.get("height") for bar in root.findall(f"{SVG}rect")} == {"0.0"}
    with pytest.raises(ValueError, match=r"hourly counts|non-negative"):
        hourly_spark_svg([0] * 23, title="x")
