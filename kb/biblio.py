"""Bibliographic references as read from exports, before they become study records.

Every import format (PubMed XML, MEDLINE, RIS, BibTeX, CSV) parses into the same
:class:`Reference`, one per record of the file, or a :class:`Failure` naming the record
and the reason it could not be read. The helpers here put the many ways exports write
authors, DOIs, years and pages into the one shape kb records use.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from typing import Iterable

from .records import DOI_RE, ET_AL, PMCID_RE, PMID_RE, REGISTRIES, registry_of, surname

# The fields of a reference that become record fields, in record order.
FIELDS = ("title", "authors", "year", "journal", "volume", "issue", "pages", "doi", "pmid", "pmcid",
          "registrations", "abstract", "keywords")


@dataclass
class Reference:
    """One record of an export, normalised. Empty values are None or []."""

    number: int  # 1-based position of the record in its file
    line: int | None = None  # line where the record starts, for text formats
    title: str | None = None
    authors: list[str] = field(default_factory=list)  # "Surname Initials"
    authors_truncated: bool = False
    year: int | None = None
    journal: str | None = None
    volume: str | None = None
    issue: str | None = None
    pages: str | None = None
    doi: str | None = None
    pmid: str | None = None
    pmcid: str | None = None
    registrations: list[str] = field(default_factory=list)
    abstract: str | None = None
    keywords: list[str] = field(default_factory=list)  # author keywords, then MeSH / index terms
    mesh: list[str] = field(default_factory=list)  # MeSH headings (also in keywords), for suggestions
    publication_types: list[str] = field(default_factory=list)
    retracted: bool = False
    retraction_notice: str | None = None
    warnings: list[str] = field(default_factory=list)  # values left out, and why

    @property
    def where(self) -> str:
        return f"record {self.number}" + (f" (line {self.line})" if self.line else "")


@dataclass
class Failure:
    """A record that could not be read."""

    number: int | None
    reason: str
    line: int | None = None
    hint: str | None = None

    @property
    def where(self) -> str:
        if self.number is None:
            return f"line {self.line}" if self.line else "the file"
        return f"record {self.number}" + (f" (line {self.line})" if self.line else "")


class ParseError(Exception):
    """A whole file cannot be read (not this format, binary, unreadable)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


# -- text ---------------------------------------------------------------------------

_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")  # C0 but the whitespace ones, DEL, C1 but NEL
_SPACE = re.compile(r"\s+")
_TAGS = re.compile(r"</?(?:i|b|u|em|strong|sup|sub|p|br|span|sc|inf)\b[^>]*>", re.I)


def clean(text: str | None) -> str | None:
    """Whitespace collapsed, inline HTML tags (<i>, <sup> ...) and control characters (ESC, OSC ...:
    a terminal would obey them) dropped; None when empty."""
    if text is None:
        return None
    text = _CONTROLS.sub("", _TAGS.sub("", str(text)))
    text = _SPACE.sub(" ", text).strip()
    return text or None


def clean_title(text: str | None) -> str | None:
    """A title without the brackets PubMed puts round translated titles, or a final period
    only when the title is wrapped that way."""
    text = clean(text)
    if text and text.startswith("[") and text.rstrip(".").endswith("]"):
        inner = text.rstrip(".")[1:-1]
        depth = 0
        for ch in inner:  # only when the first bracket closes at the very end: "[18F]FDG ... [letter]" stays
            depth += {"[": 1, "]": -1}.get(ch, 0)
            if depth < 0:
                return text
        if depth == 0:
            text = inner.strip() or None
    return text


_SURROGATE = re.compile("[\udc80-\udcff]")


def has_bad_bytes(text: str | None) -> bool:
    """True when text decoded with errors='surrogateescape' held bytes that were not valid."""
    return bool(text) and _SURROGATE.search(text) is not None


# -- people -------------------------------------------------------------------------

_INITIALS = re.compile(r"^(?:[A-Z]\.?-?){1,4}$")
_SUFFIX = re.compile(r"(?:Jr|Sr|Iii|2nd|3rd)\.?")  # case-sensitive: "JR" and "SR" are initials
_GROUP = re.compile(r"\b(?:group|consortium|collaborat\w*|investigators|committee|association|society|network|team|"
                    r"organi[sz]ation|council|foundation|institute|working|panel|task force)\b", re.I)


def initials(given: str) -> str:
    """'James W.' -> 'JW'; 'Jean-Paul' -> 'JP'; 'J.-P.' -> 'JP'; 'D.G.' -> 'DG'."""
    out = []
    for part in re.split(r"[\s.\-]+", given.strip()):
        part = part.strip(",")
        if not part or _SUFFIX.fullmatch(part):
            continue
        if part.isupper() and len(part) <= 4 and part.isalpha() and len(part) > 1 and not part.istitle():
            out.append(part)  # already initials: "JW"
        else:
            out.append(part[0].upper())
    return "".join(out)


def person(surname: str, given: str = "") -> str:
    """'Surname Initials' as kb records write authors: person('Murrough', 'James W') == 'Murrough JW'."""
    surname = clean(surname) or ""
    given = clean(given) or ""
    if given.lower() in ("null", "nan", "none", "na", "n/a"):  # an export's placeholder, not a name
        given = ""
    ini = initials(given) if given else ""
    return f"{surname} {ini}".strip()


def split_name(name: str) -> str:
    """An author written any common way, as 'Surname Initials'.

    'Murrough, James W.' / 'Murrough, J. W.' / 'Murrough JW' / 'Liu R.' / 'Adler D.G.' /
    'James W. Murrough' all become 'Murrough JW' (or 'Liu R', 'Adler DG').
    """
    name = clean(name) or ""
    name = name.strip(" ,;")
    if not name:
        return ""
    if _GROUP.search(name):  # "Ketamine Study Group": a collective author stays as written
        return name
    # a generational suffix anywhere ("Zarate, C.A., Jr.", "Zarate CA Jr", "Smith, John, III") comes
    # last, as PubMed writes it ("Zarate CA Jr", "Smith J 3rd")
    m = re.search(r"[\s,]+(Jr|Sr|2nd|3rd|4th)\.?(?=$|[\s,])|,\s*(II|III|IV)\.?(?=$|,)", name)
    if m:
        rest = (name[: m.start()] + name[m.end():]).strip(" ,")
        suffix = m.group(1) or {"II": "2nd", "III": "3rd", "IV": "4th"}[m.group(2)]
        return f"{split_name(rest)} {suffix}" if rest else name
    if "," in name:
        surname, given = name.split(",", 1)
        return person(surname, given)
    parts = name.split()
    for i in range(1, len(parts)):  # "Adler DG", "Adler D.G.", "Adler D. G.", "van der Berg A"
        if all(_INITIALS.match(p) for p in parts[i:]):
            return person(" ".join(parts[:i]), " ".join(parts[i:]))
    if len(parts) > 1 and parts[0][0].isupper() and not _INITIALS.match(parts[0]):
        # "James W. Murrough": given names first
        return person(parts[-1], " ".join(parts[:-1]))
    return name


def is_et_al(name: str) -> bool:
    return bool(ET_AL.match(name.strip()))


def authors_from(names: Iterable[str]) -> tuple[list[str], bool]:
    """Names as 'Surname Initials', and whether the list ended with 'et al.' or 'others'."""
    out: list[str] = []
    truncated = False
    for n in names:
        if not n or not n.strip():
            continue
        if is_et_al(n):
            truncated = True
            continue
        a = split_name(n)
        if a:
            out.append(a)
    return out, truncated


_SURNAME_INITIALS_LIST = re.compile(r"^[^,]+,\s*(?:[A-Z][a-z]?\.?\s*-?\s*){1,4}(?:,|$)")


def split_author_list(text: str) -> list[str]:
    """One cell holding many authors, as CSV exports write them.

    'Smith, J.; Doe, A.B.' (semicolons) / 'Liu R., Adler D.G.' (Scopus, Embase) /
    'Achenbach, T. M., Rescorla, L. A.' (surname, initials pairs) are all understood.
    """
    text = (text or "").strip()
    if not text:
        return []
    if ";" in text:
        return [p.strip() for p in text.split(";") if p.strip()]
    if " and " in text and "," not in text:
        return [p.strip() for p in text.split(" and ") if p.strip()]
    parts = [p.strip() for p in text.split(",")]
    # "Surname, I. I., Surname2, I." alternates surname and initials
    if len(parts) >= 2 and all(re.fullmatch(r"(?:(?:[A-Z][a-z]?\.?|Iii|Jr\.?|Sr\.?)\s*-?\s*){1,5}", p) for p in parts[1::2]) \
            and len(parts) % 2 == 0:
        return [f"{parts[i]}, {parts[i + 1]}" for i in range(0, len(parts), 2)]
    return [p for p in parts if p]


# -- identifiers --------------------------------------------------------------------

_DOI_IN = re.compile(r"10\.\d{4,9}/[^\s\"]+")  # SICI DOIs hold <>: 10.2193/0022-541X(2005)069<0185:VIVEOD>2.0.CO;2


def doi(text: str | None) -> str | None:
    """The bare DOI in ``text``: URL and 'doi:' prefixes, URL escapes and trailing punctuation removed."""
    if not text:
        return None
    text = urllib.parse.unquote(str(text).strip())
    m = _DOI_IN.search(text)
    if not m:
        return None
    value = m.group(0)
    if "?" in text[: m.start()]:  # inside a URL's query string: the DOI ends at the next parameter
        value = value.split("&", 1)[0]
    value = value.rstrip(".,;)]}")
    if value.count("(") < value.count(")"):
        value = value.rstrip(")")
    return value if DOI_RE.match(value) else None


def pmid(text: str | None) -> str | None:
    if text is None:
        return None
    value = re.sub(r"^(?:PMID:?\s*|MEDLINE:?\s*)", "", str(text).strip(), flags=re.I)
    return value if PMID_RE.match(value) else None


def pmcid(text: str | None) -> str | None:
    if text is None:
        return None
    value = str(text).strip().upper().replace(" ", "")
    m = re.search(r"PMC\d{1,9}", value)
    return m.group(0) if m and PMCID_RE.match(m.group(0)) else None


# every registry kb accepts, found inside text: the record patterns without their anchors, and a
# number must stand whole (a CTIS number 2023-503456-12-00 is not read as the EudraCT 2023-503456-12)
_REG_IN = re.compile(r"(?<![\w/-])(" + "|".join(
    f"(?:{p.pattern.replace('^', '').replace('$', '')})" for p in REGISTRIES.values()) + r")(?![\w/-])")


def registrations_in(*texts: str | None) -> list[str]:
    """Trial registration numbers mentioned in ``texts`` (abstracts, DataBank lists), in order."""
    out: list[str] = []
    for t in texts:
        for m in _REG_IN.finditer(t or ""):
            if registry_of(m.group(1)) and m.group(1) not in out:
                out.append(m.group(1))
    return out


def ids_from_urls(urls: Iterable[str]) -> dict[str, str]:
    """PMID, PMCID and DOI from links such as pubmed.ncbi.nlm.nih.gov/123/ or doi.org/10...."""
    found: dict[str, str] = {}
    for u in urls:
        u = (u or "").strip()
        # only a link to the article itself counts: a link to a table in another article's PMC page
        # (as a record's sources may hold) names that other article
        m = re.search(r"(?:pubmed\.ncbi\.nlm\.nih\.gov/|ncbi\.nlm\.nih\.gov/pubmed/)(\d{1,9})/?(?:[?#].*)?$", u)
        if m:
            found.setdefault("pmid", m.group(1))
        m = re.search(r"/(?:pmc/)?articles/(PMC\d{1,9})/?(?:[?#].*)?$", u)
        if m:
            found.setdefault("pmcid", m.group(1))
        if re.search(r"(?:doi\.org/|[?&]id=doi:)", u):
            d = doi(u)
            if d:
                found.setdefault("doi", d)
    return found


# -- dates and pages ----------------------------------------------------------------

_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)")


def year(text: str | int | None) -> int | None:
    """The first four-digit year in '2019//', '2013 Oct', 'Jun 2011', '2016-05-03' ..."""
    if text is None:
        return None
    if isinstance(text, int):
        return text
    m = _YEAR.search(str(text))
    return int(m.group(1)) if m else None


def pages(start: str | None, end: str | None = None) -> str | None:
    """'349' + '69' -> '349-69'; a page range kept as the source writes it; 'No Specified' dropped."""
    start = clean(start)
    end = clean(end)
    if start and "-" in start and not end:
        start, _, end = (p.strip() for p in start.partition("-"))
    if start and not re.search(r"\d", start):
        start = None
    if end and not re.search(r"\d", end):
        end = None
    if start and end and end != start:
        return f"{start}-{end}"
    return start or None


MESH_QUALIFIERS = frozenset("""abnormalities|administration & dosage|adverse effects|agonists|analogs & derivatives|
analysis|anatomy & histology|antagonists & inhibitors|biosynthesis|blood|blood supply|cerebrospinal fluid|
chemical synthesis|chemically induced|chemistry|classification|complications|congenital|cytology|deficiency|
diagnosis|diagnostic imaging|diet therapy|drug effects|drug therapy|economics|education|embryology|enzymology|
epidemiology|ethics|ethnology|etiology|genetics|growth & development|history|immunology|injuries|innervation|
instrumentation|isolation & purification|legislation & jurisprudence|manpower|metabolism|methods|microbiology|
mortality|nursing|organization & administration|parasitology|pathogenicity|pathology|pharmacokinetics|
pharmacology|physiology|physiopathology|poisoning|prevention & control|psychology|radiation effects|radiotherapy|
rehabilitation|secondary|standards|statistics & numerical data|supply & distribution|surgery|therapeutic use|
therapy|toxicity|transmission|trends|ultrastructure|urine|utilization|veterinary|virology""".replace("\n", "").split("|"))


def _strip_qualifiers(k: str) -> str:
    """'Plant Extracts/adverse effects/*pharmacology' -> 'Plant Extracts': only MeSH qualifiers are cut,
    so 'Young adults/students' stays whole."""
    head, *quals = k.split("/")
    if quals and all(q.strip().lstrip("*").strip() in MESH_QUALIFIERS for q in quals):
        return head.strip()
    return k


def unique(values: Iterable[str | None]) -> list[str]:
    """Values in order, empty ones and (case-insensitive) repeats dropped."""
    out: list[str] = []
    seen: set[str] = set()
    for v in values:
        if v and v.lower() not in seen:
            seen.add(v.lower())
            out.append(v)
    return out


def keyword_list(values: Iterable[str] | str | None, separators: str = ";") -> list[str]:
    """Keywords, split on ``separators`` when given as one string, MeSH qualifiers and stars removed,
    duplicates dropped (case-insensitively)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = re.split("[" + re.escape(separators) + "]", values)
    return unique(_strip_qualifiers(k).lstrip("*").strip()
                  for v in values for line in str(v).splitlines() if (k := clean(line)))


# -- matching keys (dedup) ----------------------------------------------------------


_LETTERS = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ß": "ss", "æ": "ae",
                          "Æ": "AE", "œ": "oe", "Œ": "OE", "ı": "i", "þ": "th"})


def fold(text: str | None) -> str:
    """Lowercase ASCII letters and digits separated by single spaces: the form titles and names
    are compared in."""
    if not text:
        return ""
    text = text.translate(_LETTERS)  # letters that do not decompose: Pawełczyk -> Pawelczyk
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"&(?:amp|lt|gt|quot|#\d+);", " ", text)
    return " ".join(re.findall(r"[a-z0-9]+", text))


def surname_key(author: str | None) -> str:
    """'Murrough JW' -> 'murrough'; 'van der Berg A' -> 'vanderberg'."""
    return fold(surname(author)).replace(" ", "") if author else ""


__all__ = ["Reference", "Failure", "ParseError", "FIELDS", "clean", "clean_title", "has_bad_bytes", "initials",
           "person", "split_name", "authors_from", "split_author_list", "doi", "pmid", "pmcid", "registrations_in",
           "ids_from_urls", "year", "pages", "keyword_list", "unique", "fold", "surname_key", "is_et_al"]
