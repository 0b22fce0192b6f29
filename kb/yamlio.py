"""Safe YAML reading with positions, and stable YAML writing.

PyYAML's loaders silently keep the last of two duplicate keys, follow
aliases without limit, and lose line numbers once a document is built.
This module parses to a node tree first (with libyaml's C parser when
present), checks the tree, then builds the Python data. It keeps the tree,
so a later error about ``outcomes[1].data.arms[0].events`` can name its
line and column.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

try:
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_BYTES = 1_000_000
"""Records larger than this are refused (a study record is a few kB)."""
MAX_NODES = 100_000
"""The most YAML nodes a document may expand to once aliases are followed."""


class _RecordLoader(_Loader):  # type: ignore[misc, valid-type]
    """Safe loader that leaves dates as text: the schema parses them and reports bad ones with a line."""


_RecordLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}

Loc = tuple  # a path into the data: ("outcomes", 0, "data", "arms", 1, "events")


@dataclass
class YamlProblem(Exception):
    """The file could not be read as one YAML mapping."""

    code: str
    message: str
    line: int = 1
    column: int = 1
    hint: str | None = None
    field: str = ""

    def __str__(self) -> str:
        return self.message


@dataclass
class Loaded:
    data: dict
    node: yaml.Node
    text: str


def format_loc(loc: Iterable[Any]) -> str:
    """('outcomes', 0, 'data') -> 'outcomes[0].data'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _byte_position(raw: bytes, offset: int) -> tuple[int, int]:
    line = raw.count(b"\n", 0, offset) + 1
    col = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return line, col


def read_text(path: Path) -> str:
    """A record file's text, refusing oversized and non-UTF-8 files."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise YamlProblem("unreadable", f"cannot read file: {e.strerror}") from None
    if size > MAX_BYTES:
        raise YamlProblem(
            "too-large",
            f"file is {size / 1e6:.1f} MB; a record may be at most {MAX_BYTES / 1e6:.0f} MB",
            hint="a study record is a few kB: move full texts or data tables out of the record",
        )
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise YamlProblem("encoding", "binary file, not YAML text", hint="records are UTF-8 YAML text files")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, col = _byte_position(raw, e.start)
        raise YamlProblem(
            "encoding",
            f"not UTF-8: byte 0x{raw[e.start]:02x} cannot be decoded",
            line,
            col,
            hint="save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        ) from None


def _mark(node: yaml.Node | None) -> tuple[int, int]:
    if node is None or node.start_mark is None:
        return 1, 1
    return node.start_mark.line + 1, node.start_mark.column + 1


def check_tree(root: yaml.Node) -> None:
    """Reject duplicate keys, recursive aliases and alias bombs, in one pass."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk: (node, loc, children_done)
    stack: list[tuple[yaml.Node, tuple, bool]] = [(root, (), False)]
    on_path: set[int] = set()
    while stack:
        node, loc, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            total = 1
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    total += sizes.get(id(k), 1) + sizes[id(v)]
            elif isinstance(node, yaml.SequenceNode):
                for v in node.value:
                    total += sizes[id(v)]
            sizes[nid] = total
            if total > MAX_NODES:
                line, col = _mark(node)
                raise YamlProblem(
                    "alias-bomb",
                    f"document expands to more than {MAX_NODES:,} nodes through aliases",
                    line,
                    col,
                    hint="remove the &anchor/*alias chain; records should not need aliases",
                    field=format_loc(loc),
                )
            continue
        if nid in sizes:
            continue
        if nid in on_path:
            line, col = _mark(node)
            raise YamlProblem("recursive-alias", "an alias refers to its own parent (recursive structure)",
                              line, col, field=format_loc(loc))
        if isinstance(node, yaml.ScalarNode):
            sizes[nid] = 1
            continue
        on_path.add(nid)
        stack.append((node, loc, True))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, yaml.Node] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value == "<<" and k.tag.endswith(":merge"):
                        stack.append((v, loc, False))
                        continue
                    if k.value in seen:
                        line, col = _mark(k)
                        first = seen[k.value].start_mark.line + 1
                        raise YamlProblem(
                            "duplicate-key",
                            f"duplicate key '{k.value}' (first at line {first}); YAML would silently keep only the last",
                            line,
                            col,
                            hint="merge the two entries into one",
                            field=format_loc((*loc, k.value)),
                        )
                    seen[k.value] = k
                    stack.append((v, (*loc, k.value), False))
                else:
                    stack.append((k, loc, False))
                    stack.append((v, loc, False))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                stack.append((v, (*loc, i), False))


def parse(text: str) -> Loaded:
    """Parse ``text`` as exactly one YAML mapping, with all checks."""
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()
    ):
        raise YamlProblem("empty", "file is empty", hint="start from `kb new` to get a valid record")
    loader = _RecordLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = e.problem or str(e)
            if "single document" in (e.context or ""):
                problem = "more than one YAML document (---) in a record file"
            raise YamlProblem("syntax", f"YAML syntax error: {problem}", line, col,
                              hint=_syntax_hint(problem)) from None
        if node is None:
            raise YamlProblem("empty", "file is empty", hint="start from `kb new` to get a valid record")
        check_tree(node)
        try:
            data = loader.construct_document(node)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            raise YamlProblem("syntax", f"YAML error: {e.problem or e}", line, col) from None
        except RecursionError:
            raise YamlProblem("syntax", "YAML nesting is too deep") from None
        except (ValueError, TypeError) as e:
            raise YamlProblem("syntax", f"YAML value cannot be read: {e}", *_mark(node)) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        kind = type(data).__name__
        kind = {"list": "a list", "str": "a plain string", "int": "a number", "float": "a number"}.get(kind, kind)
        raise YamlProblem(
            "not-mapping",
            f"a record must be a mapping of field: value, but this file holds {kind}",
            *_mark(node),
            hint="each line at the top level should look like `field: value`",
        )
    return Loaded(data=data, node=node, text=text)


def _syntax_hint(problem: str) -> str | None:
    if "mapping values are not allowed" in problem:
        return "a value containing ': ' must be quoted, e.g. title: \"Ketamine: a trial\""
    if "found character '\\t'" in problem:
        return "YAML does not allow tabs for indentation; use spaces"
    if "found undefined alias" in problem:
        return "an *alias names an &anchor that is not defined above it"
    return None


def load(path: str | Path) -> Loaded:
    return parse(read_text(Path(path)))


def locate(root: yaml.Node | None, loc: Iterable[Any], *, key: bool = False) -> tuple[int, int]:
    """Line and column (1-based) of the value at ``loc``, or of its key with ``key=True``.

    Stops at the deepest node that exists, so a missing field points at its parent.
    """
    node = root
    key_node = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    key_node, nxt = k, v
                    break
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node, key_node = node.value[part], None
        else:
            break
    else:
        if key and key_node is not None:
            return _mark(key_node)
    return _mark(node)


# -- writing -----------------------------------------------------------------


class _RecordDumper(_Dumper):  # type: ignore[misc, valid-type]
    pass


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_RecordDumper.add_representer(str, _str_representer)


def dump(data: Any) -> str:
    """YAML text for ``data`` in a stable, reviewer-friendly layout (keys in the given order)."""
    return yaml.dump(
        data,
        Dumper=_RecordDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
        indent=2,
    )


def write_new(path: Path, text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` atomically. Refuses to replace an existing file unless ``overwrite``."""
    from .errors import RecordExists

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic create-if-absent
            except FileExistsError:
                raise RecordExists(f"{path} already exists; not overwriting it",
                                   hint="choose another id, or edit the existing file") from None
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
