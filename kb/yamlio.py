"""Safe YAML reading with positions, and stable YAML writing.

PyYAML's loaders silently keep the last of two duplicate keys, follow
aliases without limit, and lose line numbers once a document is built.
This module parses to a node tree first (with libyaml's C parser when
present), checks the tree, then builds the Python data. It keeps the tree,
so a later error about ``outcomes[1].data.arms[0].events`` can name its
line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from .files import atomic_write

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


_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"


class _RecordLoader(_Loader):  # type: ignore[misc, valid-type]
    """Safe loader that leaves dates as text (the schema parses them and reports bad ones with a line).

    Its resolver is a lean version of PyYAML's: the C parser calls it once per
    node, and PyYAML's general one (with path resolvers) was half the parse time.
    """

    _by_first: dict[str, list] = {}
    # plain scalar -> its tag, for short values (keys, numbers, terms): a record has ~200 scalars and
    # most recur across records; a pure function of the text, so sharing it between documents is safe
    _known: dict[str, str] = {}

    def resolve(self, kind, value, implicit):  # noqa: D102 - same contract as yaml.resolver.Resolver.resolve
        if kind is yaml.ScalarNode:
            if implicit[0]:
                tag = self._known.get(value)
                if tag is not None:
                    return tag
                tag = _STR_TAG
                for t, regexp in self._by_first.get(value[:1], ()):
                    if regexp.match(value):
                        tag = t
                        break
                if len(value) <= 32 and len(self._known) < 100_000:
                    self._known[value] = tag
                return tag
            return _STR_TAG
        return _SEQ_TAG if kind is yaml.SequenceNode else _MAP_TAG


def _resolvers_by_first_char() -> dict[str, list]:
    table = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _Loader.yaml_implicit_resolvers.items()
    }
    wildcard = table.pop(None, [])
    out = {first: rs + wildcard for first, rs in table.items() if first is not None}
    if wildcard:  # pragma: no cover - PyYAML's safe resolver has no wildcard entries
        raise RuntimeError("unexpected wildcard YAML resolver")
    return out


_RecordLoader._by_first = _resolvers_by_first_char()

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


def unreadable(e: OSError) -> YamlProblem:
    """The problem of a file that exists but cannot be read (permissions, an I/O error)."""
    return YamlProblem("unreadable", f"cannot read file: {e.strerror or e}",
                       hint=_UNREADABLE_HINT.get(type(e), "check that the file can be read"))


def read_text(path: Path, raw: bytes | None = None) -> str:
    """A record file's text, refusing oversized and non-UTF-8 files (``raw``: its bytes, if read)."""
    if raw is None:
        try:
            size = path.stat().st_size
        except OSError as e:
            raise unreadable(e) from None
    else:
        size = len(raw)
    if size > MAX_BYTES:
        raise YamlProblem(
            "too-large",
            f"file is {size / 1e6:.1f} MB; a record may be at most {MAX_BYTES / 1e6:.0f} MB",
            hint="a study record is a few kB: move full texts or data tables out of the record",
        )
    if raw is None:
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise unreadable(e) from None
    nul = raw.find(b"\x00")  # the whole file: a NUL deep inside is as fatal to the YAML reader as one in the first line
    if nul >= 0:
        if nul < 8192:  # within the first block, as a file type check would look: not a text file at all
            raise YamlProblem("encoding", "binary file, not YAML text", hint="records are UTF-8 YAML text files")
        line, col = _byte_position(raw, nul)
        raise YamlProblem("encoding", "a NUL byte (binary zero) in the text; YAML text cannot hold it", line, col,
                          hint="remove it: it often comes from a broken copy, a crashed editor or a corrupt disk")
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


_UNREADABLE_HINT = {
    PermissionError: "the file's permissions do not let kb read it: `chmod a+r FILE`, or ask its owner",
    IsADirectoryError: "this is a folder named like a record file; rename it",
}

# what the YAML reader refuses: C0 controls but tab, newline and CR; DEL; C1 controls but NEL; U+FFFE/U+FFFF
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONTROL_NAMES = {0x00: "NUL", 0x07: "BEL", 0x08: "BS", 0x0b: "VT", 0x0c: "FF", 0x1b: "ESC", 0x7f: "DEL",
                  0x9b: "CSI", 0x9d: "OSC"}


def char_name(ch: str) -> str:
    """'U+001B (ESC)': a character as a message names it."""
    name = _CONTROL_NAMES.get(ord(ch))
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else "")


def _reader_problem(text: str, e: yaml.YAMLError) -> YamlProblem:
    """The YAML reader's refusal of a character (libyaml reports byte offsets, PyYAML characters: the
    offending character is found in the text itself)."""
    m = _NON_PRINTABLE.search(text)
    if m is None:  # pragma: no cover - the reader refused something the pattern allows
        return YamlProblem("encoding", f"YAML cannot read the text: {getattr(e, 'reason', e)}")
    at = m.start()
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    return YamlProblem("encoding", f"control character {char_name(m.group())} in the text; "
                       "YAML text cannot hold it", line, col,
                       hint="remove it: control characters come from copying out of a terminal, a PDF or a word "
                            "processor, and can hide text or rewrite what a terminal shows")


def _mark(node: yaml.Node | None) -> tuple[int, int]:
    if node is None or node.start_mark is None:
        return 1, 1
    return node.start_mark.line + 1, node.start_mark.column + 1


class _General(Exception):
    """The document uses aliases or merge keys: build it with the general walk."""


def _path_to(root: yaml.Node, target: yaml.Node) -> tuple:
    """The data path of ``target`` below ``root`` (for error messages)."""
    stack: list[tuple[yaml.Node, tuple]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, loc = stack.pop()
        if node is target:
            return loc
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k is target:
                    return (*loc, k.value)
                stack.append((v, (*loc, k.value if isinstance(k, yaml.ScalarNode) else "?")))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, (*loc, i)) for i, v in enumerate(node.value))
    return ()


def build_fast(root: yaml.Node, loader: Any) -> Any:
    """Python data for an alias-free document (the common case), checking duplicate keys.

    Raises _General when the document reuses a node (an alias) or merges keys.
    """
    seen: set[int] = set()
    constructors = loader.yaml_constructors
    Scalar, Mapping = yaml.ScalarNode, yaml.MappingNode

    def make(node: yaml.Node) -> Any:
        cls = node.__class__
        if cls is Scalar:
            if node.tag == _STR_TAG:
                return node.value
            ctor = constructors.get(node.tag)
            if ctor is None:
                raise YamlProblem("syntax", f"unsupported YAML tag {node.tag}", *_mark(node),
                                  field=format_loc(_path_to(root, node)),
                                  hint="records hold plain values; remove the !tag")
            return ctor(loader, node)
        nid = id(node)
        if nid in seen:
            raise _General
        seen.add(nid)
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            raise YamlProblem("syntax", f"unsupported YAML tag {node.tag}", *_mark(node),
                              field=format_loc(_path_to(root, node)), hint="records hold plain values; remove the !tag")
        if cls is Mapping:
            out: dict = {}
            for k, v in node.value:
                if k.__class__ is Scalar and k.tag == _STR_TAG:
                    key = k.value
                elif k.__class__ is Scalar:
                    if k.value == "<<":
                        raise _General
                    key = make(k)
                else:
                    raise YamlProblem("syntax", "a mapping key must be a plain value, not a list or mapping",
                                      *_mark(k), field=format_loc(_path_to(root, node)))
                if key in out:
                    first = next(kk for kk, _ in node.value if kk.value == k.value)
                    raise YamlProblem(
                        "duplicate-key",
                        f"duplicate key '{k.value}' (first at line {first.start_mark.line + 1}); "
                        "YAML would silently keep only the last",
                        *_mark(k),
                        hint="merge the two entries into one",
                        field=format_loc(_path_to(root, k)),
                    )
                out[key] = make(v)
            return out
        return [make(v) for v in node.value]

    try:
        return make(root)
    finally:
        # `make` refers to itself through its closure: unbinding it breaks that cycle, so the record's
        # node tree is freed at once instead of waiting for the cyclic garbage collector
        make = None  # noqa: F841


def build(root: yaml.Node, loader: Any) -> Any:
    """Python data for ``root``, rejecting duplicate keys, recursive aliases and alias bombs.

    One iterative pass over the node tree. Plain strings, lists and mappings
    are built here; other scalars (numbers, booleans, null) use PyYAML's own
    safe constructors, so values are exactly what yaml.safe_load gives.
    """
    built: dict[int, Any] = {}
    sizes: dict[int, int] = {}
    constructors = loader.yaml_constructors
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
                out: dict = {}
                merged: list = []
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == "<<" and k.tag.endswith(":merge"):
                        merged.append(v)
                        total += sizes[id(v)]
                        continue
                    total += sizes[id(k)] + sizes[id(v)]
                    key = built[id(k)]
                    try:
                        out[key] = built[id(v)]
                    except TypeError:
                        line, col = _mark(k)
                        raise YamlProblem("syntax", "a mapping key must be a plain value, not a list or mapping",
                                          line, col, field=format_loc(loc)) from None
                for m in merged:  # YAML merge keys: explicit keys win
                    for src in (built[id(m)] if isinstance(built[id(m)], list) else [built[id(m)]]):
                        if not isinstance(src, dict):
                            raise YamlProblem("syntax", "a << merge needs a mapping", *_mark(m))
                        for key, value in src.items():
                            out.setdefault(key, value)
                built[nid] = out
            else:  # sequence
                for v in node.value:
                    total += sizes[id(v)]
                built[nid] = [built[id(v)] for v in node.value]
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
            tag = node.tag
            if tag == _STR_TAG:
                built[nid] = node.value
            else:
                ctor = constructors.get(tag)
                if ctor is None:
                    line, col = _mark(node)
                    raise YamlProblem("syntax", f"unsupported YAML tag {tag}", line, col, field=format_loc(loc),
                                      hint="records hold plain values; remove the !tag")
                built[nid] = ctor(loader, node)
            continue
        if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):  # pragma: no cover
            raise YamlProblem("syntax", f"unexpected YAML node {type(node).__name__}")
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            line, col = _mark(node)
            raise YamlProblem("syntax", f"unsupported YAML tag {node.tag}", line, col, field=format_loc(loc),
                              hint="records hold plain values; remove the !tag")
        on_path.add(nid)
        stack.append((node, loc, True))
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
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
                    stack.append((k, loc, False))
                    stack.append((v, (*loc, k.value), False))
                else:
                    stack.append((k, loc, False))
                    stack.append((v, loc, False))
        else:
            for i, v in enumerate(node.value):
                stack.append((v, (*loc, i), False))
    return built[id(root)]


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
        except yaml.YAMLError as e:  # the reader's refusal of a character (ReaderError), or any other
            if isinstance(e, yaml.reader.ReaderError) or _NON_PRINTABLE.search(text):
                raise _reader_problem(text, e) from None
            raise YamlProblem("syntax", f"YAML error: {e}") from None
        if node is None:
            raise YamlProblem("empty", "file is empty", hint="start from `kb new` to get a valid record")
        try:
            try:
                data = build_fast(node, loader)
            except _General:
                data = build(node, loader)
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


def load_plain(text: str | bytes) -> Any:
    """``text`` as PyYAML's safe loader reads it, without the checks of :func:`parse` (the last of
    duplicate keys wins; dates become dates). For reading files leniently: kb import counts a record
    that does not validate, or even parse as a record, as long as it reads as YAML. Raises YAMLError."""
    return yaml.load(text, Loader=_Loader)


YAMLError = yaml.YAMLError
"""What :func:`load_plain` raises on text that is not YAML."""


def load(path: str | Path, raw: bytes | None = None) -> Loaded:
    return parse(read_text(Path(path), raw))


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


def write_new(path: Path, text: str, *, overwrite: bool = False, fsync: bool = True) -> None:
    """Write ``text`` atomically. Refuses to replace an existing file unless ``overwrite``.

    The text goes to a temporary file in the same folder that is then linked (or, with
    ``overwrite``, renamed) into place, so a reader never sees half a file. ``fsync=False`` leaves
    flushing to the disk to the caller (one ``os.sync()`` after many files)."""
    from .errors import RecordExists

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path, "w", encoding="utf-8", newline="\n", fsync=fsync, overwrite=overwrite,
                          exclusive=True) as fh:
            fh.write(text)
    except FileExistsError:
        raise RecordExists(f"{path} already exists; not overwriting it",
                           hint="choose another id, or edit the existing file") from None
