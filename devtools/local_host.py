"""The Functions app run locally, as ``func start`` would run it (Core Tools cannot be
installed here): the very ``function_app`` indexed from the settings of ``local.settings.json``.

    scripts/serve.sh                         # http://localhost:7071/api/...
    scripts/serve.sh --as CMIO               # the page as the CMIO sees it
    scripts/serve.sh --as CareLineManager    # ... or as the care line manager

- HTTP routes under ``host.json``'s route prefix (``api`` unless it says otherwise), on
  uvicorn; each request becomes the ``func.HttpRequest`` the host would hand the function.
- Queue triggers polled from Azurite with ``host.json``'s queue settings (visibility
  timeout, dequeue count before the poison queue, polling interval).
- Timers on their NCRONTAB schedules (``%SETTING%`` read from the settings).
- ``--as ROLE`` plays App Service authentication: the worker runs with ``AUTH_MODE=easyauth``
  as behind the platform, and every request carries a principal with that app role (a
  principal header sent by the caller is dropped, as the platform drops it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func

PROJECT_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("local_host")
PRINCIPAL_HEADER = "x-ms-client-principal"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def principal_header(role: str, name: str | None = None) -> str:
    """The header App Service authentication adds for a signed-in user with ``role``."""
    claims = [{"typ": "roles", "val": role}, {"typ": "name", "val": name or f"local {role}"}]
    data = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(data).encode()).decode()


def host_settings() -> dict[str, Any]:
    return dict(json.loads((PROJECT_ROOT / "host.json").read_text()))


def settings_of(path: Path | None) -> dict[str, str]:
    """The app settings a local worker gets: the file's ``Values`` (local.settings.json,
    else the sample), as ``func start`` reads them."""
    if path is None:
        local = PROJECT_ROOT / "local.settings.json"
        path = local if local.exists() else PROJECT_ROOT / "local.settings.sample.json"
    return {k: str(v) for k, v in json.loads(path.read_text())["Values"].items()}


@dataclass(frozen=True)
class Route:
    function: str
    methods: frozenset[str]
    pattern: re.Pattern[str]
    call: Callable[[func.HttpRequest], func.HttpResponse]


def _pattern(prefix: str, template: str) -> re.Pattern[str]:
    parts = []
    for piece in re.split(r"(\{[^}]+\})", template.strip("/")):
        if piece.startswith("{"):
            name = piece.strip("{}").rstrip("?").split(":")[0]
            parts.append(f"(?P<{name}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile("^/" + "/".join(p for p in (prefix, "".join(parts)) if p) + "/?$")


class HttpHost:
    """An ASGI application that hands each request to the app's HTTP function for its route."""

    def __init__(self, functions: list[Any], *, role: str | None = None) -> None:
        prefix = (
            host_settings().get("extensions", {}).get("http", {}).get("routePrefix", "api")
        ).strip("/")
        self.role = role
        self.routes: list[Route] = []
        for function in functions:
            for binding in function.get_bindings():
                if binding.type != "httpTrigger":
                    continue
                spec = binding.get_dict_repr()  # as the host reads function.json
                methods = frozenset(str(getattr(m, "value", m)).upper() for m in spec["methods"])
                self.routes.append(
                    Route(
                        str(function.get_function_name()),
                        methods,
                        _pattern(prefix, spec.get("route") or str(function.get_function_name())),
                        function.get_user_function(),
                    )
                )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop: the worker is built
            while True:
                event = (await receive())["type"]
                await send({"type": f"{event}.complete"})
                if event == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        response = await asyncio.to_thread(self.handle, scope, body)
        headers = [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
        if response.mimetype:
            kind = response.mimetype + (f"; charset={response.charset}" if response.charset else "")
            headers.append((b"content-type", kind.encode()))
        await send(
            {"type": "http.response.start", "status": response.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": response.get_body() or b""})

    def handle(self, scope: Scope, body: bytes) -> func.HttpResponse:
        path, method = scope["path"], scope["method"].upper()
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if method not in route.methods:
                return func.HttpResponse(status_code=405)
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            headers.pop(PRINCIPAL_HEADER, None)  # the platform's to set, never the caller's
            if self.role is not None:
                headers[PRINCIPAL_HEADER] = principal_header(self.role)
            query = scope.get("query_string", b"").decode()
            request = func.HttpRequest(
                method=method,
                url=f"http://{headers.get('host', 'localhost')}{path}"
                + (f"?{query}" if query else ""),
                headers=headers,
                params=dict(parse_qsl(query)),
                route_params={k: v for k, v in found.groupdict().items() if v is not None},
                body=body,
            )
            return route.call(request)
        return func.HttpResponse(status_code=404)


def _queue_settings() -> dict[str, Any]:
    queues: dict[str, Any] = host_settings().get("extensions", {}).get("queues", {})
    return queues


def _seconds(value: str, default: float) -> float:
    hours, minutes, seconds = (float(p) for p in (value or "").split(":")) if value else (0, 0, 0)
    return hours * 3600 + minutes * 60 + seconds or default


def queue_workers(
    functions: list[Any], settings: Mapping[str, str], stop: threading.Event
) -> list[threading.Thread]:
    """A thread per queue trigger, taking its queue's messages as the host would."""
    from devtools.queue_host import QueueHost

    queues = _queue_settings()
    threads = []
    for function in functions:
        for binding in function.get_bindings():
            if binding.type != "queueTrigger":
                continue
            named = binding.get_dict_repr().get("connection") or "AzureWebJobsStorage"
            connection = settings.get(named, "")
            if connection == "UseDevelopmentStorage=true":
                from devtools.azurite import connection_string

                connection = connection_string(10000, 10001)
            host = QueueHost(
                connection,
                function.get_user_function(),
                visibility_timeout=int(_seconds(queues.get("visibilityTimeout", ""), 30)),
                max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            )
            pause = _seconds(queues.get("maxPollingInterval", ""), 2)
            threads.append(threading.Thread(target=_poll, args=(host, pause, stop), daemon=True))
    return threads


def _poll(host: Any, pause: float, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            if not host.step():
                stop.wait(pause)
        except Exception as exc:  # as the host: logged, and polling goes on
            log.warning("queue trigger: %s", type(exc).__name__)
            stop.wait(pause)


def _tick(call: Callable[..., Any], schedule: str, stop: threading.Event) -> None:
    from azure.functions.timer import TimerRequest

    while not stop.is_set():
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        due = ncrontab_next(schedule, now)
        if stop.wait((due - now).total_seconds()):
            return
        try:
            call(TimerRequest(past_due=False))
        except Exception as exc:
            log.warning("timer: %s", type(exc).__name__)


def ncrontab_next(schedule: str, after: dt.datetime) -> dt.datetime:
    """The next time an NCRONTAB schedule (seconds first, six fields) fires after ``after``."""
    from croniter import croniter

    second, *rest = schedule.split()
    # croniter takes the seconds as a sixth field at the end.
    found: dt.datetime = croniter(" ".join([*rest, second]), after).get_next(dt.datetime)
    return found


def timers(
    functions: list[Any], settings: Mapping[str, str], stop: threading.Event
) -> list[threading.Thread]:
    """A thread per timer trigger, firing it on its schedule."""
    threads = []
    for function in functions:
        for binding in function.get_bindings():
            if binding.type != "timerTrigger":
                continue
            schedule = str(binding.get_dict_repr()["schedule"])
            if schedule.startswith("%") and schedule.endswith("%"):
                schedule = settings.get(schedule.strip("%"), "0 0 3 * * 0")
            call = function.get_user_function()
            threads.append(threading.Thread(target=_tick, args=(call, schedule, stop), daemon=True))
    return threads


@contextlib.contextmanager
def running(
    settings: Mapping[str, str],
    *,
    port: int = 7071,
    role: str | None = None,
    queues: bool = True,
    timer: bool = True,
) -> Iterator[str]:
    """The app served on ``port`` (with its queue triggers and timers) until the block ends;
    yields the base URL."""
    import uvicorn

    import function_app
    from shared.composition import Services

    if role is not None:  # behind App Service authentication, as the platform sets it
        settings = {**settings, "AUTH_MODE": "easyauth", "WEBSITE_AUTH_ENABLED": "True"}
    services = Services(dict(settings))
    # Indexed once, as the host indexes the app at start-up.
    functions = function_app.build_app(services).get_functions()
    stop = threading.Event()
    workers = (queue_workers(functions, settings, stop) if queues else []) + (
        timers(functions, settings, stop) if timer else []
    )
    server = uvicorn.Server(
        uvicorn.Config(
            HttpHost(functions, role=role), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for worker in workers:
        worker.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the local host could not listen on port {port}")
            stop.wait(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        server.should_exit = True
        thread.join(timeout=10)
        services.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", type=Path, help="default: local.settings.json (or sample)")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--as", dest="role", help="an app role: CMIO, CareLineManager, ...")
    parser.add_argument("--no-queues", action="store_true", help="HTTP routes and timers only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = settings_of(args.settings)
    with running(settings, port=args.port, role=args.role, queues=not args.no_queues) as url:
        who = f" as {args.role}" if args.role else ""
        print(f"serving function_app on {url}/api{who}; the capacity page: {url}/api/capacity/view")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
