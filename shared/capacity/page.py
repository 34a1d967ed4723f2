"""The capacity view as a page the app serves itself: one panel per facility with its beds,
census and occupancy now, a chart of the expected census with its band and the bed line, and
the same numbers in a table beside every chart; the care line manager's panel lists the
patients. Server-rendered with Jinja2 (autoescaped) into inline SVG: no script, no font, no
request to anywhere. The stylesheet is inline and allowed by its hash, so the policy stays
``default-src 'self'`` with nothing ``unsafe``; it prints on paper without the form.
"""

from __future__ import annotations

import base64
import hashlib
from importlib import resources
from typing import Any

from shared.capacity.forecast import HIGH, LOW
from shared.capacity.reading import Facility
from shared.capacity.report import Capacity, FacilityCapacity, Patient

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 625, 12, 195
# The discharges chart: bars of the expected count, a whisker for the interval.
BAR_HEIGHT, BAR_TOP, BAR_BOTTOM = 150, 10, 130


def content_security_policy(css: str) -> str:
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return (
        "default-src 'self'; "
        f"style-src 'sha256-{digest}'; "
        "script-src 'none'; img-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def _chart(panel: FacilityCapacity) -> dict[str, Any] | None:
    if not panel.days:
        return None
    days = panel.days
    highest = max([panel.facility.beds, panel.census, *(d.census.high for d in days)]) or 1
    top = highest * 1.1  # room above the highest line

    def x(i: int) -> float:
        return LEFT + (RIGHT - LEFT) * i / max(len(days) - 1, 1)

    def y(value: float) -> float:
        return BOTTOM - (BOTTOM - TOP) * value / top

    upper = [f"{x(i):.1f},{y(d.census.high):.1f}" for i, d in enumerate(days)]
    lower = [f"{x(i):.1f},{y(d.census.low):.1f}" for i, d in reversed(list(enumerate(days)))]
    step = max(1, len(days) // 7)
    most = max([1, *(d.discharges.high for d in days)])
    slot = (RIGHT - LEFT) / len(days)

    def bar_y(value: float) -> float:
        return BAR_BOTTOM - (BAR_BOTTOM - BAR_TOP) * value / most

    bars = [
        {
            "x": round(LEFT + slot * i + slot * 0.15, 1),
            "width": round(slot * 0.7, 1),
            "y": round(bar_y(d.discharges.expected), 1),
            "height": round(BAR_BOTTOM - bar_y(d.discharges.expected), 1),
            "low": round(bar_y(d.discharges.low), 1),
            "high": round(bar_y(d.discharges.high), 1),
            "middle": round(LEFT + slot * (i + 0.5), 1),
        }
        for i, d in enumerate(days)
    ]
    return {
        "bars": bars,
        "bar_height": BAR_HEIGHT,
        "bar_bottom": BAR_BOTTOM,
        "bar_most": most,
        "bar_top": BAR_TOP,
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": RIGHT,
        "bottom": BOTTOM,
        "band": " ".join(upper + lower),
        "line": " ".join(f"{x(i):.1f},{y(d.census.expected):.1f}" for i, d in enumerate(days)),
        "beds_y": round(y(panel.facility.beds), 1),
        "ticks": [
            {"x": round(x(i), 1), "label": d.day.strftime("%d %b")}
            for i, d in enumerate(days)
            if i % step == 0
        ],
        "y_ticks": [
            {"y": round(y(v), 1), "label": str(round(v))} for v in (0, highest / 2, highest)
        ],
    }


def _days(panel: FacilityCapacity) -> list[dict[str, Any]]:
    return [
        {
            "date": d.day.isoformat(),
            "discharges": f"{d.discharges.expected:.1f}",
            "discharges_low": d.discharges.low,
            "discharges_high": d.discharges.high,
            "arrivals": f"{d.arrivals.expected:.1f}",
            "census": f"{d.census.expected:.1f}",
            "census_low": d.census.low,
            "census_high": d.census.high,
        }
        for d in panel.days or []
    ]


class Renderer:
    """The page's template and stylesheet, loaded and compiled once per worker (the
    composition root builds it on the first page asked for)."""

    def __init__(self) -> None:
        from jinja2 import Environment, PackageLoader, select_autoescape

        environment = Environment(
            loader=PackageLoader("shared.capacity", "templates"),
            autoescape=select_autoescape(["html", "j2"]),
        )
        self._template = environment.get_template("capacity.html.j2")
        self._css = (
            resources.files("shared.capacity").joinpath("templates/capacity.css").read_text()
        )
        self.content_security_policy = content_security_policy(self._css)

    def render(
        self,
        view: Capacity,
        *,
        viewer: str,
        choices: list[Facility],
        facility: str | None,
        patients: dict[str, list[Patient]] | None,
        long_stay_days: int,
    ) -> str:
        """The page for ``view``; ``patients`` by facility for the care line manager
        (None: the CMIO's page, aggregates only)."""
        from markupsafe import Markup

        panels = []
        for panel in view.facilities:
            occupancy = panel.occupancy
            panels.append(
                {
                    "id": panel.facility.id,
                    "name": panel.facility.name,
                    "beds": panel.facility.beds,
                    "census": panel.census,
                    "occupancy": "—" if occupancy is None else f"{occupancy:.0%}",
                    "unscored": panel.unscored,
                    "chart": _chart(panel),
                    "days": _days(panel),
                    "patients": None if patients is None else patients.get(panel.facility.id, []),
                }
            )
        return self._template.render(
            css=Markup(self._css),  # noqa: S704 - the app's own stylesheet, allowed by its hash
            as_of=view.as_of.isoformat(timespec="minutes"),
            as_of_date=view.as_of.date().isoformat(),
            model=view.model,
            note=view.note,
            interval=f"{round((HIGH - LOW) * 100)}%",
            viewer=viewer,
            choices=choices,
            facility=facility,
            days=view.days_ahead,
            panels=panels,
            long_stay_days=long_stay_days,
        )
