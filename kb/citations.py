"""Citation formats out: BibTeX and RIS for any list of records (kb search, kb export)."""

from __future__ import annotations

import re
import unicodedata

from .records import Study, split_author, split_suffix

DESIGN_TYPES_RIS = {"consensus-statement": "JOUR", "guideline": "JOUR"}
_BIB_SPECIAL = re.compile(r"([&%$#_{}])")


def _line(text: str) -> str:
    """Whitespace collapsed: a value never breaks a line (or leaves a blank one) in BibTeX or RIS."""
    return " ".join(text.split())


def _bib_escape(text: str) -> str:
    text = _line(text)
    text = text.replace("\\", "\\textbackslash{}")
    text = _BIB_SPECIAL.sub(r"\\\1", text)
    return text.replace("~", "\\textasciitilde{}").replace("^", "\\textasciicircum{}")


def _bib_author(author: str) -> str:
    """'Murrough JW' -> 'Murrough, J. W.'; 'Zarate CA Jr' -> 'Zarate, Jr., C. A.' (BibTeX's von Last, Jr, First)"""
    surname, initials = split_author(author)
    suffix = split_suffix(author)[1]
    if not initials:
        return author
    return f"{surname}, {suffix + '., ' if suffix in ('Jr', 'Sr') else suffix + ', ' if suffix else ''}" \
        f"{' '.join(f'{c}.' for c in initials)}"


def _retraction_note(s: Study) -> str:
    r = s.retraction
    return "RETRACTED" + (f" {r.date}" if r and r.date else "") + (f": {r.notice}" if r and r.notice else "")


def bibtex_key(study: Study) -> str:
    return unicodedata.normalize("NFKD", study.id).encode("ascii", "ignore").decode().replace("-", "_")


def to_bibtex(studies: list[Study]) -> str:
    out = []
    for s in studies:
        fields: list[tuple[str, str]] = []
        authors = [_bib_author(a) for a in s.authors]
        if s.authors_truncated:
            authors.append("others")
        if authors:
            fields.append(("author", " and ".join(authors)))
        for name in ("title", "journal"):
            value = getattr(s, name)
            if value:
                fields.append((name, value))
        fields.append(("year", str(s.year)))
        for name, key in (("volume", "volume"), ("issue", "number"), ("pages", "pages"), ("doi", "doi")):
            value = getattr(s, name)
            if value:
                fields.append((key, value.replace("-", "--") if name == "pages" else value))
        if s.pmid:
            fields.append(("pmid", s.pmid))
        if s.pmcid:
            fields.append(("pmcid", s.pmcid))
        if s.retracted:
            fields.append(("note", _retraction_note(s)))
        body = ",\n".join(f"  {k} = {{{_bib_escape(v) if k not in ('doi',) else _line(v)}}}" for k, v in fields)
        out.append(f"@article{{{bibtex_key(s)},\n{body}\n}}\n")
    return "\n".join(out)


def to_ris(studies: list[Study]) -> str:
    lines: list[str] = []
    for s in studies:
        lines.append(f"TY  - {DESIGN_TYPES_RIS.get(s.design, 'JOUR')}")
        lines.append(f"ID  - {s.id}")
        for a in s.authors:
            surname, initials = split_author(a)
            suffix = split_suffix(a)[1]
            end = f", {suffix}." if suffix in ("Jr", "Sr") else f", {suffix}" if suffix else ""
            lines.append(f"AU  - {surname}, {'.'.join(initials)}.{end}" if initials else f"AU  - {a}")
        if s.title:
            lines.append(f"TI  - {s.title}")
        if s.journal:
            lines.append(f"JO  - {s.journal}")
        lines.append(f"PY  - {s.year}")
        if s.volume:
            lines.append(f"VL  - {s.volume}")
        if s.issue:
            lines.append(f"IS  - {s.issue}")
        if s.pages:
            sp, _, ep = s.pages.partition("-")
            lines.append(f"SP  - {sp}")
            if ep:
                lines.append(f"EP  - {ep}")
        if s.doi:
            lines.append(f"DO  - {s.doi}")
        if s.pmid:
            lines.append(f"AN  - {s.pmid}")
        if s.pmcid:
            lines.append(f"C2  - {s.pmcid}")  # EndNote's field for the PMCID in PubMed records
        if s.abstract:
            lines.append(f"AB  - {' '.join(s.abstract.split())}")
        for k in s.keywords:
            lines.append(f"KW  - {k}")
        if s.retracted:
            lines.append(f"N1  - {_retraction_note(s)}")
        # links to the article itself, which also carry the PMID and PMCID into reference managers
        # (and back into kb import); a record's sources may be other documents, so they are not links
        urls = []
        if s.pmid:
            urls.append(f"https://pubmed.ncbi.nlm.nih.gov/{s.pmid}/")
        if s.pmcid:
            urls.append(f"https://www.ncbi.nlm.nih.gov/pmc/articles/{s.pmcid}/")
        if s.doi and not urls:
            urls.append(f"https://doi.org/{s.doi}")
        for url in urls:
            lines.append(f"UR  - {url}")
        lines.append("ER  - ")
        lines.append("")
    return "\n".join(x[:6] + _line(x[6:]) for x in lines)
