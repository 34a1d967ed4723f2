"""The SQL Server shadow: what each statement the app runs would need on Azure SQL.

The suite runs the functions on SQLite and PostgreSQL; Azure SQL cannot run here. So every
Core statement the app executes is also compiled with SQLAlchemy's SQL Server dialect,
parsed as T-SQL with sqlglot, and turned into the permissions SQL Server checks for it:

* ``INSERT`` on the table written; ``SELECT`` on every column an ``OUTPUT`` clause returns
  (SQLAlchemy adds ``OUTPUT inserted.id`` to a single-row insert of a table with an identity
  key, and SQL Server refuses it without SELECT on that column);
* ``UPDATE`` on the table; ``SELECT`` on every column its ``WHERE`` or ``SET`` reads;
* ``SELECT`` on every column a query reads; ``DELETE`` likewise;
* anything else (DDL, ``EXEC``, ``MERGE``) is not the app's to run.

:class:`Grants` reads ``infra/sql/grant-app-user.sql`` the same way (table and column
grants), so a test can say exactly which statement needs what the script does not grant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp

from ops.sql_script import batches

Need = tuple[str, str, str | None]  # (privilege, table, column or None for the table)


@dataclass
class Grants:
    """Privileges by table: None for the whole table, else the columns granted."""

    tables: dict[str, dict[str, set[str] | None]] = field(default_factory=dict)
    principal: str = ""

    @classmethod
    def from_script(cls, path: Path, principal: str = "func-test123", **variables: str) -> Grants:
        grants = cls(principal=principal)
        values = {
            "APP_IDENTITY_NAME": principal,
            "APP_OBJECT_ID": "00000000-0000-0000-0000-000000000001",
            "APP_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
            **variables,
        }
        for batch in batches(path.read_text(encoding="utf-8"), values):
            lines = batch.splitlines()
            code = "\n".join(line for line in lines if not line.strip().startswith("--"))
            for statement in sqlglot.parse(code, read="tsql"):
                if isinstance(statement, exp.Grant):
                    grants._add(statement)
        return grants

    def _add(self, grant: exp.Grant) -> None:
        principals = [p.this.name for p in grant.args["principals"]]
        assert principals == [self.principal], principals
        table = grant.args["securable"]
        assert table.db == "dbo", table.sql()
        privileges = self.tables.setdefault(table.name, {})
        for privilege in grant.args["privileges"]:
            name = privilege.this.name.upper()
            columns = {c.name for c in privilege.expressions}
            if not columns:
                privileges[name] = None
            elif privileges.get(name, set()) is not None:
                privileges[name] = (privileges.get(name) or set()) | columns

    def allows(self, need: Need) -> bool:
        privilege, table, column = need
        granted = self.tables.get(table, {})
        if privilege not in granted:
            return False
        columns = granted[privilege]
        return columns is None or (column is not None and column in columns)


class NotTheAppsToRun(Exception):
    """A statement the app's identity must never run (DDL and the like)."""


def needs(tsql: str) -> set[Need]:
    """The permissions SQL Server checks for ``tsql``; raises for what the app must not run."""
    found: set[Need] = set()
    for statement in sqlglot.parse(tsql, read="tsql"):
        if statement is None:
            continue
        found |= set(_needs(statement))
    return found


def _needs(statement: exp.Expression) -> Iterator[Need]:
    if isinstance(statement, exp.Insert):
        target = statement.this.this if isinstance(statement.this, exp.Schema) else statement.this
        table = target.name
        yield ("INSERT", table, None)
        returning = statement.args.get("returning")
        if returning is not None:
            for column in returning.find_all(exp.Column):
                yield ("SELECT", table, column.name)
        if isinstance(statement.expression, exp.Select):
            yield from _reads(statement.expression)
    elif isinstance(statement, exp.Update):
        table = statement.this.name
        yield ("UPDATE", table, None)
        read = [statement.args.get("where")]
        read += [assignment.expression for assignment in statement.expressions]
        for part in read:
            if part is not None:
                for column in part.find_all(exp.Column):
                    yield ("SELECT", column.table or table, column.name)
    elif isinstance(statement, exp.Delete):
        table = statement.this.name
        yield ("DELETE", table, None)
        where = statement.args.get("where")
        if where is not None:
            for column in where.find_all(exp.Column):
                yield ("SELECT", column.table or table, column.name)
    elif isinstance(statement, exp.Select):
        if _is_scope_identity(statement):
            return  # SELECT scope_identity(): no table, no permission
        yield from _reads(statement)
    else:
        raise NotTheAppsToRun(f"{type(statement).__name__}: {statement.sql(dialect='tsql')[:120]}")


def _is_scope_identity(select: exp.Select) -> bool:
    return select.args.get("from_") is None and all(
        isinstance(e, exp.Anonymous) and e.name.lower() == "scope_identity"
        for e in select.expressions
    )


def _reads(select: exp.Expression) -> Iterator[Need]:
    tables = {t.alias_or_name: t.name for t in select.find_all(exp.Table)}
    only = next(iter(tables.values())) if len(tables) == 1 else None
    for column in select.find_all(exp.Column):
        table = tables.get(column.table, column.table) if column.table else only
        if table:
            yield ("SELECT", table, column.name)
    if any(True for _ in select.find_all(exp.Star)):
        for table in tables.values():
            yield ("SELECT", table, "*")


def missing(statements: Iterable[str], grants: Grants) -> list[str]:
    """Each statement that needs something ``grants`` does not give, with what it needs."""
    problems = []
    for tsql in statements:
        try:
            wanted = needs(tsql)
        except NotTheAppsToRun as exc:
            problems.append(f"not the app's to run: {exc}")
            continue
        except sqlglot.errors.ParseError as exc:
            problems.append(f"does not parse as T-SQL ({str(exc)[:120]}): {tsql[:200]}")
            continue
        lacking = sorted(
            f"{priv} on {table}" + (f"({column})" if column else "")
            for priv, table, column in wanted
            if not grants.allows((priv, table, column))
        )
        if lacking:
            problems.append(f"needs {', '.join(lacking)}: {_one_line(tsql)[:240]}")
    return problems


def _one_line(tsql: str) -> str:
    return re.sub(r"\s+", " ", tsql).strip()
