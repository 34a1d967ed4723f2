"""The documented local path works as written: the sample settings run the app against
Azurite, an export is read by the names its manifest gives, and the tools refuse what they
cannot use with a message, never a traceback or a silent success."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from typing import Any

import pytest
import sqlalchemy as sa

from devtools import azurite, events, fhir_export, los_generator, queue_host
from ops import import_queue as queue_command
from ops import sql_script
from shared.bulk.blob_events import RetryLater
from shared.composition import Services
from shared.platform.queues import POISON_QUEUE
from shared.records.schema import ingest_runs, patient_data
from tests.conftest import GRANT_SCRIPT, PROJECT_ROOT, deliver, migrate

SAMPLE = PROJECT_ROOT / "local.settings.sample.json"
DEVELOPMENT = "UseDevelopmentStorage=true"


# --- the sample settings, exactly as func start reads them ------------------------------------


def test_the_sample_settings_import_a_file_end_to_end(tmp_path, monkeypatch):
    """local.settings.sample.json's values, unchanged, as the Functions host gives them to the
    worker: Azurite on its default ports through UseDevelopmentStorage=true, SQLite at the
    sample's relative path; a CSV uploaded and announced as the docs show, then imported by
    bulk_import as the host's queue trigger runs it."""
    import function_app

    values: dict[str, str] = json.loads(SAMPLE.read_text())["Values"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".local").mkdir()
    migrate(values["SQL_CONNECTION_STRING"])
    for name in [n for n in values if n.startswith(("PATIENT_", "SQL_"))]:
        monkeypatch.delenv(name, raising=False)
    stays = tmp_path / "stays.csv"
    stays.write_bytes(los_generator.csv_bytes(150, seed=40))
    with azurite.running(port=10000, queue_port=10001, location=tmp_path / "azurite"):
        queue_host.create_queues(values["PATIENT_STORAGE_CONNECTION"])
        queue_command.main(["send", "--upload", str(stays)], env=values)
        services = Services(values)
        try:
            app = function_app.build_app(services)
            [bulk] = [f for f in app.get_functions() if f.get_function_name() == "bulk_import"]
            host = queue_host.QueueHost(
                values["PATIENT_STORAGE_CONNECTION"], bulk.get_user_function()
            )
            host.drain()
        finally:
            services.close()
    engine = sa.create_engine(values["SQL_CONNECTION_STRING"])
    with engine.connect() as conn:
        (status,) = conn.execute(sa.select(ingest_runs.c.status)).one()
        count = conn.execute(sa.select(sa.func.count()).select_from(patient_data)).scalar()
    engine.dispose()
    assert (status, count) == ("succeeded", 150)


@pytest.mark.parametrize(
    "connection",
    [DEVELOPMENT, f"{DEVELOPMENT};DevelopmentStorageProxyUri=http://127.0.0.1"],
)
def test_the_development_storage_shorthand_is_accepted_as_the_sdks_accept_it(connection):
    services = Services(
        {"PATIENT_STORAGE_CONNECTION": connection, "EPHI_OWNER": "owner@example.org"}
    )
    assert services.uploads.service.url == "http://127.0.0.1:10000/devstoreaccount1/"
    assert services.uploads.service.credential.account_name == azurite.ACCOUNT
    assert services.import_queue.client.url.startswith("http://127.0.0.1:10001/devstoreaccount1")


# --- exports: the manifest's names, exactly -----------------------------------------------------


def export_files(patients: int, seed: int) -> tuple[dict[str, bytes], dict[str, Any]]:
    files: dict[str, bytes] = {}
    manifest = fhir_export.write(
        fhir_export.generated(patients, seed=seed), lambda n, d: files.__setitem__(n, d)
    )
    files.pop("manifest.json")
    return files, manifest


def announce(uploads: Any, folder: str, manifest: dict[str, Any]) -> None:
    url, etag = uploads.put(json.dumps(manifest).encode(), f"{folder}manifest.json")
    deliver(events.event_grid_schema(url, etag))


def stays(db: sa.Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(patient_data)).scalar())


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_a_file_beside_the_named_one_under_another_suffix_is_ignored_and_said(
    app_env, uploads, db, caplog
):
    files, manifest = export_files(12, seed=41)
    stale, _ = export_files(1, seed=42)
    folder = "exports/stale/"
    for name, data in files.items():  # the export the manifest names: plain files
        uploads.put(data, folder + name)
    for name, data in stale.items():  # an earlier run's files, gzipped, in the same folder
        uploads.put(gzip.compress(data), folder + name + ".gz")
    caplog.set_level(logging.WARNING)
    announce(uploads, folder, manifest)
    expected = sum(1 for line in files["Encounter.000.ndjson"].splitlines() if b'"IMP"' in line)
    assert stays(db) == expected > 1
    said = [
        r.getMessage() for r in caplog.records if "is not named by the manifest" in r.getMessage()
    ]
    assert any("Patient.000.ndjson.gz beside Patient.000.ndjson" in m for m in said)


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_a_named_file_that_is_missing_waits_even_if_another_suffix_is_there(
    app_env, uploads, db, caplog
):
    files, manifest = export_files(3, seed=43)
    folder = "exports/other-suffix/"
    for name, data in files.items():
        uploads.put(gzip.compress(data), folder + name + ".gz")
    caplog.set_level(logging.WARNING)
    waiting = r"\.000\.ndjson \(named by the manifest.s output\) is not in the uploads"
    with pytest.raises(RetryLater, match=waiting):
        announce(uploads, folder, manifest)
    assert stays(db) == 0
    assert any("ignored; waiting for" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("secret_source", ["app-setting"])
def test_a_gzipped_file_is_read_whatever_its_name(app_env, uploads, db):
    files, manifest = export_files(4, seed=44)
    folder = "exports/by-content/"
    for name, data in files.items():  # gzipped, under the plain names the manifest gives
        uploads.put(gzip.compress(data), folder + name)
    announce(uploads, folder, manifest)
    expected = sum(1 for line in files["Encounter.000.ndjson"].splitlines() if b'"IMP"' in line)
    assert stays(db) == expected


def test_the_export_writer_names_each_file_as_it_writes_it(tmp_path):
    fhir_export.main(["--patients", "2", "--gzip", "-o", str(tmp_path)])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for item in manifest["output"]:
        assert (tmp_path / item["url"].rsplit("/", 1)[-1]).exists(), item["url"]


# --- tools refuse what they cannot use ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--synthea", "no/such/folder", "-o", "out"], "no Synthea bundles (*.json) in"),
        (["--patients", "0", "-o", "out"], "--patients must be at least 1"),
    ],
)
def test_the_export_writer_refuses_an_empty_or_missing_input(tmp_path, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        fhir_export.main(argv)
    assert says in str(exited.value.code)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_sql_script_names_a_missing_variable_and_its_example_gives_them_all(capsys):
    assert sql_script.main([str(GRANT_SCRIPT), "--var", "APP_IDENTITY_NAME=x"]) == 2
    assert "pass --var APP_OBJECT_ID=..." in capsys.readouterr().err
    used = set(sql_script._VARIABLE.findall(GRANT_SCRIPT.read_text()))
    example = {v.split("=")[0] for v in sql_script.__doc__.split("--var ")[1:]}
    assert used == example == {"APP_IDENTITY_NAME", "APP_OBJECT_ID", "APP_CLIENT_ID"}


def test_the_demo_refuses_a_missing_file(tmp_path):
    from devtools import demo

    with pytest.raises(SystemExit, match="is not a file with stays in it"):
        demo.main(["--csv", str(tmp_path / "missing.csv"), "--no-model"])


def test_the_demo_imports_only_your_file_with_csv(tmp_path, monkeypatch):
    import uuid

    from devtools import demo

    local = PROJECT_ROOT / ".local" / f"test-demo-{uuid.uuid4().hex[:8]}"  # ignored by git
    local.mkdir(parents=True)
    monkeypatch.setattr(demo, "LOCAL", local)
    for name in ("PATIENT_STORAGE_CONNECTION", "SQL_CONNECTION_STRING", "LOS_MODEL_URL"):
        monkeypatch.delenv(name, raising=False)
    mine = tmp_path / "mine.csv"
    mine.write_bytes(los_generator.csv_bytes(30, seed=45))
    saved = dict(os.environ)  # the demo sets the settings for the workers it starts
    try:
        demo.main(["--csv", str(mine), "--no-model"])
        engine = sa.create_engine(f"sqlite:///{local / 'demo.db'}")
        with engine.connect() as conn:
            runs = conn.execute(sa.select(ingest_runs.c.blobUrl)).scalars().all()
        engine.dispose()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(local, ignore_errors=True)
    assert len(runs) == 1 and runs[0].endswith("/mine.csv")


# --- the operator's queue commands --------------------------------------------------------------


def test_account_url_goes_before_or_after_the_command(monkeypatch):
    seen: list[str | None] = []

    class Empty:
        def peek_messages(self, max_messages: int) -> list[Any]:
            return []

    def fake(name: str, args: Any) -> Any:
        seen.append(args.account_url)
        return Empty()

    monkeypatch.setattr(queue_command, "queue", fake)
    url = "https://stdata.queue.core.windows.net"
    queue_command.main(["poisoned", "--account-url", url])
    queue_command.main(["--account-url", url, "poisoned"])
    queue_command.main(["poisoned"])
    assert seen == [url, url, None]


def test_replaying_one_message_leaves_the_others_to_replay_at_once(
    azurite_connection, import_queue, monkeypatch, capsys
):
    env = {"PATIENT_STORAGE_CONNECTION": azurite_connection}  # the operator's shell
    poison = queue_host.queue_client(azurite_connection, POISON_QUEUE)
    for k in range(3):
        body = events.event_grid_schema(f"http://x/patient-uploads/{k}.csv", f"0x{k}")
        poison.send_message(json.dumps(body))
    queue_command.main(["poisoned"], env=env)
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 3 and all("{" not in line for line in listed)  # ids only
    queue_command.main(["poisoned", "--full"], env=env)
    assert all(
        '"BlobCreated' in line or "Blob" in line for line in capsys.readouterr().out.splitlines()
    )
    first = listed[0].split()[0]
    queue_command.main(["replay", "--message-id", first], env=env)
    assert "1 message(s) back" in capsys.readouterr().out
    queue_command.main(["replay", "--all"], env=env)  # at once: the other two were not held back
    assert "2 message(s) back" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no message nope"):
        queue_command.main(["replay", "--message-id", "nope"], env=env)


def test_azurite_as_the_docs_start_it_answers_the_sdk(tmp_path):
    """The integration engineer's `npx azurite …` line, run as written (in the project, where
    npx finds the project's Azurite): the Storage SDK, whose API versions may be newer than
    Azurite's, is answered, not refused."""
    import shlex
    import signal
    import subprocess
    import time

    from azure.storage.blob import BlobServiceClient

    from tests.doc_blocks import blocks

    [block] = [
        b for b in blocks() if b.doc == "docs/integration-engineer.md" and "npx azurite" in b.code
    ]
    [line] = [ln for ln in block.code.splitlines() if ln.startswith("npx azurite")]
    words = shlex.split(line, comments=True)
    assert words[-1] == "&"
    location = f".local/test-azurite-{tmp_path.name}"
    words = [location if w == ".local/azurite" else w for w in words[:-1]]
    proc = subprocess.Popen(
        words,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        service = BlobServiceClient.from_connection_string(DEVELOPMENT)
        deadline = time.monotonic() + 60
        while True:
            try:
                service.create_container(f"docs-{tmp_path.name}"[:63].lower().replace("_", "-"))
                break
            except Exception as exc:  # not listening yet
                if time.monotonic() > deadline or "API version" in str(exc):
                    raise
                time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        shutil.rmtree(PROJECT_ROOT / location, ignore_errors=True)
