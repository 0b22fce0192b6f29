"""Property-based fuzzing of everything kb reads from a user (issue 18, the harness).

The invariant, for every reader: a clear KbError (or, for a record or a summary, validation
Problems) or a valid result; never another exception; in bounded time (Hypothesis' deadline) and
memory (inputs stay small; alias expansion is capped and checked below).

Each target runs KB_FUZZ_EXAMPLES examples (default 40: CI). For a longer hunt:

    KB_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz.py -p no:cacheprovider

An example typically takes milliseconds. The time bound is Hypothesis' deadline, KB_FUZZ_DEADLINE
seconds (default 10): far above any example's normal time even on a loaded machine, so it fires
only on a hang or a blow-up (super-linear parsing), never on load.

A failure prints the smallest input Hypothesis found; fix the reader, and add the case to
tests/test_bad_input.py so that it stays fixed.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# everything the examples reach, imported once here (an import inside the first example would count
# against its deadline)
import kb.formats.bibtex  # noqa: E402,F401
import kb.formats.csvfile  # noqa: F401
import kb.formats.medline  # noqa: F401
import kb.formats.pubmed  # noqa: F401
import kb.formats.ris  # noqa: F401
import kb.importer  # noqa: F401
import kb.search  # noqa: F401
import kb.site.studies  # noqa: F401
import kb.synthesis  # noqa: F401
import kb.terminal  # noqa: F401
from kb.errors import KbError

from .conftest import ROOT

EXAMPLES = int(os.environ.get("KB_FUZZ_EXAMPLES", "40"))
DEADLINE_MS = float(os.environ.get("KB_FUZZ_DEADLINE", "10")) * 1000
FUZZ = settings(max_examples=EXAMPLES, deadline=DEADLINE_MS, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
MEMORY_LIMIT = 64 << 20  # bytes of Python allocations one example may peak at


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder for the examples' files (one file per target, rewritten by each example)."""
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def vocab():
    from kb.vocab import load_vocabulary

    return load_vocabulary()


def bounded_memory(fn, *args):
    """``fn(*args)``, failing when its Python allocations peak above MEMORY_LIMIT."""
    tracemalloc.start()
    try:
        return fn(*args)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MEMORY_LIMIT, f"peaked at {peak / 1e6:.0f} MB"


# -- building blocks -------------------------------------------------------------------------------

WORDS = ["ketamine", "depression", "ptsd", "response", "remission", "saline", "midazolam", "rct", "iv", "0.5",
         "2013", "-1", "1e309", "nan", ".inf", "~", "null", "true", "no", "yes", "0x1F", "0o17", "2024-13-01",
         "2020-02-30", "12:30:00", "a b", "Murrough JW", "10.1176/appi.ajp.2013.13030392", "NCT01627782",
         "https://pubmed.ncbi.nlm.nih.gov/24740528/", "http://1.2.3.4/x", "", " ", "é", "∞", "😀", "\u202e"]
ODD = ["\\e", "\\x1b[31m", "\\x9b", "\\0", "\\u2028", "\\N", "\\", "'", '"', "#", "&a", "*a", "!!str", "!!python/object",
       "<<", "{", "}", "[", "]", ",", ":", "- ", "? ", "|", ">", "%YAML 1.1", "---", "...", "\t", "\r", "\x85",
       "\x1b", "\x00", "\ufeff", "{analysis: x}", "{study: murrough-2013}", "{absent: k}"]


def scalars() -> st.SearchStrategy[str]:
    """A YAML scalar as a reviewer (or a careless one) might write it."""
    word = st.sampled_from(WORDS)
    return st.one_of(
        word,
        st.integers(-10**20, 10**20).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.lists(st.one_of(word, st.sampled_from(ODD)), max_size=6).map(" ".join),
        st.lists(st.one_of(word, st.sampled_from(ODD)), max_size=6).map(lambda p: '"' + " ".join(p) + '"'),
        st.lists(word, max_size=5).map(lambda p: "[" + ", ".join(p) + "]"),
        st.text(max_size=30),
    )


def yamlish(keys: list[str], depth: int = 3) -> st.SearchStrategy[str]:
    """YAML-ish text: nested mappings and lists with ``keys`` (and strangers), anchors, aliases,
    odd scalars and odd lines."""
    key = st.one_of(st.sampled_from(keys), st.sampled_from(ODD), st.text(max_size=8))

    def block(indent: int, level: int) -> st.SearchStrategy[list[str]]:
        pad = " " * indent
        line = st.one_of(
            st.tuples(key, scalars()).map(lambda kv: f"{pad}{kv[0]}: {kv[1]}"),
            scalars().map(lambda v: f"{pad}- {v}"),
            st.sampled_from(ODD).map(lambda o: pad + o),
            st.tuples(key, st.sampled_from(["&a", "*a", "&b [*a, *a, *a]", "!!binary eHl6", "{a: *a}"]))
              .map(lambda kv: f"{pad}{kv[0]}: {kv[1]}"),
        )
        if level <= 0:
            return st.lists(line, max_size=8)
        nested = st.tuples(key, block(indent + 2, level - 1)).map(lambda kb: [f"{pad}{kb[0]}:", *kb[1]])
        listed = block(indent + 2, level - 1).map(lambda b: [f"{pad}-", *b])
        return st.lists(st.one_of(line.map(lambda x: [x]), nested, listed), max_size=8).map(
            lambda groups: [x for g in groups for x in g])

    return block(0, depth).map(lambda lines: "\n".join(lines) + "\n")


def mutated(text: str) -> st.SearchStrategy[str]:
    """``text`` with a few random edits: a slice cut, text inserted, a line doubled or moved."""
    lines = text.splitlines(keepends=True)

    @st.composite
    def edit(draw) -> str:
        out = list(lines)
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["cut", "insert", "double", "swap", *["replace"] * 6]))
            if not out:
                break
            i = draw(st.integers(0, len(out) - 1))
            if kind == "cut":
                del out[i:i + draw(st.integers(1, 5))]
            elif kind == "insert":
                out.insert(i, draw(st.one_of(scalars(), st.sampled_from(ODD))) + "\n")
            elif kind == "double":
                out.insert(i, out[i])
            elif kind == "swap":
                j = draw(st.integers(0, len(out) - 1))
                out[i], out[j] = out[j], out[i]
            else:  # a value replaced: the YAML stays readable, the record meets the schema's checks
                head, sep, _ = out[i].partition(": ")
                if sep:
                    out[i] = f"{head}: {draw(scalars())}\n"
        return "".join(out)

    return edit()


def _bundled(name: str) -> str:
    return (ROOT / "studies" / name).read_text(encoding="utf-8")


RECORD_SAMPLES = [_bundled(n) for n in ("murrough-2015.yaml", "lii-2023.yaml", "feder-2014.yaml",
                                        "parsaik-2015.yaml", "singh-2016.yaml")]


# -- the record loader ------------------------------------------------------------------------------


def _check_record(path: Path, vocab) -> None:
    """What every command does with a record file: load, validate, and for a valid record, the text of
    kb show and the site's digest and study page."""
    from kb.site.studies import digest
    from kb.validate import check_file

    res = check_file(path, vocab, "studies/x-2020.yaml")
    for p in res.problems:
        assert p.line >= 0 and p.column >= 0 and p.message
    if res.study is not None and not any(p.severity == "error" for p in res.problems):
        from kb.config import KnowledgeBase
        from kb.terminal import as_text

        kb = KnowledgeBase(root=path.parent, vocab=vocab)
        as_text(kb, res.study)
        digest(res.study, "", kb.protocol, vocab)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_fuzz_record_loader_bytes(scratch, vocab, data):
    path = scratch / "x-2020.yaml"
    path.write_bytes(data)
    bounded_memory(_check_record, path, vocab)


@FUZZ
@given(text=yamlish(["id", "title", "authors", "year", "design", "conditions", "outcomes", "data", "arms",
                     "events", "total", "sources", "status", "added", "intervention", "related", "retraction"]))
def test_fuzz_record_loader_yamlish(scratch, vocab, text):
    path = scratch / "x-2020.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    bounded_memory(_check_record, path, vocab)


@FUZZ
@given(text=st.sampled_from(RECORD_SAMPLES).flatmap(mutated))
def test_fuzz_record_loader_mutated_records(scratch, vocab, text):
    import re

    rid = re.search(r"^id: (\S+)", text, re.M)  # named after its id: the record can be valid
    path = scratch / f"{rid.group(1) if rid and '/' not in rid.group(1) else 'x-2020'}.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    bounded_memory(_check_record, path, vocab)


def test_alias_bombs_stay_within_the_memory_bound(scratch, vocab):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    path = scratch / "x-2020.yaml"
    path.write_text(bomb, encoding="utf-8")
    bounded_memory(_check_record, path, vocab)


# -- the query parser ---------------------------------------------------------------------------------

QUERY_TOKENS = ["ketamine", "depression", "ptsd", "AND", "OR", "NOT", "and", "or", "not", "-", "(", ")", '"', "'",
                "condition:", "condition:ptsd", "outcome:response", "design:rct", "year:2015..2024", "year:>=2018",
                "year:..", "n:>=50", "n:abc", "author:feder", "title:ketamine", "route:iv", "drug:esketamine",
                "status:draft", "nosuch:field", ":", "*", "?", "\\", "TRD", "SI", "is", "how", "vs", "😀", "\x00",
                "\x1b[31m", "é", "∞", "1e999", "-1"]


@st.composite
def queries(draw) -> str:
    parts = draw(st.lists(st.one_of(st.sampled_from(QUERY_TOKENS), st.text(max_size=6)), max_size=14))
    joins = draw(st.sampled_from([" ", "", "  "]))
    return joins.join(parts)


@FUZZ
@given(q=st.one_of(queries(), st.text(max_size=80)))
def test_fuzz_query_parser(vocab, q):
    from kb.search import SearchRequest, compile_query, parse_request, request_tree

    req = SearchRequest(query=q)
    try:
        node = parse_request(req, vocab)
        tree = request_tree(req, node, vocab)
        compile_query(tree, vocab, "all")
        compile_query(tree, vocab, "any")
    except KbError as e:
        assert e.message and e.exit_code == 2


@pytest.fixture(scope="module")
def small_kb(tmp_path_factory):
    from kb.config import open_kb

    root = tmp_path_factory.mktemp("fuzzkb")
    (root / "studies").mkdir()
    for name in ("murrough-2015", "lii-2023", "feder-2014", "parsaik-2015", "singh-2016", "su-2023"):
        shutil.copy(ROOT / "studies" / f"{name}.yaml", root / "studies")
    (root / "kb.yaml").write_text("title: Fuzz\n", encoding="utf-8")
    kb = open_kb(root)
    from kb.search import SearchRequest, search

    search(kb, SearchRequest(query="ketamine"))  # the index, built once
    return kb


@FUZZ
@given(q=queries(), sort=st.sampled_from(["relevance", "year", "n", "evidence"]),
       match=st.sampled_from(["auto", "all", "any"]))
def test_fuzz_search(small_kb, q, sort, match):
    from kb.search import SearchRequest, search

    try:
        result = search(small_kb, SearchRequest(query=q, sort=sort, match=match, limit=5))
    except KbError as e:
        assert e.message
        return
    assert result.total >= len(result.hits)


# -- the import formats -------------------------------------------------------------------------------

NOISE = st.sampled_from(["", " ", "1.", "\x1b]0;x\x07", "\x00", "ER  - ", "TY  - ", "PMID- 1", "@", "{", "<"])


def _tagged(start: str, tags: list[str], sep: str, end: str | None) -> st.SearchStrategy[str]:
    """Records of a tagged format: mostly well formed (a start tag, tags with odd values, continuation
    lines, an end), with a stray or missing line now and then."""
    line = st.one_of(st.tuples(st.sampled_from(tags), scalars()).map(lambda tv: f"{tv[0]}{sep}{tv[1]}"),
                     scalars().map(lambda v: "      " + v), NOISE, st.text(max_size=20))

    @st.composite
    def records(draw) -> str:
        out = []
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.integers(0, 9)):  # nine in ten records start properly
                out.append(f"{start}{draw(scalars())}")
            out += draw(st.lists(line, max_size=12))
            if end is not None and draw(st.integers(0, 9)):
                out.append(end)
            out.append("")
        return "\n".join(out)

    return records()


RIS = _tagged("TY  - ", ["TI", "T1", "AU", "A1", "PY", "Y1", "DA", "DO", "UR", "KW", "N1", "AB", "JF", "T2",
                         "VL", "IS", "SP", "EP", "AN", "DB", "C2", "ST", "L1", "M3"], "  - ", "ER  - ")
MEDLINE = _tagged("PMID- ", ["TI  ", "AB  ", "AU  ", "FAU ", "DP  ", "LID ", "AID ", "PT  ", "JT  ", "TA  ", "VI  ",
                             "IP  ", "PG  ", "MH  ", "OT  ", "PMC ", "SI  ", "CN  ", "CON ", "CIN ", "RIN "],
                  "- ", None)


@st.composite
def bibtex(draw) -> str:
    out = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["article", "inproceedings", "misc", "string", "comment", "preamble", "ARTICLE"]))
        fields = draw(st.lists(st.tuples(st.sampled_from(["title", "author", "year", "doi", "journal", "pages",
                                                          "keywords", "note", "url", "pmid", "abstract", "x"]),
                                         scalars(), st.sampled_from(["{}", '""', "", "{{}}"])), max_size=8))
        body = ",\n".join(f"  {k} = {q[:len(q) // 2]}{v}{q[len(q) // 2:]}" for k, v, q in fields)
        key = draw(st.sampled_from(["key1", "", "a b", "murrough2015", "{"]))
        close = draw(st.sampled_from(["}", "", "}}", ")"]))
        out.append(f"@{kind}{{{key},\n{body}\n{close}")
    return "\n\n".join(out)


@st.composite
def csv_text(draw) -> str:
    delim = draw(st.sampled_from([",", ";", "\t"]))
    header = draw(st.lists(st.sampled_from(["Title", "title", "Authors", "Year", "DOI", "PubMed ID", "Source title",
                                            "Page start", "Page end", "Abstract", "Author Keywords", "x", ""]),
                           min_size=1, max_size=8))
    rows = draw(st.lists(st.lists(scalars(), max_size=10), max_size=8))

    def cell(v: str) -> str:
        return f'"{v}"' if draw(st.booleans()) else v

    return "\n".join([delim.join(header)] + [delim.join(cell(v) for v in row) for row in rows]) + "\n"


@st.composite
def pubmed_xml(draw) -> str:
    """PubMed XML: articles in PubMed's own structure, with odd text, entities and attributes in them,
    and now and then a stray or unclosed element, a DOCTYPE with entities, or an external entity."""
    odd = st.sampled_from(["&#x1b;", "&#0;", "&nosuch;", "&e;", "<i>x</i>", "<", "]]>", "&#x85;", "\x1b"])
    plain = st.sampled_from(["", "2014", "Jun", "10.1001/x", "Feder", "A", "&amp;", "&lt;", "é", " ", "ketamine",
                             "Randomized Controlled Trial", "Retracted Publication", "2013 Spring", "12345678"])
    corrupt = draw(st.integers(0, 3)) == 0  # one document in four holds odd text and entities somewhere

    def text() -> str:
        return draw(st.lists(st.one_of(plain, odd) if corrupt else plain, max_size=4).map("".join))

    def el(tag: str, inner: str, attrs: str = "") -> str:
        if corrupt and draw(st.integers(0, 49)) == 0:
            return draw(st.sampled_from([f"<{tag}{attrs}>{inner}", f"{inner}</{tag}>", f"<{tag}/>", f"<{tag}>{inner}</x>"]))
        return f"<{tag}{attrs}>{inner}</{tag}>"

    def article() -> str:
        authors = "".join(el("Author", el("LastName", text()) + el("ForeName", text()) + el("Initials", text()))
                          for _ in range(draw(st.integers(0, 3))))
        ids = "".join(el("ArticleId", text(), draw(st.sampled_from([' IdType="doi"', ' IdType="pubmed"',
                                                                     ' IdType="pmc"', ""])))
                      for _ in range(draw(st.integers(0, 2))))
        types = "".join(el("PublicationType", text()) for _ in range(draw(st.integers(0, 2))))
        date = el("PubDate", draw(st.sampled_from([el("Year", text()), el("MedlineDate", text()), ""])))
        art = el("Article", el("Journal", el("Title", text()) + el("JournalIssue", el("Volume", text()) + date))
                 + el("ArticleTitle", text()) + el("Abstract", el("AbstractText", text()))
                 + el("AuthorList", authors) + el("PublicationTypeList", types)
                 + el("ELocationID", text(), ' EIdType="doi"'))
        corrections = el("CommentsCorrectionsList", el("CommentsCorrections", el("RefSource", text()),
                                                        ' RefType="RetractionIn"')) if draw(st.booleans()) else ""
        cit = el("MedlineCitation", el("PMID", text()) + art + corrections)
        return el("PubmedArticle", cit + el("PubmedData", el("ArticleIdList", ids)))

    root = draw(st.sampled_from(["PubmedArticleSet", "MedlineCitationSet"]))
    prolog = draw(st.sampled_from(['<?xml version="1.0"?>\n', "", '<!DOCTYPE PubmedArticleSet>\n',
                                   '<!DOCTYPE x [<!ENTITY e "eeeeeeeeee">]>\n',
                                   '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n',
                                   '<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY e "&a;&a;&a;&a;&a;&a;">]>\n']))
    body = "".join(article() for _ in range(draw(st.integers(0, 3))))
    return f"{prolog}<{root}>{body}</{root}>\n"


FORMAT_TEXT = {"ris": RIS, "medline": MEDLINE, "bibtex": bibtex(), "csv": csv_text(), "pubmed-xml": pubmed_xml()}
SUFFIX = {"ris": ".ris", "medline": ".nbib", "bibtex": ".bib", "csv": ".csv", "pubmed-xml": ".xml"}


def _read_all(path: Path, fmt: str | None) -> None:
    """formats.read over the file: references and failures, or a ParseError for the whole file."""
    from kb import formats
    from kb.biblio import Failure, ParseError, Reference

    try:
        for item in formats.read(path, fmt):
            assert isinstance(item, (Reference, Failure))
            if isinstance(item, Failure):
                assert item.reason and not item.reason.endswith(": "), item.reason
    except ParseError as e:
        assert e.message


@pytest.fixture(scope="module")
def empty_kb(tmp_path_factory):
    from kb.config import open_kb

    root = tmp_path_factory.mktemp("importkb")
    (root / "studies").mkdir()
    for name in ("murrough-2015", "feder-2014"):  # duplicates to be found
        shutil.copy(ROOT / "studies" / f"{name}.yaml", root / "studies")
    (root / "kb.yaml").write_text("title: Fuzz\n", encoding="utf-8")
    return open_kb(root)


def _import(kb, path: Path, fmt: str | None) -> None:
    """kb import --dry-run: the whole pipeline (detection, parsing, duplicates, draft records)."""
    from kb.importer import import_files, text_report

    try:
        report = import_files(kb, [path], fmt=fmt, dry_run=True)
    except KbError as e:
        assert e.message
        return
    text_report(report)
    report.as_dict()
    for d in report.drafts:  # every draft an import would write passes kb validate's loader
        from kb import yamlio

        yamlio.parse(d.text)


@pytest.mark.parametrize("fmt", sorted(FORMAT_TEXT))
def test_fuzz_import_formats(scratch, empty_kb, fmt):
    @FUZZ
    @given(text=FORMAT_TEXT[fmt], zipped=st.booleans(), forced=st.booleans())
    def check(text, zipped, forced):
        data = text.encode("utf-8", "surrogatepass")
        path = scratch / f"export{SUFFIX[fmt]}{'.gz' if zipped else ''}"
        path.write_bytes(gzip.compress(data) if zipped else data)
        bounded_memory(_read_all, path, fmt if forced else None)
        _import(empty_kb, path, fmt if forced else None)

    check()


@FUZZ
@given(data=st.binary(max_size=4096), fmt=st.sampled_from([None, *sorted(FORMAT_TEXT)]), zipped=st.booleans())
def test_fuzz_import_bytes(scratch, empty_kb, data, fmt, zipped):
    path = scratch / ("export.bin.gz" if zipped else "export.bin")
    path.write_bytes(gzip.compress(data) if zipped else data)
    bounded_memory(_read_all, path, fmt)
    _import(empty_kb, path, fmt)


# -- kb.yaml and summaries/<condition>.yaml -----------------------------------------------------------

KB_YAML_KEYS = ["title", "description", "base_url", "vocabulary", "language", "synthesis", "eligibility",
                "windows", "comparator_classes", "instrument_preference", "assumed_risk", "id", "label",
                "from_days", "to_days", "phrase", "comparators", "condition", "design", "terms", "synonyms",
                "question", "population", "response", "inert-placebo", "saline"]


@FUZZ
@given(text=yamlish(KB_YAML_KEYS, depth=4))
def test_fuzz_kb_yaml(scratch, text):
    from kb.config import open_kb

    root = scratch / "kbyaml"
    (root / "studies").mkdir(parents=True, exist_ok=True)
    (root / "kb.yaml").write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        kb = bounded_memory(open_kb, root)
    except KbError as e:
        assert e.message
        return
    assert isinstance(kb.title, str) and isinstance(kb.language, str)
    assert kb.base_url is None or isinstance(kb.base_url, str)


SUMMARY_KEYS = ["condition", "bottom_line", "details", "claims", "claim", "verdict", "answer", "absent", "match",
                "conditions", "designs", "routes", "topics", "subtype_words", "searched", "where", "query", "date",
                "found", "url", "outcomes", "response", "certainty", "justification", "note", "practice", "updated"]
SUMMARY_SAMPLES = [(ROOT / "summaries" / n).read_text(encoding="utf-8")
                   for n in sorted(os.listdir(ROOT / "summaries"))[:3]] if (ROOT / "summaries").is_dir() else []


@pytest.fixture(scope="module")
def small_studies(small_kb):
    from kb.load import load_studies

    return load_studies(small_kb).studies


@FUZZ
@given(text=st.one_of(yamlish(SUMMARY_KEYS, depth=4),
                      *([st.sampled_from(SUMMARY_SAMPLES).flatmap(mutated)] if SUMMARY_SAMPLES else [])))
def test_fuzz_summary_files(scratch, vocab, small_kb, small_studies, text):
    """kb validate's check of a summary file: its schema and every placeholder, against the analyses."""
    from kb.validate import check_summaries

    folder = scratch / "summaries"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "ptsd.yaml").write_bytes(text.encode("utf-8", "surrogatepass"))
    studies = small_studies
    n, problems = bounded_memory(check_summaries, folder, vocab, scratch, studies, small_kb.protocol)
    assert n == 1
    for p in problems:
        assert p.message and p.file


# -- the numbers: pooling whatever numbers valid records hold ------------------------------------------

NUMBER_KEYS = r"(events|total|mean|sd|n|value|ci_low|ci_high|n_randomized|n_analysed)"
NUMBERS = st.one_of(st.sampled_from([0, 1, 2, 0.5, 1e-300, 1e300, 10**12, -1, -0.0, 50, 100]),
                    st.integers(0, 500), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
POOLED_SAMPLES = {n: _bundled(f"{n}.yaml") for n in ("lii-2023", "su-2023", "singh-2016", "berman-2000")}


@st.composite
def numbered_copies(draw) -> list[tuple[str, str]]:
    """(id, text) of 1 to 14 copies of pooled trials, each with some of its numbers replaced: zero,
    equal arms, huge or tiny values, negatives (the schema refuses some), the same numbers again."""
    import re

    out = []
    same = draw(st.booleans())  # identical copies (Egger's test on no variation) or each its own numbers
    numbers = None
    for i in range(draw(st.one_of(st.integers(1, 4), st.integers(10, 14)))):  # 10 or more: Egger's test runs
        name = draw(st.sampled_from(sorted(POOLED_SAMPLES)))
        if numbers is None or not same:
            # most numbers kept (so that most copies stay valid), some replaced
            numbers = draw(st.lists(st.one_of(st.none(), st.none(), st.none(), NUMBERS), min_size=40, max_size=40))
        it = iter(numbers)

        def swap(m, it=it):
            new = next(it, None)
            return m.group(0) if new is None else f"{m.group(1)}: {new}"

        text = re.sub(rf"^(\s*{NUMBER_KEYS}): [-0-9.e+]+$", swap, POOLED_SAMPLES[name], flags=re.M)
        rid = f"{name.rsplit('-', 1)[0]}-{name.rsplit('-', 1)[1]}{chr(97 + i // 26)}{chr(97 + i % 26)}"
        text = re.sub(r"^id: .*$", f"id: {rid}", text, count=1, flags=re.M)
        text = re.sub(r"^(doi|pmid|pmcid): .*\n", "", text, flags=re.M)
        text = re.sub(r"^(registrations|related):\n((- |  ).*\n)+", "", text, flags=re.M)
        out.append((rid, text))
    return out


@FUZZ
@given(copies=numbered_copies())
def test_fuzz_pooling_any_valid_numbers(scratch, vocab, copies):
    """Every analysis kb meta and kb build make, over valid records holding any numbers the schema
    lets through: a result or a KbError, never a crash (Egger's test on identical data was one)."""
    from kb import synthesis
    from kb.protocol import DEFAULT
    from kb.validate import check_file

    folder = scratch / "pooled"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    studies = []
    for rid, text in copies:
        path = folder / f"{rid}.yaml"
        path.write_text(text, encoding="utf-8")
        res = check_file(path, vocab)
        if res.study is not None and not any(p.severity == "error" for p in res.problems):
            studies.append(res.study)
    try:
        analyses = synthesis.analyse_studies(studies, DEFAULT, vocab)
    except KbError as e:
        assert e.message
        return
    for a in analyses.values():
        if a.get("ok") and a["result"].get("egger"):
            assert 0 <= a["result"]["egger"]["p"] <= 1


# -- screening (issue 19): the screening set, the decision lines and the search log ----------------


@pytest.fixture(scope="module")
def screening_kb(tmp_path_factory):
    from kb.config import open_kb

    root = tmp_path_factory.mktemp("screenkb")
    (root / "studies").mkdir()
    return open_kb(root)


DECISION_LINE = st.fixed_dictionaries(
    {"key": st.one_of(st.sampled_from(["pmid:1", "pmid:2", "doi:10.1/x"]), st.text(max_size=6)),
     "stage": st.one_of(st.sampled_from(["title-abstract", "full-text"]), st.text(max_size=6)),
     "decision": st.one_of(st.sampled_from(["include", "exclude", "maybe", "undo"]), st.text(max_size=6)),
     "time": st.one_of(st.just("2026-12-06T00:00:00Z"), st.integers()),
     "reviewer": st.one_of(st.sampled_from(["Ann", "Bob", "ann", "Cy"]), st.text(max_size=6)),
     },
    optional={"reason": st.one_of(st.text(max_size=10), st.integers(), st.none()), "resolves": st.booleans()})


@FUZZ
@given(lines=st.lists(st.one_of(DECISION_LINE.map(__import__("json").dumps), st.text(max_size=60)), max_size=30),
       refs=st.lists(st.one_of(st.binary(max_size=80), st.just(b'{"key":"pmid:1","title":"A"}'),
                               st.just(b'{"key":"pmid:2"}')), max_size=6))
def test_fuzz_screening_files(screening_kb, lines, refs):
    """Any decision lines and screening-set lines: a KbError or a state from which conflicts, agreement
    and the PRISMA counts are computed; never another exception."""
    from kb.screening import decide, prisma, store

    kb = screening_kb
    store.decisions_dir(kb).mkdir(parents=True, exist_ok=True)
    store.references_dir(kb).mkdir(parents=True, exist_ok=True)
    (store.decisions_dir(kb) / "ann.jsonl").write_bytes("\n".join(lines).encode("utf-8", "replace"))
    (store.references_dir(kb) / "001-search.jsonl").write_bytes(b"\n".join(refs))
    (store.screening_dir(kb) / "unblinded.yaml").write_text("by: Ann\n")
    try:
        state = decide.load_state(kb)
        decide.conflicts(kb, state)
        decide.agreement(kb, state)
        prisma.prisma(kb)
    except KbError:
        pass


@FUZZ
@given(text=yamlish(["searches", "other_methods", "id", "found", "new", "duplicates", "failed", "date_searched",
                     "database", "register", "websites", "citation_searching"], depth=4))
def test_fuzz_search_log(screening_kb, text):
    from kb.screening import prisma, store

    store.log_path(screening_kb).write_text(text, encoding="utf-8", errors="replace")
    try:
        store.read_log(screening_kb)
        prisma.text(prisma.prisma(screening_kb))
    except KbError:
        pass
