"""Start and stop Azurite's blob and queue services (from the project's node_modules) on free
ports."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's published, well-known development key; not a secret.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def connection_string(port: int, queue_port: int | None = None, host: str = "127.0.0.1") -> str:
    queue = f"QueueEndpoint=http://{host}:{queue_port}/{ACCOUNT};" if queue_port else ""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT};{queue}"
    )


# The containers the app reads and writes, made together wherever a local account is set up:
# the uploads (PATIENT_UPLOADS_CONTAINER), the models (the champion pointer, versions) and
# an export's shards.
UPLOADS_CONTAINER = "patient-uploads"
MODELS_CONTAINER = "models"
# An export's shards while it is imported in ranges (shared/platform/storage.py names it).
SHARDS_CONTAINER = "export-shards"


def create_containers(
    connection_string: str, uploads: str = UPLOADS_CONTAINER, models: str = MODELS_CONTAINER
) -> None:
    """Make the uploads, models and export-shards containers (as infra/modules/storage.bicep
    does in Azure)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)
    for name in (uploads, models, SHARDS_CONTAINER):
        with contextlib.suppress(ResourceExistsError):
            service.create_container(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def executable(service: str = "blob") -> str:
    name = f"azurite-{service}"
    local = PROJECT_ROOT / "node_modules" / ".bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(f"{name} not found: run `npm ci` at the project root")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Azurite exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"Azurite did not listen on port {port} within {timeout:.0f} s")


@contextlib.contextmanager
def _service(service: str, port: int, location: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [
            executable(service),
            "--silent",
            "--skipApiVersionCheck",
            f"--{service}Host",
            "127.0.0.1",
            f"--{service}Port",
            str(port),
            "--location",
            str(location),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, proc, timeout=30)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running(
    port: int | None = None, location: Path | None = None, queue_port: int | None = None
) -> Iterator[str]:
    """Run Azurite's blob and queue services; yields their connection string and stops
    them on exit."""
    port = port or free_port()
    while queue_port is None or queue_port == port:
        queue_port = free_port()
    with contextlib.ExitStack() as stack:
        if location is None:
            location = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="azurite-")))
        stack.enter_context(_service("blob", port, location))
        stack.enter_context(_service("queue", queue_port, location))
        yield connection_string(port, queue_port)
