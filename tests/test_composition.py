"""One composition root: shared/ keeps no process-wide state; function_app.py builds the
app's parts once per worker (shared.composition.Services) and hands them to the glue."""

from __future__ import annotations

import ast

import pytest

from shared.composition import Services
from shared.platform.settings import SettingsError
from tests.conftest import PROJECT_ROOT
from tests.test_package import FUNCTIONS

# The code a worker runs: the shared parts, the model, the function folders.
WORKER_CODE = [
    *sorted(
        path
        for part in ("shared", "los_model", *FUNCTIONS)
        for path in (PROJECT_ROOT / part).rglob("*.py")
    ),
    PROJECT_ROOT / "function_app.py",
]
_EMPTY_CONTAINERS = (
    "dict",
    "list",
    "set",
    "OrderedDict",
    "defaultdict",
    "deque",
    "WeakValueDictionary",
)
_CACHE_DECORATORS = ("cache", "lru_cache", "cached_property")


def module_level_state(source: str, name: str = "<module>") -> list[str]:
    """What in a module would make it a process-wide singleton: ``global`` statements,
    module-level locks, module-level caches (a private name first bound to None, any name
    bound to an empty mutable container, which is only ever filled at run time) and
    functions memoized for the process (``functools.cache`` and the like)."""
    tree = ast.parse(source, name)
    found = [f"global {', '.join(n.names)}" for n in ast.walk(tree) if isinstance(n, ast.Global)]
    for node in tree.body:
        value = getattr(node, "value", None)
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if isinstance(value, ast.Call) and ast.unparse(value.func).endswith(("Lock", "RLock")):
            found.append(f"{names} = a lock")
        if isinstance(value, ast.Constant) and value.value is None:
            found += [f"{n} = None" for n in names if n.startswith("_")]
        empty_literal = isinstance(value, ast.Dict | ast.List | ast.Set) and not (
            getattr(value, "keys", None) or getattr(value, "elts", None)
        )
        empty_call = (
            isinstance(value, ast.Call)
            and ast.unparse(value.func).split(".")[-1] in _EMPTY_CONTAINERS
            and not value.args
        )
        if names and (empty_literal or empty_call):
            found.append(f"{names} = an empty {ast.unparse(value)} (a cache)")
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                called = decorator.func if isinstance(decorator, ast.Call) else decorator
                if ast.unparse(called).split(".")[-1] in _CACHE_DECORATORS:
                    found.append(f"{node.name} memoized by {ast.unparse(called)}")
    return found


@pytest.mark.parametrize("path", WORKER_CODE, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_a_worker_keeps_no_process_wide_state(path):
    assert module_level_state(path.read_text(), str(path)) == []


def test_the_check_sees_a_singleton():
    singleton = (
        "import threading\n_lock = threading.Lock()\n_cached: object | None = None\n"
        "def get():\n    global _cached\n    return _cached\n"
    )
    assert len(module_level_state(singleton)) == 3


@pytest.mark.parametrize(
    "cache",
    [
        "_plans: dict[str, object] = {}",
        "MODELS = {}",
        "_seen = set()",
        "_loaded = collections.OrderedDict()",
        "@functools.lru_cache(maxsize=4)\ndef load(url): ...",
        "@cache\ndef card(path): ...",
    ],
)
def test_the_check_sees_a_cache_added_to_the_model(cache):
    """Mutation check: each los_model module is clean as it is, and is caught with a
    process-wide cache added to it."""
    for path in sorted((PROJECT_ROOT / "los_model").glob("*.py")):
        source = path.read_text()
        assert module_level_state(source) == []
        assert module_level_state(f"{source}\n{cache}\n") != [], path.name


def test_each_worker_builds_its_parts_once_and_lazily(monkeypatch, tmp_path):
    env = {
        "EPHI_OWNER": "owner@example",
        "SQL_CONNECTION_STRING": f"sqlite:///{tmp_path}/x.db",
        "PATIENT_STORAGE_CONNECTION": (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
        ),
    }
    services = Services(env)
    assert services._parts == {}  # nothing built until it is used
    assert services.settings is services.settings
    assert services.database.engine() is services.database.engine()
    assert services.uploads is services.uploads and services.uploads.container
    assert services.predictor is None  # no model set
    assert set(services._parts) == {"settings", "secret", "database", "uploads", "predictor"}
    assert "credential" not in services._parts  # no Azure SQL, no account URL: no token
    other = Services(env)
    assert other.database is not services.database  # a test or a worker builds its own
    services.close()


def test_a_missing_setting_is_reported_each_time_it_is_used():
    services = Services({})
    for _ in range(2):
        with pytest.raises(SettingsError, match="EPHI_OWNER"):
            services.settings  # noqa: B018


def test_the_function_glue_takes_the_services_it_is_given():
    import function_app

    assert isinstance(function_app.services, Services)
    text = "\n".join(
        (PROJECT_ROOT / folder / "function.py").read_text()
        for folder in ("bulk_import", "admit_patient", "discharge_patient", "capability_statement")
    )
    assert "def blueprint(services: Services)" in text
    assert "Services()" not in text  # only function_app.py builds one


APP_CODE = [
    p
    for part in (
        "shared",
        "los_model",
        "bulk_import",
        "admit_patient",
        "discharge_patient",
        "capability_statement",
        "retrain_model",
        "health",
        "model_report",
    )
    for p in sorted((PROJECT_ROOT / part).rglob("*.py"))
] + [PROJECT_ROOT / "function_app.py"]
SETTINGS_MODULE = PROJECT_ROOT / "shared" / "platform" / "settings.py"


def test_only_the_settings_module_reads_the_environment():
    """Settings reach the code through Services (the composition root), read in one module:
    a setting read anywhere else would escape Services(env) and its checks."""
    readers = []
    for path in APP_CODE:
        if path == SETTINGS_MODULE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and ast.unparse(node) in (
                "os.environ",
                "os.getenv",
            ):
                readers.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert readers == []


def test_the_platform_auth_flag_and_a_local_settings_file_are_read_there(tmp_path, monkeypatch):
    from shared.platform.settings import PLATFORM_AUTH_FLAG, environment, load_settings

    base = {"EPHI_OWNER": "owner@example.org"}
    assert load_settings({**base, PLATFORM_AUTH_FLAG: "True"}).platform_auth_enabled is True
    assert load_settings(base).platform_auth_enabled is False
    file = tmp_path / "local.settings.json"
    file.write_text('{"Values": {"RETRAIN_MARGIN": "0.2", "LIVE_MAE_FACTOR": "2"}}')
    monkeypatch.setenv("LIVE_MAE_FACTOR", "3")
    env = environment(file)
    assert (env["RETRAIN_MARGIN"], env["LIVE_MAE_FACTOR"]) == ("0.2", "3")  # the environment wins
    file.write_text("not json")
    with pytest.raises(SettingsError, match=r"cannot be read as a local\.settings\.json"):
        environment(file)


def test_no_function_takes_more_than_five_positional_parameters():
    """Past a few, options are keyword-only (the Azure SDK's guideline): a call reads as
    what it sets, and a new option cannot shift the others."""
    roots = ("shared", "los_model", "ops", "devtools", "bench", *FUNCTIONS)
    crowded = []
    for path in sorted(p for root in roots for p in (PROJECT_ROOT / root).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                positional = [
                    a.arg
                    for a in (*node.args.posonlyargs, *node.args.args)
                    if a.arg not in ("self", "cls")
                ]
                if len(positional) > 5:
                    crowded.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name}")
    assert crowded == []


def test_the_http_auth_level_comes_from_the_services_settings(monkeypatch):
    """Fixed when the host indexes, from AUTH_MODE alone (a missing other setting must not
    stop indexing), and from the settings the worker was given, not around them."""
    import function_app

    monkeypatch.setenv("AUTH_MODE", "function")

    def levels(env: dict[str, str]) -> dict[str, str]:
        app = function_app.build_app(Services(env))
        return {
            str(f.get_function_name()): str(binding.auth_level)
            for f in app.get_functions()
            for binding in f.get_bindings()
            if binding.type == "httpTrigger"
        }

    easy = levels({"AUTH_MODE": "easyauth"})
    keys = levels({})
    for name in ("admit_patient", "discharge_patient", "model_report"):
        assert easy[name].endswith("ANONYMOUS") and keys[name].endswith("FUNCTION")
    assert easy["health"].endswith("FUNCTION")  # always behind a key
    assert levels({"AUTH_MODE": "neither"})["admit_patient"].endswith("FUNCTION")  # the safer
