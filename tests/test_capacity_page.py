"""The capacity page in a real browser: Debian's headless Chromium, driven by Playwright (no
browser download), loading the page from the local host (devtools/local_host.py) over seeded
stays, as the CMIO and as the care line manager. The charts' tables must give the API's
numbers; the CMIO sees no name; the care line manager sees the list; no request leaves the
host. Screenshots are saved with the test's files (CAPACITY_SCREENSHOTS=DIR saves them
there too: docs/ holds the ones the README shows)."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devtools import azurite, local_host
from los_model.store import DirectoryStore, pointer_to
from tests.test_capacity import put_facilities, put_stays

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Any:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: scripts/bootstrap.sh installs Debian's chromium")
        pytest.skip("Chromium is not installed (scripts/bootstrap.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def seeded(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    """Three facilities with a fortnight of admissions, most scored, some still in; and a
    champion whose card publishes its errors."""
    import sqlalchemy as sa

    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        for table in ("AuditLog", "PatientData", "Facilities"):
            conn.exec_driver_sql(f'DELETE FROM "{table}"')
    put_facilities(engine, ("A", "General Medicine 3 West", 40), ("B", "Pulmonary 2 West", 30))
    rng = random.Random(3)
    today = dt.date.today()
    stays = []
    first = ["Ann", "Bo", "Cy", "Dee", "Eve", "Flo"]
    for eid in range(1, 181):
        facility = "A" if eid % 3 else "B"
        admitted = today - dt.timedelta(days=rng.randint(0, 20))
        los = rng.randint(1, 9)
        left = admitted + dt.timedelta(days=los)
        stays.append(
            {
                "eid": eid,
                "admitted": admitted,
                "facility": facility,
                "discharged": left if left <= today else None,
                "los": los if left <= today else None,
                "predicted": None if eid % 17 == 0 else max(1, los + rng.randint(-1, 1)),
                "first": first[eid % len(first)],
                "last": "Smith",
            }
        )
    put_stays(engine, *stays)
    engine.dispose()
    pointer = tmp_path / "models" / "champion.json"
    pointer.parent.mkdir()
    store = DirectoryStore(pointer)
    card = {"id": "los-page", "residualShares": {"-1": 0.2, "0": 0.6, "1": 0.2}}
    store.write_new("versions/los-page/model-card.json", json.dumps(card).encode())
    store.move_pointer(pointer_to("los-page", None, "2026-11-01T03:00:00+00:00", "test"), None)
    return {
        "SQL_CONNECTION_STRING": sqlite_url,
        "EPHI_OWNER": "owner@example.org",
        "PATIENT_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
        "LOS_MODEL_URL": str(pointer),
    }


def api(url: str, path: str) -> Any:
    with urllib.request.urlopen(f"{url}{path}", timeout=30) as answer:  # noqa: S310 - localhost
        return json.loads(answer.read())


def opened(browser: Any, url: str, tmp_path: Path, name: str) -> tuple[Any, list[str], list[str]]:
    """The page at ``url`` in a fresh context; every URL it requested; its console errors."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    # What went wrong in the page: a refused policy, a failed load (but the browser's own ask
    # for /favicon.ico, which the app has none of).
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None,
    )
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    response = page.goto(url)
    assert response is not None and response.status == 200
    for folder in filter(None, (tmp_path, os.environ.get("CAPACITY_SCREENSHOTS"))):
        page.screenshot(path=str(Path(folder) / f"capacity-{name}.png"), full_page=True)
    return page, requested, errors


def table(page: Any, selector: str) -> list[list[str]]:
    rows = page.locator(f"{selector} tbody tr")
    return [
        [cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]


def test_the_cmio_sees_every_facility_with_the_apis_numbers_and_no_name(browser, seeded, tmp_path):
    port = azurite.free_port()
    with local_host.running(seeded, port=port, role="CMIO", queues=False, timer=False) as url:
        found = api(url, "/api/capacity")
        page, requested, errors = opened(browser, f"{url}/api/capacity/view", tmp_path, "cmio")
        for facility in found["facilities"]:
            panel = page.locator(f'section[aria-labelledby="f-{facility["facility"]}"]')
            census = panel.locator('[data-kind="census"]').inner_text()
            assert int(census) == facility["census"]
            rows = table(
                page, f'table[data-table="forecast"][data-facility="{facility["facility"]}"]'
            )
            assert len(rows) == len(facility["forecast"]) == 14
            for row, day in zip(rows, facility["forecast"], strict=True):
                assert row[0] == day["date"]
                assert float(row[1]) == round(day["discharges"]["expected"], 1)
                assert float(row[4]) == round(day["census"]["expected"], 1)
                assert row[5] == f"{day['census']['low']}–{day['census']['high']}"
            assert panel.locator("svg polyline").count() == 1  # the census
            assert panel.locator("svg rect").count() == 14  # the discharges, a bar a day
        text = page.content()
        assert "Smith" not in text and 'data-table="patients"' not in text
        assert all(u.startswith(url) for u in requested), requested
        assert errors == []


def test_the_care_line_manager_sees_the_ward_sorted_by_predicted_discharge(
    browser, seeded, tmp_path
):
    port = azurite.free_port()
    with local_host.running(
        seeded, port=port, role="CareLineManager", queues=False, timer=False
    ) as url:
        listed = api(url, "/api/capacity/patients?facility=A")["patients"]
        page, requested, errors = opened(
            browser, f"{url}/api/capacity/view?facility=A", tmp_path, "care-line-manager"
        )
        rows = table(page, 'table[data-table="patients"][data-facility="A"]')
        assert [int(r[1]) for r in rows] == [p["eid"] for p in listed] and rows
        assert rows[0][0].endswith("Smith")
        assert all(u.startswith(url) for u in requested), requested
        assert errors == []
        # The same page printed: the form is not on paper.
        page.emulate_media(media="print")
        assert not page.locator("form").is_visible()
