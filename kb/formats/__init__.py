"""Reading bibliographic exports: format detection and one parser per format.

Every parser module has ``parse(fh, encoding) -> Iterator[Reference | Failure]``: ``fh`` is a
binary file object (already un-gzipped), read as a stream so that large files never sit in
memory whole. A record that cannot be read becomes a :class:`~kb.biblio.Failure` naming it;
the records around it are still yielded. A file that is not the format at all raises
:class:`~kb.biblio.ParseError`.
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import io
import re
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..biblio import Failure, ParseError, Reference, has_bad_bytes

# name -> (module, what it reads)
FORMATS: dict[str, tuple[str, str]] = {
    "pubmed-xml": ("pubmed", "PubMed / MEDLINE XML (PubmedArticleSet, MedlineCitationSet; .xml or .xml.gz)"),
    "medline": ("medline", "MEDLINE / PubMed text (.nbib, .medline, .txt: PMID- / TI  - tags)"),
    "ris": ("ris", "RIS (.ris, .txt): PubMed, Embase, Scopus, Web of Science, Ovid, ProQuest, Rayyan, Zotero"),
    "bibtex": ("bibtex", "BibTeX (.bib): Scopus, Web of Science, Zotero"),
    "csv": ("csvfile", "CSV: Embase, Scopus, or any file with a title column (see kb import --help)"),
}
DETECT_BYTES = 64 * 1024
MAX_SIZE = 512 * 1024 * 1024
"""The most bytes of text an import file may hold once un-gzipped (kb import --max-size raises it): a
gzip bomb (a few MB that expand to gigabytes) stops here instead of filling the memory."""


class TooLarge(Exception):
    """An import file holds more than the size limit (once un-gzipped)."""

    def __init__(self, size: int, limit: int, gzipped: bool):
        super().__init__(f"more than {format_size(limit)}" + (" once un-gzipped" if gzipped else ""))
        self.size, self.limit, self.gzipped = size, limit, gzipped


def format_size(n: int) -> str:
    """1536 -> '1.5 KB', 536870912 -> '512 MB' (powers of 1024, as --max-size reads them)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def parse_size(text: str) -> int:
    """'512MB', '2GB', '2g', '1500 MB' or a number of bytes -> bytes (KB, MB, GB are powers of 1024).
    Raises ValueError."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text or "", re.I)
    if not m:
        raise ValueError(f"'{text}' is not a size")
    n = float(m.group(1)) * (1 << (10 * "_kmgt".index(m.group(2).lower() or "_")))
    if n < 1:
        raise ValueError(f"'{text}' is not a size")
    return int(n)


class Limited(io.RawIOBase):
    """A binary stream that raises TooLarge once more than ``limit`` bytes have come through it."""

    def __init__(self, raw: BinaryIO, limit: int, gzipped: bool):
        self.raw, self.limit, self.gzipped, self.seen = raw, limit, gzipped, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.raw.readinto(b) or 0
        self.seen += n
        if self.seen > self.limit:
            raise TooLarge(self.seen, self.limit, self.gzipped)
        return n


class CountingReader(io.RawIOBase):
    """A binary stream that reports the bytes read through it (for progress bars)."""

    def __init__(self, raw: BinaryIO, progress: Callable[[int], None] | None = None):
        self.raw = raw
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.raw.readinto(b)
        if n and self.progress:
            self.progress(n)
        return n or 0


def text_stream(fh: BinaryIO, encoding: str | None) -> io.TextIOWrapper:
    """Text from ``fh``: UTF-8 by default with a byte-order mark skipped; bytes that are not valid in
    the encoding survive as lone surrogates (see :func:`bad_text`), so that only the records holding
    them fail; universal newlines (CRLF exports read like LF)."""
    enc = encoding or "utf-8"
    if codecs.lookup(enc).name == "utf-8":
        enc = "utf-8-sig"
    return io.TextIOWrapper(fh, encoding=enc, errors="surrogateescape", newline=None)


def bad_text(ref: Reference, encoding: str | None) -> Failure | None:
    """A failure for a record whose text held bytes that are not valid in ``encoding``."""
    for name in ("title", "abstract", "journal", "volume", "issue", "pages", "retraction_notice"):
        if has_bad_bytes(getattr(ref, name)):
            return _encoding_failure(ref.number, ref.line, name, encoding)
    for name in ("authors", "keywords", "mesh"):
        if any(has_bad_bytes(v) for v in getattr(ref, name)):
            return _encoding_failure(ref.number, ref.line, name, encoding)
    return None


def _encoding_failure(number, line, field, encoding) -> Failure:
    enc = encoding or "utf-8"
    return Failure(number, f"the {field} is not valid {enc} text", line=line,
                   hint="the file was probably saved in another encoding; try --encoding cp1252 (Windows) "
                        "or --encoding latin-1")


def sniff(head: bytes, name: str = "") -> str:
    """The format of a file from its first bytes (and, only to break ties, its name)."""
    if head.startswith(b"\x1f\x8b"):
        raise ParseError("gzip data inside gzip data", hint="un-gzip the file once and import it again")
    if head.startswith(b"PK\x03\x04"):
        raise ParseError("this is a zip file (an .xlsx workbook or an archive), not a text export",
                         hint="export the references as RIS, CSV or BibTeX, or unzip the archive first")
    if b"\x00" in head[:8192] and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ParseError("this is a binary file, not a bibliographic export",
                         hint="kb imports PubMed XML, MEDLINE (.nbib), RIS, BibTeX and CSV text files")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ParseError("the file is UTF-16 text", hint="save it as UTF-8 (or pass --encoding utf-16)")
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    body = text.lstrip()
    if not body:
        raise ParseError("the file is empty", hint="export the references again")
    if body.startswith("<") and re.search(r"<(?:PubmedArticleSet|MedlineCitationSet|PubmedArticle|MedlineCitation)\b",
                                          text):
        return "pubmed-xml"
    if body.startswith("<"):
        raise ParseError("this XML is not a PubMed export (no PubmedArticleSet or MedlineCitationSet)",
                         hint="export from PubMed with Send to > File > XML, or use RIS")
    if re.search(r"^PMID- ?\d", text, re.M) or re.search(r"^(?:TI|AU|FAU) {2}- ", text, re.M) and not re.search(
            r"^TY  -", text, re.M):
        return "medline"
    if re.search(r"^(?:\d+\.\s*\n)?TY {2}- ", text, re.M):
        return "ris"
    if re.search(r"^\s*@[A-Za-z]+\s*[{(]", text, re.M):
        return "bibtex"
    first = body.split("\n", 1)[0]
    suffix = Path(name.removesuffix(".gz")).suffix.lower()
    if ("," in first or "\t" in first or ";" in first) and (re.search(r"(?i)title", first)
                                                            or suffix in (".csv", ".tsv")):
        return "csv"  # without a title column, the CSV reader says which columns it found
    by_name = {".nbib": "medline", ".medline": "medline", ".ris": "ris", ".bib": "bibtex", ".csv": "csv", ".xml": "pubmed-xml"}
    if suffix in by_name:
        raise ParseError(f"the file is named {suffix} but its content does not look like {by_name[suffix]}",
                         hint=f"check the file, or force a format with --format {by_name[suffix]}")
    raise ParseError("unrecognised format: not PubMed XML, MEDLINE, RIS, BibTeX or CSV",
                     hint="force one with --format (pubmed-xml, medline, ris, bibtex, csv)")


def detect(path: Path) -> str:
    """The format of ``path`` from its first bytes (un-gzipped first when it is gzipped)."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(DETECT_BYTES)
            if head[:2] == b"\x1f\x8b":
                raw.seek(0)
                with gzip.GzipFile(fileobj=raw) as gz:
                    head = gz.read(DETECT_BYTES)
    except EOFError:
        raise ParseError("the gzip file is cut off", hint="download or export it again") from None
    except OSError as e:
        raise ParseError(f"cannot read the file: {e}") from None
    return sniff(head, path.name)


def parser(fmt: str):
    if fmt not in FORMATS:
        raise ParseError(f"unknown format '{fmt}'", hint="formats: " + ", ".join(FORMATS))
    return importlib.import_module(f"{__name__}.{FORMATS[fmt][0]}")


def read(path: Path, fmt: str | None = None, encoding: str | None = None,
         progress: Callable[[int], None] | None = None, max_size: int = MAX_SIZE) -> Iterator[Reference | Failure]:
    """Every record of ``path``: references, and failures for records that could not be read.
    ``progress`` is called with the number of bytes (on disk) read since the last call. Raises
    TooLarge when the file holds more than ``max_size`` bytes (once un-gzipped)."""
    fmt = fmt or detect(path)
    module = parser(fmt)
    size = path.stat().st_size
    if size > max_size:
        raise TooLarge(size, max_size, False)
    raw = open(path, "rb")
    counted = CountingReader(raw, progress)  # counts bytes on disk, also for .gz files
    buffered = io.BufferedReader(counted, 1 << 16)
    try:
        stream: BinaryIO = buffered  # type: ignore[assignment]
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            stream = io.BufferedReader(Limited(gzip.GzipFile(fileobj=buffered), max_size, True),  # type: ignore[assignment]
                                       1 << 16)
        for item in module.parse(stream, encoding):
            if isinstance(item, Reference):
                failed = bad_text(item, encoding)
                if failed:
                    yield failed
                    continue
            yield item
    except (EOFError, gzip.BadGzipFile, OSError, zlib.error) as e:
        yield Failure(None, f"the file is damaged: {e}", hint="download or export it again")
    finally:
        raw.close()


__all__ = ["FORMATS", "MAX_SIZE", "TooLarge", "format_size", "parse_size", "CountingReader", "text_stream", "bad_text", "sniff", "detect", "parser", "read"]
