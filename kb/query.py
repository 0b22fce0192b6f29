"""The query language of `kb search`, parsed to a small engine-neutral tree.

    free text, "quoted phrases", AND / OR / NOT (or -word), parentheses,
    field filters: condition:ptsd outcome:remission design:rct route:iv
                   year:2015..2024  year:>=2018  n:>=50  author:feder  title:ketamine
                   status:draft  status:any (every status; drafts are left out otherwise)

Field values from a vocabulary accept its synonyms (condition:PTSD, drug:Spravato)
and several values separated by commas (condition:ptsd,anxiety). The index
module turns the tree into the search engine's own query objects.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from .errors import BadRequest
from .vocab import Vocabulary

# filter field -> vocabulary category (None: free value)
VOCAB_FIELDS = {
    "condition": "condition", "outcome": "outcome", "design": "design", "route": "route", "drug": "drug",
    "instrument": "instrument", "topic": "topic", "comparator": "comparator", "status": "status",
}
STATUS_ANY = "any"
"""status:any (or --status any) selects records of every status, drafts included."""
RANGE_FIELDS = ("year", "n")
TEXT_FIELDS = ("author", "title", "id", "doi", "pmid")
FIELDS = (*VOCAB_FIELDS, *RANGE_FIELDS, *TEXT_FIELDS)


@dataclass
class Text:
    text: str
    phrase: bool = False


@dataclass
class Filter:
    field: str
    values: list[str]


@dataclass
class Range:
    field: str
    low: int | None
    high: int | None


@dataclass
class Not:
    node: object


@dataclass
class Bool:
    op: str  # "and", "or", or "implicit" (adjacent terms; the match mode decides)
    items: list = field(default_factory=list)


Node = Text | Filter | Range | Not | Bool

_TOKEN = re.compile(r'\s+|\(|\)|"[^"]*"|[^\s()"]+(?:"[^"]*")?|"')


def _tokens(query: str) -> list[str]:
    if query.count('"') % 2:
        raise BadRequest(f"unbalanced quote in query: {query}", hint='close the phrase, e.g. "suicidal ideation"')
    out = []
    for tok in _TOKEN.findall(query):
        if tok.strip():
            out.append(tok)
    return out


def parse_range(field_name: str, value: str) -> Range:
    """'2015..2024', '2015..', '..2020', '>=50', '<2020', '2018' -> Range."""
    v = value.strip()
    bad = BadRequest(f"bad range '{field_name}:{value}'",
                     hint=f"write {field_name}:2015..2024, {field_name}:>=2015 or {field_name}:2018" if field_name == "year"
                     else f"write {field_name}:>=50, {field_name}:20..100 or {field_name}:<=30")
    m = re.fullmatch(r"(\d+)?\.\.(\d+)?", v)
    if m and (m.group(1) or m.group(2)):
        low = int(m.group(1)) if m.group(1) else None
        high = int(m.group(2)) if m.group(2) else None
    elif (m := re.fullmatch(r"(>=|<=|>|<)(\d+)", v)):
        op, num = m.group(1), int(m.group(2))
        low, high = {">=": (num, None), ">": (num + 1, None), "<=": (None, num), "<": (None, num - 1)}[op]
    elif re.fullmatch(r"\d+", v):
        low = high = int(v)
    else:
        raise bad
    if low is not None and high is not None and low > high:
        raise BadRequest(f"empty range '{field_name}:{value}': {low} is above {high}")
    return Range(field_name, low, high)


def filter_node(name: str, raw: str, vocab: Vocabulary) -> Node:
    """The node for ``name:raw`` (a range, vocabulary terms with synonyms resolved, or a value)."""
    value = raw[1:-1] if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2 else raw
    if not value:
        raise BadRequest(f"'{name}:' needs a value", hint=f"e.g. {name}:{_example(name)}")
    if name in RANGE_FIELDS:
        return parse_range(name, value)
    if name in VOCAB_FIELDS:
        cat = VOCAB_FIELDS[name]
        terms = []
        for part in [p.strip() for p in value.split(",") if p.strip()]:
            if name == "status" and part.lower() == STATUS_ANY:
                terms.append(STATUS_ANY)
                continue
            term = vocab.canonical(cat, part)
            if term is None:
                sug = vocab.suggest(cat, part)
                values = vocab.terms(cat) + ([STATUS_ANY] if name == "status" else [])
                raise BadRequest(f"unknown {name} '{part}'" + (f"; did you mean '{sug}'?" if sug else ""),
                                 hint=f"{name} values: " + ", ".join(values))
            terms.append(term)
            # a deprecated term (suicidal-ideation) stands for the terms that replace it
            terms.extend(t for t in vocab.replaced_by(cat, term) if t not in terms)
        return Filter(name, terms)
    return Filter(name, [value])


def _example(name: str) -> str:
    return {"year": "2015..2024", "n": ">=50", "author": "feder", "title": "ketamine", "id": "feder-2014",
            "doi": "10.1001/jamapsychiatry.2014.62", "pmid": "24740528"}.get(name, "ptsd")


class _Parser:
    def __init__(self, tokens: list[str], vocab: Vocabulary, query: str):
        self.toks, self.i, self.vocab, self.query = tokens, 0, vocab, query

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.or_expr()
        if self.peek() is not None:
            raise BadRequest(f"unexpected '{self.peek()}' in query: {self.query}", hint="check the parentheses")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.peek() == "OR":
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Bool("or", items)

    def and_expr(self) -> Node:
        items: list = []
        explicit = False
        while (tok := self.peek()) is not None and tok not in ("OR", ")"):
            if tok == "AND":
                self.take()
                explicit = True
                continue
            items.append(self.unary())
        if not items:
            raise BadRequest(f"empty expression in query: {self.query}",
                             hint="AND, OR and NOT need a term on each side")
        if len(items) == 1:
            return items[0]
        return Bool("and" if explicit else "implicit", items)

    def unary(self) -> Node:
        tok = self.peek()
        if tok == "NOT":
            self.take()
            if self.peek() in (None, ")", "OR", "AND"):
                raise BadRequest(f"NOT needs a term after it: {self.query}")
            return Not(self.unary())
        if tok and tok.startswith("-") and len(tok) > 1:
            self.toks[self.i] = tok[1:]
            return Not(self.atom())
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok == "(":
            node = self.or_expr()
            if self.peek() != ")":
                raise BadRequest(f"unbalanced parenthesis in query: {self.query}")
            self.take()
            return node
        if tok == ")":
            raise BadRequest(f"unbalanced parenthesis in query: {self.query}")
        if tok.startswith('"'):
            text = tok[1:-1].strip()
            if not text:
                raise BadRequest("empty phrase \"\" in query")
            return Text(text, phrase=True)
        m = re.fullmatch(r"([A-Za-z_]+):(.*)", tok)
        if m:
            name = m.group(1).lower()
            if name not in FIELDS:
                close = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.6)
                raise BadRequest(f"unknown field '{m.group(1)}'" + (f"; did you mean '{close[0]}'?" if close else ""),
                                 hint="fields: " + ", ".join(FIELDS))
            return filter_node(name, m.group(2), self.vocab)
        return Text(tok)


def parse_query(query: str, vocab: Vocabulary) -> Node | None:
    """The tree for ``query``; None for an empty query (filters only)."""
    if not query.strip():
        return None
    return _Parser(_tokens(query), vocab, query).parse()


def free_text(node: Node | None) -> list[Text]:
    """The free-text terms and phrases of a tree, outside NOT (for highlighting and suggestions)."""
    out: list[Text] = []
    if isinstance(node, Text):
        out.append(node)
    elif isinstance(node, Bool):
        for item in node.items:
            out.extend(free_text(item))
    return out


def names_status(node: Node | None) -> bool:
    """Whether a tree filters on status anywhere (then drafts are not left out by default)."""
    if isinstance(node, Filter):
        return node.field == "status"
    if isinstance(node, Not):
        return names_status(node.node)
    if isinstance(node, Bool):
        return any(names_status(i) for i in node.items)
    return False
