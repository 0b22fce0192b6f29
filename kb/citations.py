"""Citation formats out: BibTeX and RIS for any list of records (kb search, kb export)."""

from __future__ import annotations

import re
import unicodedata

from .records import Study

DESIGN_TYPES_RIS = {"consensus-statement": "JOUR", "guideline": "JOUR"}


def _line(text: str) -> str:
    """Whitespace collapsed: a value never breaks a line (or leaves a blank one) in BibTeX or RIS."""
    return " ".join(text.split())


def _bib_escape(text: str) -> str:
    text = _line(text)
    text = text.replace("\\", "\\textbackslash{}")
    text = re.sub(r"([&%$#_{}])", r"\\\1", text)
    return text.replace("~", "\\textasciitilde{}").replace("^", "\\textasciicircum{}")


def _split_author(author: str) -> tuple[str, str]:
    """'Murrough JW' -> ('Murrough', 'JW'); a name without initials -> (name, '')."""
    parts = author.split()
    if len(parts) > 1 and re.fullmatch(r"[A-Z]{1,4}", parts[-1]):
        return " ".join(parts[:-1]), parts[-1]
    return author, ""


def _bib_author(author: str) -> str:
    """'Murrough JW' -> 'Murrough, J. W.'"""
    surname, initials = _split_author(author)
    return f"{surname}, {' '.join(f'{c}.' for c in initials)}" if initials else author


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
            surname, initials = _split_author(a)
            lines.append(f"AU  - {surname}, {'.'.join(initials)}." if initials else f"AU  - {a}")
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
        if s.abstract:
            lines.append(f"AB  - {' '.join(s.abstract.split())}")
        for k in s.keywords:
            lines.append(f"KW  - {k}")
        if s.retracted:
            lines.append(f"N1  - {_retraction_note(s)}")
        for src in s.sources[:1]:
            lines.append(f"UR  - {src.url}")
        lines.append("ER  - ")
        lines.append("")
    return "\n".join(x[:6] + _line(x[6:]) for x in lines)
