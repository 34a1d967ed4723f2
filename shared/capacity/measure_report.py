"""The capacity view as FHIR R4 MeasureReports, one per facility, in a collection Bundle.

Beds and their occupancy follow HL7's bed-capacity reporting conventions (the SANER
implementation guide, carried on as US SAFR): a summary MeasureReport whose group ``Beds``
(``MeasureGroupSystem``) holds the populations ``numbeds`` (the staffed beds) and
``numBedsOcc`` (the beds occupied: the census), with the occupancy as the group's score.
SANER has no codes for a forecast, so here we depart from it: the expected discharges,
arrivals and census are groups of our own code system (``FORECAST_SYSTEM``), stratified by
date; each stratum's score is the expected count and its populations ``low`` and ``high``
the 80% interval. The facility is the report's subject (an Organization, by its ``facid``
identifier). Aggregates only: no patient is named or counted apart.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from shared.capacity.report import Capacity, FacilityCapacity

SANER_GROUPS = "http://hl7.org/fhir/us/saner/CodeSystem/MeasureGroupSystem"
SANER_POPULATIONS = "http://hl7.org/fhir/us/saner/CodeSystem/MeasurePopulationSystem"
FORECAST_SYSTEM = "urn:patient-ingest:CodeSystem:capacity-forecast"
MEASURE = "urn:patient-ingest:Measure:bed-capacity-forecast"
FACILITY_SYSTEM = "urn:patient-ingest:PatientData:facid"


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _report(view: Capacity, facility: FacilityCapacity) -> dict[str, Any]:
    from fhir.resources.R4B.measurereport import MeasureReport

    as_of = view.as_of if view.as_of.tzinfo else view.as_of.replace(tzinfo=dt.UTC)
    beds: dict[str, Any] = {
        "code": _concept(SANER_GROUPS, "Beds"),
        "population": [
            {"code": _concept(SANER_POPULATIONS, "numbeds"), "count": facility.facility.beds},
            {"code": _concept(SANER_POPULATIONS, "numBedsOcc"), "count": facility.census},
        ],
    }
    if facility.occupancy is not None:
        beds["measureScore"] = {"value": Decimal(str(round(facility.occupancy, 4)))}
    groups = [beds]
    groups.append(
        {
            "code": _concept(FORECAST_SYSTEM, "unscoredStays"),
            "population": [
                {"code": _concept(FORECAST_SYSTEM, "unscoredStays"), "count": facility.unscored}
            ],
        }
    )
    for name in ("discharges", "arrivals", "census"):
        if facility.days is None:
            break
        strata = []
        for day in facility.days:
            part = getattr(day, name)
            strata.append(
                {
                    "value": {"text": day.day.isoformat()},
                    "measureScore": {"value": Decimal(str(round(part.expected, 3)))},
                    "population": [
                        {"code": _concept(FORECAST_SYSTEM, "low"), "count": part.low},
                        {"code": _concept(FORECAST_SYSTEM, "high"), "count": part.high},
                    ],
                }
            )
        groups.append(
            {
                "code": _concept(FORECAST_SYSTEM, f"expected-{name}"),
                "stratifier": [{"code": [{"text": "date"}], "stratum": strata}],
            }
        )
    report = MeasureReport.model_validate(
        {
            "resourceType": "MeasureReport",
            "id": f"capacity-{facility.facility.id}",
            "status": "complete",
            "type": "summary",
            "measure": MEASURE,
            "subject": {
                "identifier": {"system": FACILITY_SYSTEM, "value": facility.facility.id},
                "display": facility.facility.name,
                "type": "Organization",
            },
            "date": as_of.isoformat(),
            "period": {
                "start": as_of.isoformat(),
                "end": (as_of + dt.timedelta(days=view.days_ahead)).isoformat(),
            },
            "group": groups,
        }
    )
    found: dict[str, Any] = report.model_dump(mode="json", by_alias=True, exclude_none=True)
    return found


def bundle(view: Capacity) -> dict[str, Any]:
    """A collection Bundle of one MeasureReport per facility of ``view``."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": _full_url(view, f), "resource": _report(view, f)} for f in view.facilities
        ],
    }


def _full_url(view: Capacity, facility: FacilityCapacity) -> str:
    """The same report (facility and instant) always has the same id."""
    name = f"{MEASURE}/{facility.facility.id}/{view.as_of.isoformat()}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"
