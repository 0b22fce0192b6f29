"""BibTeX exports (Scopus, Web of Science, Zotero, any .bib file).

The text is cut into entries at the lines that start with ``@type{`` and each entry is parsed by
bibtexparser 2 on its own. On the 3 MB Scopus export (1115 entries) bibtexparser takes the same time
either way (0.20 s entry by entry, 0.21 s for the whole string), but entry by entry keeps memory flat
(reading the file through kb peaks at 4 MB, bibtexparser's whole-string parse alone at 19 MB), ties a
broken entry to its own line, and reads entries that share a citation key: that export has two such
pairs (Krüger199782, Menke1992141), which a whole-string parse turns into failed blocks.

Values are decoded from LaTeX (``{\\"u}`` -> ü, ``\\&`` -> &) as bibtexparser's
``LatexDecodingMiddleware`` does it, with pylatexenc, but only where a value holds LaTeX, and the
common escapes are decoded directly: the middleware on every field made that file take 9.5 s.
"""

from __future__ import annotations

import logging
import re
from typing import BinaryIO, Iterable, Iterator

import bibtexparser
from bibtexparser.library import Library
from bibtexparser.middlewares import RemoveEnclosingMiddleware, ResolveStringReferencesMiddleware
from bibtexparser.middlewares.names import parse_single_name_into_parts, split_multiple_persons_names
from bibtexparser.model import (DuplicateBlockKeyBlock, DuplicateFieldKeyBlock, Entry, ImplicitComment,
                                ParsingFailedBlock, String)
from pylatexenc import latex2text

from ..biblio import (Failure, Reference, authors_from, clean, clean_title, doi, ids_from_urls, keyword_list,
                      pages, pmcid, pmid, registrations_in, year)
from . import text_stream

_ENTRY_START = re.compile(r"^\s*@\s*([A-Za-z]+)\s*[{(]")
_NOT_RECORDS = {"comment", "string", "preamble"}
_FIELD_LINE = re.compile(r"^\s*[A-Za-z][\w-]*\s*=\s*[{\"\d]", re.M)
# A value is LaTeX when it holds a backslash or a brace (Web of Science's {{...}} values all do; Scopus
# writes plain Unicode). The LaTeX that exports use most is decoded here directly, exactly as pylatexenc
# would decode it (a test checks that on the Web of Science file), so that most values never reach
# pylatexenc: it takes 15-25 ms for a long abstract.
_SIMPLE_TEXT = {"\\&": "&", "\\%": "%", "\\$": "$", "\\#": "#", "\\_": "_", "\\^{}": "^", "{[}": "[", "{]}": "]",
                "{``}": "\u201c", "{''}": "\u201d"}
_SIMPLE = re.compile("|".join(re.escape(k) for k in _SIMPLE_TEXT))
_TYPO_TEXT = {"---": "\u2014", "--": "\u2013", "``": "\u201c", "''": "\u201d", "?`": "\u00bf", "!`": "\u00a1"}
_TYPO = re.compile("|".join(re.escape(k) for k in _TYPO_TEXT))
_MARKUP = re.compile(r"[\\{}]")
_SUFFIX = re.compile(r"(?:Jr|Sr|II|III|IV|2nd|3rd|4th)\.?", re.I)
# Characters that are markup in LaTeX but plain text in most exports (Scopus writes "59%" and "A & B"):
# escaped before decoding so that pylatexenc does not read the rest of a line as a comment.
_BARE = re.compile(r"(?<!\\)([%&#])")


def _decoder() -> latex2text.LatexNodes2Text:
    # As bibtexparser's LatexDecodingMiddleware: braces dropped, math kept verbatim, \url{x} -> x.
    context = latex2text.get_default_latex_context_db()
    context.add_context_category("kb-bibtex", prepend=True,
                                 macros=[latex2text.MacroTextSpec("url", simplify_repl="%s")])
    return latex2text.LatexNodes2Text(latex_context=context, keep_braced_groups=False, math_mode="verbatim")


_DECODER = _decoder()
# bibtexparser logs each broken block as a warning; here it becomes a Failure naming the line, so its
# log records are not printed a second time (when the application configures logging, they still reach it).
logging.getLogger("bibtexparser").addHandler(logging.NullHandler())


def _stack():
    # Field keys keep their case (Web of Science writes Author, Title): co-authors are split in
    # _reference, because SeparateCoAuthors only looks at lowercase keys, and NormalizeFieldKeys would
    # drop one of two fields whose names differ only in case.
    return [ResolveStringReferencesMiddleware(), RemoveEnclosingMiddleware()]


def parse(fh: BinaryIO, encoding: str | None) -> Iterator[Reference | Failure]:
    number = 0
    strings: list[String] = []  # @string definitions so far, for the entries after them
    for first_line, chunk in _chunks(text_stream(fh, encoding)):
        library = Library(blocks=[s for s in strings], fail_on_duplicate_key=False) if strings else None
        try:
            parsed = bibtexparser.parse_string(chunk, parse_stack=_stack(), library=library)
        except Exception as e:  # bibtexparser raises only on its own bugs; fail the chunk, keep going
            kind = _ENTRY_START.match(chunk)
            if kind and kind.group(1).lower() not in _NOT_RECORDS:
                number += 1
                yield Failure(number, f"the entry could not be read: {str(e) or type(e).__name__}", line=first_line)
            else:
                yield Failure(None, f"the block could not be read: {str(e) or type(e).__name__}", line=first_line)
            continue
        blocks = parsed.blocks
        for i, block in enumerate(blocks):
            if isinstance(block, String):
                if block not in strings:
                    strings = [s for s in strings if s.key.lower() != block.key.lower()] + [block]
                continue
            line = first_line + (block.start_line or 0)
            if isinstance(block, (DuplicateFieldKeyBlock, DuplicateBlockKeyBlock)) and isinstance(
                    block.ignore_error_block, Entry):
                number += 1
                entry = block.ignore_error_block
                for middleware in _stack()[1:]:  # failed blocks skip the middlewares: apply them here
                    entry = middleware.transform_block(entry, parsed)
                yield _reference(number, line, entry, duplicate=isinstance(block, DuplicateFieldKeyBlock))
            elif isinstance(block, ParsingFailedBlock):
                kind = _ENTRY_START.match(block.raw or "")
                if kind and kind.group(1).lower() in _NOT_RECORDS:
                    yield Failure(None, f"@{kind.group(1)} block could not be read: {_why(block)}", line=line)
                    continue
                number += 1
                yield Failure(number, _broken(block.raw or chunk, block, line), line=line,
                              hint="fix the entry in a text editor (a '{' or '}' inside a value must come in "
                                   "pairs, or be written \\{ \\}) and import the file again")
            elif isinstance(block, Entry):
                number += 1
                after = blocks[i + 1] if i + 1 < len(blocks) else None
                if isinstance(after, ImplicitComment) and _FIELD_LINE.search(after.comment):
                    # A stray "}" in a value closes the entry early; the fields after it would be lost.
                    last = block.fields[-1].key if block.fields else "last"
                    yield Failure(number, f"entry {block.key}: a '}}' inside the {last} field closes the entry early; "
                                          f"the text after it (from line {first_line + (after.start_line or 0)}) "
                                          "was not read", line=line,
                                  hint="remove the stray '}' (or write it \\}) and import the file again")
                    continue
                yield _reference(number, line, block)


def _chunks(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each piece of the file that starts with an @type{ line."""
    buf: list[str] = []
    start = 1
    for n, line in enumerate(lines, 1):
        if _ENTRY_START.match(line) and buf:
            yield start, "".join(buf)
            buf = []
        if not buf:
            start = n
        buf.append(line)
    if buf:
        yield start, "".join(buf)


def _why(block: ParsingFailedBlock) -> str:
    return getattr(block.error, "abort_reason", None) or str(block.error) or type(block.error).__name__


def _broken(raw: str, block: ParsingFailedBlock, line: int) -> str:
    """Why an entry failed, naming the field whose braces do not pair up when that is the cause."""
    key = re.match(r"\s*@\s*\w+\s*[{(]\s*([^,\s]*)", raw)
    name = f"entry {key.group(1)}" if key and key.group(1) else "the entry"
    depth = 0
    field, field_line = None, line
    for i, text in enumerate(raw.split("\n")):
        m = re.match(r"\s*([\w:.+-]+)\s*=", text)
        if m and depth == 1:
            field, field_line = m.group(1), line + i
        elif m and depth > 1 and field:
            return (f"{name}: the {field} field (line {field_line}) opens a '{{' that is never closed "
                    f"before the {m.group(1)} field")
        depth += len(re.findall(r"(?<!\\)\{", text)) - len(re.findall(r"(?<!\\)\}", text))
        if depth < 0 and field:
            return f"{name}: the {field} field (line {field_line}) closes a '}}' it never opened"
    if depth > 0 and field:
        return f"{name}: the {field} field (line {field_line}) opens a '{{' that is never closed"
    return f"{name} could not be read: {_why(block)}"


def unwrap(value: str) -> str:
    """A value without the braces Web of Science puts round it twice ({{Title}} -> Title)."""
    value = value.strip()
    while value.startswith("{") and value.endswith("}") and _pairs(value):
        value = value[1:-1].strip()
    return value


def _pairs(value: str) -> bool:
    """True when the first character's brace is closed by the last character."""
    depth = 0
    for i, ch in enumerate(value):
        if ch == "{" and (i == 0 or value[i - 1] != "\\"):
            depth += 1
        elif ch == "}" and value[i - 1] != "\\":
            depth -= 1
            if depth == 0 and i != len(value) - 1:
                return False
    return depth == 0


def field_text(value, name: bool = False) -> str | None:
    """A field value as plain Unicode text: LaTeX decoded, plain text kept as written."""
    if value is None:
        return None
    raw = str(value).replace("~", " ") if name else str(value)  # in a name, "~" is always a tie
    value = unwrap(raw)
    if not _MARKUP.search(raw):
        return clean(value)  # not LaTeX: "59%", "A & B", "--" and "~5 km" are text
    simple = _SIMPLE.sub(lambda m: _SIMPLE_TEXT[m.group(0)], value)
    if not _MARKUP.search(simple):
        return clean(_TYPO.sub(lambda m: _TYPO_TEXT[m.group(0)], simple))
    return clean(decode_latex(value))


def decode_latex(value: str) -> str:
    """pylatexenc's decoding, keeping what it would lose: "~" (a tie in LaTeX, but "approximately" in an
    abstract), a bare % (a comment in LaTeX, a per cent sign in exports) and \\^{} (a caret)."""
    value = value.replace("~", "\ue000")
    value = _BARE.sub(r"\\\1", value.replace("\\^{}", "\ue001"))
    try:
        value = _DECODER.latex_to_text(value)
    except Exception:  # pylatexenc is lenient; keep the text as written if it ever gives up
        pass
    return value.replace("\ue000", "~").replace("\ue001", "^")


_ROMAN_SUFFIX = {"II": "2nd", "III": "3rd", "IV": "4th"}


def _name(raw: str) -> str:
    """One BibTeX name in the 'von Last, First[, Jr]' form split_name reads, by BibTeX's rules:
    'Ludwig van Beethoven' -> 'van Beethoven, Ludwig'; 'Zarate, Jr., C. A.' ('Last, Jr, First') ->
    'Zarate, C. A., Jr.'; 'Thompson, III, Frank R.' -> 'Thompson, Frank R., 3rd' (the suffix as PubMed
    writes it). 'Last, First' names and 'Liu R.' forms are left as they are."""
    text = field_text(raw, name=True) or ""
    commas = text.count(",")
    if commas == 1 or (commas == 0 and len(text.split()) < 3):
        return text
    try:
        parts = parse_single_name_into_parts(text, strict=False)
    except Exception:
        return text
    given, suffix = " ".join(parts.first), " ".join(parts.jr)
    if commas == 2 and _SUFFIX.fullmatch(given) and suffix:
        given, suffix = suffix, given  # "Smith, John, Jr.": the suffix written last
    if not (parts.last and given and (commas == 2 or parts.von)) or (suffix and not _SUFFIX.fullmatch(suffix)):
        return text  # "Doe, Jane, Mary" is no BibTeX name: split_name reads it as written
    suffix = _ROMAN_SUFFIX.get(suffix.rstrip("."), suffix)
    return f"{' '.join(parts.von + parts.last)}, {given}" + (f", {suffix}" if suffix else "")


def _terms(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        text = field_text(v) or ""
        out.extend(clean(t) or "" for t in re.split(r";" if ";" in text else r",", text))
    return keyword_list([t for t in out if t])


def _reference(number: int, line: int, entry: Entry, duplicate: bool = False) -> Reference:
    fields: dict[str, list] = {}
    for f in entry.fields:
        fields.setdefault(f.key.strip().lower(), []).append(f.value)

    def first(*names: str):
        for name in names:
            for v in fields.get(name, []):
                if v not in (None, "", []):
                    return v
        return None

    ref = Reference(number=number, line=line)
    if duplicate:
        repeated = sorted(k for k, v in fields.items() if len(v) > 1)
        ref.warnings.append(f"fields given twice: {', '.join(repeated)}; the first of each was used "
                            "(keywords were merged)")
    ref.title = clean_title(field_text(first("title")))
    names = split_multiple_persons_names(str(first("author") or ""))  # on " and " outside braces
    ref.authors, ref.authors_truncated = authors_from(_name(n) for n in names)
    ref.year = year(field_text(first("year"))) or year(field_text(first("date")))
    ref.journal = field_text(first("journal", "journaltitle", "booktitle"))
    ref.volume = field_text(first("volume"))
    ref.issue = field_text(first("number", "issue"))
    raw_pages = unwrap(str(first("pages") or ""))
    ref.pages = pages(re.sub(r"\s*(?:-{1,3}|\u2013|\u2014)\s*", "-", raw_pages) or None)
    for v in fields.get("doi", []):
        ref.doi = doi(unwrap(str(v)))
        if ref.doi:
            break
    else:
        if fields.get("doi"):
            ref.warnings.append(f"doi '{unwrap(str(fields['doi'][0]))[:60]}' is not a DOI; left out")
    found = ids_from_urls(unwrap(str(v)) for v in fields.get("url", []) + fields.get("link", []))
    ref.doi = ref.doi or found.get("doi")
    note = " ".join(unwrap(str(v)) for v in fields.get("note", []) + fields.get("extra", []))
    for v in fields.get("pmid", []) + fields.get("pubmed_id", []) + fields.get("pubmed", []):
        ref.pmid = pmid(unwrap(str(v)))
        if ref.pmid:
            break
    if not ref.pmid and str(first("eprinttype") or "").strip("{} ").lower() == "pubmed":
        ref.pmid = pmid(unwrap(str(first("eprint") or "")))
    m = re.search(r"\bPMID:?\s*(\d{1,9})\b", note)
    ref.pmid = ref.pmid or (pmid(m.group(1)) if m else None) or found.get("pmid")
    ref.pmcid = pmcid(unwrap(str(first("pmcid") or ""))) or found.get("pmcid")
    m = re.search(r"\bPMCID:?\s*(PMC\d{1,9})\b", note)
    ref.pmcid = ref.pmcid or (pmcid(m.group(1)) if m else None)
    ref.abstract = field_text(first("abstract"))
    ref.keywords = _terms(v for name in ("author_keywords", "keywords", "keywords-plus", "mesh")
                          for v in fields.get(name, []))
    ref.registrations = registrations_in(ref.abstract)
    return ref
