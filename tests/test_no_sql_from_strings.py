"""No SQL is built from strings: every execute()/raw()/RawSQL()/extra() gets SQL made of
constants (values go as parameters; names through psycopg.sql.Identifier).

The project's Python is parsed with ast. An SQL argument that is an f-string, %-formatting,
.format() or a concatenation fails the test unless every piece of it is a constant: a
literal, or a name bound (in the same function or at module level) only to constants.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("veosite", "tracking", "generation", "discordbot", "bench", "tests", "manage.py")
SQL_CALLS = {"execute", "executemany", "raw", "RawSQL", "extra"}
COMPOSERS = {"SQL", "Identifier", "Literal", "Placeholder", "Composed"}  # psycopg.sql


def python_files() -> list[Path]:
    files = []
    for name in PACKAGES:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


class Scope:
    """Assignments visible from a call: its function's, then the module's."""

    def __init__(self, *bodies: ast.AST):
        self.bindings: list[dict[str, list[ast.expr]]] = []
        for body in bodies:
            names: dict[str, list[ast.expr]] = {}
            for node in ast.walk(body):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            names.setdefault(target.id, []).append(node.value)
                elif (
                    isinstance(node, (ast.AnnAssign, ast.AugAssign))
                    and isinstance(node.target, ast.Name)
                    and node.value is not None
                ):
                    names.setdefault(node.target.id, []).append(node.value)
            self.bindings.append(names)

    def values(self, name: str) -> list[ast.expr] | None:
        for names in self.bindings:
            if name in names:
                return names[name]
        return None


def constant(node: ast.expr, scope: Scope, seen: frozenset = frozenset()) -> bool:
    """Whether node is built from constants only (so no outside value can reach the SQL)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        values = scope.values(node.id)
        if values is None or node.id in seen:
            return False
        return all(constant(value, scope, seen | {node.id}) for value in values)
    if isinstance(node, ast.JoinedStr):
        return all(
            constant(part.value if isinstance(part, ast.FormattedValue) else part, scope, seen) for part in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return constant(node.left, scope, seen) and constant(node.right, scope, seen)
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(constant(item, scope, seen) for item in node.elts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join"):
        return constant(node.func.value, scope, seen) and all(
            constant(a, scope, seen) for a in [*node.args, *(k.value for k in node.keywords)]
        )
    return False


def composed(node: ast.expr) -> bool:
    """psycopg.sql composition: sql.SQL("...").format(sql.Identifier(name)) and the like."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join"):
        node = node.func.value
    return isinstance(node, ast.Call) and _called_name(node) in COMPOSERS


def built_from_strings(node: ast.expr) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join")


def sql_arguments(call: ast.Call) -> list[ast.expr]:
    if _called_name(call) == "extra":
        return [*call.args, *(k.value for k in call.keywords)]
    first = call.args[:1] or [k.value for k in call.keywords if k.arg in ("sql", "query", "raw_query")]
    return list(first)


def violations(source: str, label: str) -> list[str]:
    tree = ast.parse(source, filename=label)
    found = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    owner = {id(call): fn for fn in functions for call in ast.walk(fn) if isinstance(call, ast.Call)}
    module = ast.Module(
        body=[n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))],
        type_ignores=[],
    )
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and _called_name(call) in SQL_CALLS):
            continue
        scope = Scope(*([owner[id(call)]] if id(call) in owner else []), module)
        for argument in sql_arguments(call):
            candidates = [argument]
            if isinstance(argument, ast.Name):
                candidates = scope.values(argument.id) or []
            elif isinstance(argument, (ast.List, ast.Tuple)):  # extra(where=[...], tables=[...])
                candidates = argument.elts
            for node in candidates:
                if built_from_strings(node) and not composed(node) and not constant(node, scope):
                    found.append(f"{label}:{call.lineno}: {ast.unparse(argument)[:80]}")
    return found


def test_no_sql_is_built_from_strings():
    found = [line for path in python_files() for line in violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == [], "SQL built from strings (use parameters, or psycopg.sql.Identifier):\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ('cursor.execute(f"SELECT * FROM t WHERE id = {user_id}")', True),
        ('cursor.execute("SELECT * FROM t WHERE id = %s" % user_id)', True),
        ('cursor.execute("SELECT * FROM {}".format(table))', True),
        ("cursor.execute(LOAD.format(stop=n))", True),
        ('cursor.execute("SELECT * FROM t WHERE name = \'" + name + "\'")', True),
        ('query = f"DELETE FROM {table}"\ncursor.execute(query)', True),
        ('Model.objects.raw(f"SELECT * FROM t WHERE id = {n}")', True),
        ('qs.extra(where=["id = %s" % n])', True),
        ('qs.extra(where="id = " + n)', True),
        ('RawSQL("x = " + column, ())', True),
        ('cursor.execute("SELECT * FROM t WHERE id = %s", [user_id])', False),
        ('_WHO = "who AS (SELECT 1)"\n_SQL = f"WITH {_WHO} SELECT 2"\ncursor.execute(_SQL)', False),
        ('cursor.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))', False),
        ("cursor.execute(statement)", False),
    ],
)
def test_the_check_tells_string_building_from_constants(source, flagged):
    assert bool(violations(source, "example.py")) is flagged
