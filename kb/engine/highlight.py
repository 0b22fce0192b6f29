"""Highlighting: the passages of a text where query terms occur, marked up (Whoosh's highlighter)."""

from __future__ import annotations


def highlight(text: str, terms: frozenset[str], analyzer, *, maxchars: int, surround: int, tagname: str,
              between: str, top: int) -> str:
    """The ``top`` best fragments of ``text`` (about ``maxchars`` long, ``surround`` characters of
    context around each term) with the terms in ``<tagname>``, joined by ``between``; "" if none."""
    from whoosh import highlight as hl

    return hl.highlight(text, terms, analyzer, hl.ContextFragmenter(maxchars=maxchars, surround=surround),
                        hl.HtmlFormatter(tagname=tagname, between=between), top=top)
