"""docs/internals.md cannot silently fall behind the code.

Every key and channel that `aqueue/_redis/keys.py` builds has a row in the glossary, every row
names a key the code builds, every record field `decode_job` reads has a row, every Lua script
is named, and every function, field and file the text quotes exists.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from aqueue._redis import records
from aqueue._redis.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "internals.md"
LUA = ROOT / "aqueue" / "_redis" / "lua"
NOT_KEYS = {"queue", "prefix", "pattern"}  # the queue's name, its prefix, a SCAN pattern
_PLACEHOLDER = re.compile(r"<[^>]*>")


def shape(name: str) -> str:
    """A key name with its variable parts blanked: `job:<job_id>` and `job:<id>` are one."""
    return _PLACEHOLDER.sub("<>", name)


def built_keys(keys_class: type[Keys]) -> dict[str, str]:
    """Every key and channel name `keys_class` builds (its shape -> the member building it),
    each variable part filled with `<parameter name>`."""
    keys = keys_class("q")
    built = {}
    for member, value in inspect.getmembers(keys_class):
        if member.startswith("_") or member in NOT_KEYS:
            continue
        if isinstance(value, property):
            name = getattr(keys, member)
        elif inspect.isfunction(value):
            params = list(inspect.signature(value).parameters)[1:]
            name = getattr(keys, member)(*(f"<{p}>" for p in params))
        else:
            continue
        if isinstance(name, str) and name.startswith(keys.prefix):
            built[shape(name[len(keys.prefix) :])] = member
    return built


def section(text: str, heading: str) -> str:
    """The text under `heading` up to the next heading of its level or above."""
    level = heading.split()[0]
    start = text.index(heading + "\n")
    stop = re.compile(rf"^#{{1,{len(level)}}} ", re.MULTILINE).search(text, start + len(heading))
    return text[start : stop.start() if stop else len(text)]


def first_cells(table_text: str) -> set[str]:
    """The backquoted names in the first cell of each table row (`a`, `b` in one cell: two)."""
    names = set()
    for line in table_text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split(" | ")[0]))
    return names


def undocumented(keys_class: type[Keys], doc: str) -> list[str]:
    """The members of `keys_class` whose key has no row in the glossary of `doc`."""
    model = section(doc, "## The data model")
    rows = {shape(name) for name in first_cells(section(model, "### Keys"))}
    rows |= {shape(name) for name in first_cells(section(model, "### Channels"))}
    return sorted(member for name, member in built_keys(keys_class).items() if name not in rows)


def test_every_key_keys_py_builds_is_in_the_glossary() -> None:
    assert len(built_keys(Keys)) >= 35  # the keyspace today: the check has something to check
    assert undocumented(Keys, DOC.read_text()) == []


def test_every_glossary_key_is_one_the_code_builds() -> None:
    """A row for a key nobody builds any more is stale. A key that keys.py does not build yet
    (scripts build some from literals) must at least be a literal of a script."""
    model = section(DOC.read_text(), "## The data model")
    rows = first_cells(section(model, "### Keys")) | first_cells(section(model, "### Channels"))
    lua = "\n".join(path.read_text() for path in LUA.glob("*.lua"))
    built = built_keys(Keys)
    stale = [
        name
        for name in sorted(rows)
        if shape(name) not in built and f"'{name.split('<')[0]}" not in lua
    ]
    assert stale == []


def test_every_record_field_the_reader_knows_is_in_the_glossary() -> None:
    source = inspect.getsource(records.decode_job) + inspect.getsource(records._result)
    reads = [
        r'\b(?:r\.(?:text|number|seconds|value|fields\.get)|f\.get)\("(\w+)"',  # r.text("cb")
        r'\bf\["(\w+)"\]',  # f["spec_error"]
        r'"(\w+)" in f\b',  # "progress" in f
    ]
    read = {name for pattern in reads for name in re.findall(pattern, source)}
    assert {"status", "posted", "ran", "result", "cb_state"} <= read  # the pattern still finds
    fields = first_cells(section(DOC.read_text(), "### The job record"))
    assert sorted(read - fields) == []


def test_every_lua_script_is_named() -> None:
    doc = DOC.read_text()
    scripts = sorted(path.name for path in LUA.glob("*.lua"))
    assert "claim.lua" in scripts and "_lib.lua" in scripts
    assert [name for name in scripts if f"`{name}`" not in doc] == []


def quoted_names_not_in_the_code(doc: str, code: str) -> list[str]:
    """The names `doc` quotes (functions, methods, fields, helpers: `Store.stop_waiting`,
    `lease_jobs`) that are no name in `code`. Redis commands (all capitals) are not checked."""
    words = set(re.findall(r"[A-Za-z_]\w*", code))
    quoted = set(re.findall(r"`([A-Za-z_][\w.]*)`", doc))
    return sorted(
        name
        for name in quoted
        if not name.isupper()
        and not name.endswith((".py", ".lua", ".md"))  # files: see quoted_files_missing
        and not set(filter(None, name.split("."))) <= words
    )


def quoted_files_missing(doc: str) -> list[str]:
    """The files `doc` quotes (`claim.lua`, `aqueue/_redis/direct.py`) that do not exist."""
    files = [p for p in ROOT.glob("**/*") if ".venv" not in p.parts and ".git" not in p.parts]
    paths = {str(p.relative_to(ROOT)) for p in files}
    return sorted(
        name
        for name in set(re.findall(r"`([\w/.-]+\.(?:py|lua|md))`", doc))
        if not any(path == name or path.endswith("/" + name) for path in paths)
    )


def test_every_name_and_file_the_doc_quotes_exists() -> None:
    """A function renamed or moved (the worker's, a script's helper) makes the text that
    names it stale: it fails here until the text follows."""
    sources = [*ROOT.glob("aqueue/**/*.py"), *LUA.glob("*.lua"), *ROOT.glob("tests/**/*.py")]
    code = "\n".join(path.read_text() for path in sources if path != Path(__file__).resolve())
    doc = DOC.read_text()
    assert quoted_names_not_in_the_code(doc, code) == []
    assert quoted_files_missing(doc) == []
    planted = "`Worker._take_every_push`, `claim_all.lua`"
    assert quoted_names_not_in_the_code(planted, code) == ["Worker._take_every_push"]
    assert quoted_files_missing(planted) == ["claim_all.lua"]


def test_the_check_sees_a_key_missing_from_the_glossary() -> None:
    """The checker itself: a key added to the keyspace, and not to the doc, is caught."""

    class Planted(Keys):
        @property
        def ledger(self) -> str:
            return self.prefix + "ledger"

        def shelf(self, worker_id: str) -> str:
            return f"{self.prefix}shelf:{worker_id}"

    assert undocumented(Planted, DOC.read_text()) == ["ledger", "shelf"]


def modules_missing_from_the_layers_table(doc: str) -> list[str]:
    """The package's modules that the table of layers and packages does not name."""
    table = section(doc, "## Layers and packages")
    named = set(re.findall(r"`([\w/.]+?)(?:\.py)?`", table))
    modules = [
        p for p in (ROOT / "aqueue").rglob("*.py") if p.name not in ("__init__.py", "py.typed")
    ]
    return sorted(
        str(p.relative_to(ROOT))
        for p in modules
        if p.stem not in named and f"{p.parent.name}/{p.stem}" not in named
    )


def test_every_module_is_in_the_layers_table() -> None:
    assert modules_missing_from_the_layers_table(DOC.read_text()) == []
    planted = DOC.read_text().replace("`capacity`", "").replace("_worker/capacity", "")
    assert modules_missing_from_the_layers_table(planted) == ["aqueue/_worker/capacity.py"]
