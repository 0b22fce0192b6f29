"""Query objects: the pieces kb.search compiles a query tree into (Whoosh's query classes).

kb.search decides what a query means (vocabulary expansion, phrases, filters); these functions
build the engine's objects for it, so that kb.search never names a Whoosh class. Whoosh is
imported on first use, not when kb.search is imported.
"""

from __future__ import annotations

_Q = None


def _whoosh_query():
    global _Q
    if _Q is None:
        from whoosh import query

        _Q = query
    return _Q


def term(field: str, text: str, boost: float = 1.0):
    """Documents with ``text`` in ``field``."""
    return _whoosh_query().Term(field, text, boost=boost)


def phrase(field: str, words: list[str], slop: int = 1, boost: float = 1.0):
    """Documents with ``words`` in ``field``, in order, at most ``slop`` positions apart."""
    return _whoosh_query().Phrase(field, words, slop=slop, boost=boost)


def all_of(parts: list, boost: float = 1.0):
    return _whoosh_query().And(parts, boost=boost)


def any_of(parts: list):
    return _whoosh_query().Or(parts)


def negation(part):
    return _whoosh_query().Not(part)


def every():
    """Every document."""
    return _whoosh_query().Every()


def nothing():
    """No document (one shared object: compare with :func:`is_nothing`)."""
    return _whoosh_query().NullQuery


def is_nothing(q) -> bool:
    return q is _whoosh_query().NullQuery


def is_negation(q) -> bool:
    return isinstance(q, _whoosh_query().Not)


def numeric_range(field: str, low, high):
    """Documents whose numeric column ``field`` is between ``low`` and ``high`` (None: open)."""
    return _whoosh_query().NumericRange(field, low, high)


def _group_class():
    Q = _whoosh_query()

    class Group(Q.Or):
        """One word as typed with its other spellings (abbreviation, clinicians' words): it matches
        where any of them does, and scores as one term whose frequency is the (weighted) sum of
        theirs, so that a record is not ranked up for using many synonyms of one concept."""

    return Group


_GROUP = None


def group(clauses: list, boost: float = 1.0):
    """A word and its other spellings, matched as any of them and scored as one term (see scoring)."""
    global _GROUP
    if _GROUP is None:
        _GROUP = _group_class()
    g = _GROUP(clauses)
    g.boost = boost
    return g


def is_group(q) -> bool:
    return _GROUP is not None and isinstance(q, _GROUP)
