"""One command's work on the deployment's database, answered as every command answers:
exit 2 when a setting is missing or wrong (named), 3 when the database did not answer
(nothing changed; try again), the work's own answer otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

T = TypeVar("T")


class CommandFailed(Exception):
    """The command stops with ``code``; what went wrong was said on stderr."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def on_database(
    command: str,
    work: Callable[[Engine], T],
    *,
    settings: Path | None,
    env: Mapping[str, str] | None,
) -> T:
    """``work`` run with the database's engine, inside the database's retry for a caller."""
    from shared.composition import Services
    from shared.platform.database import FOR_A_CALLER, is_transient
    from shared.platform.settings import SettingsError, environment

    services = None
    try:
        services = Services(environment(settings, env=env))
        database = services.database
        return database.run(lambda: work(database.engine()), FOR_A_CALLER)
    except SettingsError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        raise CommandFailed(2) from None
    except Exception as exc:
        if is_transient(exc) or type(exc).__module__.startswith("sqlalchemy"):
            print(
                f"{command}: the database did not answer ({type(exc).__name__}); "
                "nothing was changed; try again (and see that the migrations ran)",
                file=sys.stderr,
            )
            raise CommandFailed(3) from None
        raise
    finally:
        if services is not None:
            services.close()
