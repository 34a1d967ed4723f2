"""What ``GET api/health`` reports: whether each part the functions need answers, as the app's
own identity reaches it, with what to do when one does not.

The first deploy is where what no local test can see gets proven (an ODBC driver on the Flex
image, the database user and its grants, a role assignment, a private endpoint's DNS):
``scripts/azure/postdeploy.sh`` calls this and stops with the failing parts' actions.

Nothing here holds patient data: the database check selects no row, the storage checks read
no blob's content or name, and a failure is described by its type and code, never a message
that might quote a value. The report's shape (IETF's health check draft: ``pass``, ``warn``,
``fail``):

    {"status": "fail",
     "checks": {"settings": {"status": "pass"},
                "secret": {"status": "pass", "detail": "..."},
                "database": {"status": "fail", "detail": "...", "action": "...",
                             "driver": "ODBC Driver 18 for SQL Server"},
                "uploads": ..., "exportShards": ..., "importQueue": ...,
                "model": {..., "modelId": "..."}},
     "odbcDriver": "ODBC Driver 18 for SQL Server", "championModel": "..."}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from shared.platform.settings import SettingsError

if TYPE_CHECKING:
    from los_model.scoring import Predictor
    from los_model.store import ModelStore
    from shared.platform.database import Database
    from shared.platform.queues import ImportQueue
    from shared.platform.secrets import SecretSource
    from shared.platform.settings import Settings
    from shared.platform.storage import UploadsContainer

log = logging.getLogger(__name__)

Status = Literal["pass", "warn", "fail"]

PROVISION = "run `azd provision` (or scripts/deploy.sh): it makes the resource and its role"
DATABASE_STEP = (
    "run the database step as the SQL Microsoft Entra admin: `azd hooks run postprovision` "
    "(it migrates the schema and creates the app's database user with its grants)"
)


class Parts(Protocol):
    """The worker's parts this report checks, each built on first use (a missing setting
    raises :class:`SettingsError` then, and is reported as that check's failure)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def secret(self) -> SecretSource: ...
    @property
    def database(self) -> Database: ...
    @property
    def uploads(self) -> UploadsContainer: ...
    @property
    def import_queue(self) -> ImportQueue: ...
    @property
    def predictor(self) -> Predictor | None: ...
    @property
    def model_store(self) -> ModelStore: ...


@dataclass
class Check:
    status: Status
    detail: str = ""
    action: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"status": self.status}
        if self.detail:
            found["detail"] = self.detail
        if self.action:
            found["action"] = self.action
        return {**found, **self.extra}


def report(services: Parts) -> dict[str, Any]:
    """Every check, run in turn; a check that raises is a failure described by its type."""
    checks: dict[str, Check] = {}
    for name, check in _CHECKS.items():
        try:
            checks[name] = check(services)
        except SettingsError as exc:  # names the setting, never its value
            checks[name] = Check(
                "fail", str(exc), "set it in the Function app's settings (infra/ writes them)"
            )
        except Exception as exc:
            checks[name] = Check("fail", f"unexpected {type(exc).__name__}", _contact())
    worst: Status = "pass"
    for found in checks.values():
        if found.status == "fail" or (found.status == "warn" and worst == "pass"):
            worst = found.status
    failing = [n for n, c in checks.items() if c.status == "fail"]
    log.info("health: %s%s", worst, f" ({', '.join(failing)} failing)" if failing else "")
    return {
        "status": worst,
        "checks": {name: check.as_json() for name, check in checks.items()},
        "odbcDriver": checks["database"].extra.get("driver"),
        "championModel": checks["model"].extra.get("modelId"),
    }


def _contact() -> str:
    return "look up the health line in Application Insights (traces) and docs/operator.md"


def _settings(services: Parts) -> Check:
    services.settings  # noqa: B018  (reads and checks every setting)
    return Check("pass")


def _secret(services: Parts) -> Check:
    from shared.platform.secrets import SecretUnavailable

    settings = services.settings
    try:
        services.secret.get()
    except SecretUnavailable as exc:
        return Check(
            "fail",
            str(exc),
            "the vault did not answer: with network isolation, check the vault's private "
            "endpoint and DNS zone; otherwise try again in a minute",
        )
    if settings.key_vault_url is None:
        return Check("warn", "from the SQL_CONNECTION_STRING app setting, not Key Vault")
    return Check("pass", f"Key Vault secret {settings.sql_connection_secret_name} read")


def _database(services: Parts) -> Check:
    import sqlalchemy as sa

    from shared.platform.database import FOR_A_CALLER, described, is_transient
    from shared.records.schema import patient_data

    database = services.database
    engine = database.engine()
    driver = _driver(engine)
    extra: dict[str, Any] = {"driver": driver}
    if engine.url.get_backend_name() == "mssql":
        installed = _sql_server_drivers()
        extra["driversInstalled"] = installed
        if not installed:
            return Check(
                "fail",
                "no Microsoft ODBC Driver for SQL Server (17 or 18) is installed on this instance",
                "the Functions image lacks msodbcsql: report it with this output, and deploy "
                "the app where the driver is present (see docs/site-administrator.md)",
                extra,
            )

    def probe() -> None:
        # SELECT on the stays table, no row: login, database user, grant and schema at once.
        with engine.connect() as conn:
            conn.execute(sa.select(patient_data.c.eid).where(sa.false())).all()

    try:
        database.run(probe, FOR_A_CALLER)
    except sa.exc.DBAPIError as exc:
        # A refused login, no table or no SELECT on it: the database step makes all three.
        action = (
            "try again in a minute: a paused serverless database resumes on a login"
            if is_transient(exc)
            else DATABASE_STEP
        )
        return Check("fail", f"the database refused the probe: {described(exc)}", action, extra)
    return Check("pass", "PatientData answers to the app's identity", extra=extra)


def _driver(engine: Any) -> str:
    from shared.platform.database import odbc_attributes

    odbc = engine.url.query.get("odbc_connect")
    if isinstance(odbc, str):
        return odbc_attributes(odbc).get("driver", "unnamed ODBC driver")
    return f"{engine.dialect.name}+{engine.dialect.driver}"


def _sql_server_drivers() -> list[str]:
    from shared.platform.database import sql_server_drivers

    try:
        import pyodbc
    except ImportError:
        return []
    return sql_server_drivers(pyodbc.drivers())


def _azure_failure(exc: Exception, what: str) -> Check:
    """A storage call that failed, by its status and error code (never its message)."""
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None)
    detail = f"{what}: {type(exc).__name__}" + "".join(
        f" {part}" for part in (status, code) if part is not None
    )
    if status == 403:
        action = f"the app's identity lacks its role on the {what}: {PROVISION}"
    elif status == 404:
        action = f"the {what} does not exist: {PROVISION}"
    else:
        action = (
            "storage did not answer: with network isolation, check its private endpoints "
            "and DNS zones; otherwise try again in a minute"
        )
    return Check("fail", detail, action)


def _uploads(services: Parts) -> Check:
    from azure.core.exceptions import AzureError

    uploads = services.uploads
    try:
        container = uploads.service.get_container_client(uploads.container)
        next(iter(container.list_blobs(results_per_page=1).by_page()), None)
    except AzureError as exc:
        return _azure_failure(exc, f"uploads container {uploads.container}")
    return Check("pass", f"uploads container {uploads.container} can be read")


def _export_shards(services: Parts) -> Check:
    from azure.core.exceptions import AzureError

    from shared.platform.storage import ExportShards

    shards = ExportShards(services.uploads)
    try:
        # The app's only role on this container is the one that writes the shards: a listing
        # answered proves the assignment (no shard's name or content is read).
        shards.probe()
    except AzureError as exc:
        return _azure_failure(exc, f"export shards container {shards.container}")
    return Check("pass", f"export shards container {shards.container} answers")


def _import_queue(services: Parts) -> Check:
    from azure.core.exceptions import AzureError

    queue = services.import_queue
    try:
        properties = queue.client.get_queue_properties()
    except AzureError as exc:
        return _azure_failure(exc, f"queue {queue.queue}")
    waiting = int(properties.approximate_message_count or 0)
    return Check("pass", f"queue {queue.queue} answers", extra={"approximateMessages": waiting})


def _model(services: Parts) -> Check:
    from azure.core.exceptions import AzureError

    settings = services.settings
    if settings.los_model_url is None:
        return Check("warn", "LOS_MODEL_URL is not set: stays are stored without a prediction")
    try:
        # The models container as retraining reaches it (read and write access).
        services.model_store.read_pointer()
    except AzureError as exc:
        return _azure_failure(exc, "models container")
    predictor = services.predictor
    model, problem = predictor.current() if predictor is not None else (None, None)
    if model is None:
        return Check(
            "warn",
            problem or "no model published yet",
            "stays are stored without a prediction until a champion is published "
            "(docs/data-scientist.md)",
            {"modelId": None},
        )
    return Check("pass", f"scoring with {model.id}", extra={"modelId": model.id})


_CHECKS: dict[str, Callable[[Parts], Check]] = {
    "settings": _settings,
    "secret": _secret,
    "database": _database,
    "uploads": _uploads,
    "exportShards": _export_shards,
    "importQueue": _import_queue,
    "model": _model,
}
