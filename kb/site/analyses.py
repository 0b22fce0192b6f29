"""The pooled analyses the pages that span studies show, and what changed since the last build.

:class:`Site` is everything those pages are made from: the build information, the digests of the
studies shown, the condition summaries, and (after :func:`run_analyses`) one analysis per condition,
outcome, time window and comparator class, pooled from the digests' rows with kb meta's defaults.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .. import synthesis as S
from ..config import KnowledgeBase
from ..errors import KbError
from .state import SiteInfo

LOO_MAX_K = 40  # leave-one-out (sensitivity) up to this many studies


@dataclass
class Site:
    """Everything the pages that span studies are made from."""

    kb: KnowledgeBase
    info: SiteInfo
    digests: dict[str, dict]  # id -> digest
    summaries: dict
    # (condition, outcome, window, comparator class) -> result or error; window and class are None for a
    # (condition, outcome) with data that nothing could be pooled from. The pages add a result's
    # risk-of-bias picture ("picture": kb.robplot's layout, and its SVG) the first time they show it.
    analyses: dict[tuple, dict] = field(default_factory=dict)
    changes: dict = field(default_factory=dict)
    _by: dict | None = field(default=None, repr=False)

    @property
    def vocab(self):
        return self.kb.vocab

    def studies(self, condition: str | None = None, outcome: str | None = None) -> list[dict]:
        """Studies in id order: all, or those of a condition, or those reporting an outcome."""
        if self._by is None:
            ordered = sorted(self.digests.values(), key=lambda d: d["id"])
            by: dict = {None: ordered}
            for d in ordered:
                for c in dict.fromkeys(d["conditions"]):
                    by.setdefault(("c", c), []).append(d)
                for o in d["outcomes"]:
                    by.setdefault(("o", o), []).append(d)
            self._by = by
        if condition:
            return self._by.get(("c", condition), [])
        if outcome:
            return self._by.get(("o", outcome), [])
        return self._by[None]

    def evidence(self) -> list[dict]:
        """The studies that count, in id order: all but a preview's drafts."""
        return [d for d in self.studies() if not d["draft"]]

    def conditions(self) -> list[str]:
        present = {c for d in self.digests.values() for c in d["conditions"]}
        return [c for c in self.vocab.terms("condition") if c in present]

    def outcomes(self) -> list[str]:
        present = {o for d in self.digests.values() for o in d["outcomes"]}
        return [o for o in self.vocab.terms("outcome") if o in present]


def run_analyses(site: Site) -> None:
    """Pool every (condition, outcome) pair some study has numbers for, with kb meta's defaults: one
    analysis per time window and comparator class (never pooled together)."""
    groups: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
    with_data = set()
    proto = site.kb.protocol
    for d in sorted(site.digests.values(), key=lambda d: d["id"]):
        if not d["draft"]:  # a preview's drafts are listed as left out, and make no analysis of their own
            for cond, outcome in ((c, o) for c in d["conditions"] for o in d["data_outcomes"]):
                with_data.add((cond, outcome))
        for cond, outcome, rows, excluded in d["rows"]:
            found, out = groups[(cond, outcome)]
            found.extend(S.Row(**row) for row in rows)
            out.extend(S.Excluded(**e) for e in excluded)
    for key in sorted(with_data):
        cond, outcome = key
        rows, excluded = groups[key]
        pooled = False
        for window, cls in S.cells(rows, proto):
            cell = [r for r in rows if (r.window, r.cls) == (window, cls)]
            req = S.MetaRequest(outcome=outcome, condition=cond, measure=_site_measure(cell), protocol=proto)
            left = [x for x in excluded if x.concerns(window, cls)]
            try:
                result = S.analyse_rows(cell, left, req, site.summaries.get(cond), site.vocab, loo=len(cell) <= LOO_MAX_K)
                site.analyses[(cond, outcome, window, cls)] = {"ok": True, "result": result}
                pooled = True
            except KbError as e:
                site.analyses[(cond, outcome, window, cls)] = {"ok": False, "message": e.message, "hint": e.hint,
                                                               "excluded": [x.as_dict() for x in left]}
        if not pooled and not any(k[:2] == key for k in site.analyses):
            site.analyses[(cond, outcome, None, None)] = {
                "ok": False, "message": S.nothing_message(S.MetaRequest(outcome=outcome, condition=cond), excluded),
                "excluded": [x.as_dict() for x in excluded]}

    def _order_key(item):
        (c, o, w, k), _ = item
        return (c, o) + _cell_order(site, w, k)
    site.analyses = dict(sorted(site.analyses.items(), key=_order_key))


def _cell_order(site: Site, window: str | None, cls: str | None) -> tuple:
    proto = site.kb.protocol
    w = [x.id for x in proto.windows]
    c = [x.id for x in proto.classes] + [S.COMBINED.id]
    return (w.index(window) if window in w else len(w), c.index(cls) if cls in c else len(c), str(window), str(cls))


def analyses_of(site: Site, cond: str | None = None, outcome: str | None = None) -> list[tuple[tuple, dict]]:
    """The analyses of a condition, or of an outcome, in protocol order (windows, then classes)."""
    return [(k, a) for k, a in site.analyses.items()
            if (cond is None or k[0] == cond) and (outcome is None or k[1] == outcome)]


def _site_measure(rows: list) -> str | None:
    """kb meta's default measure, except that when studies report the same outcome both as events
    and as means, the site pools the larger group (RR or SMD) and lists the others as left out,
    where kb meta asks for --measure."""
    kinds = [r.kind for r in rows]
    binary, continuous = kinds.count("binary"), kinds.count("continuous")
    if binary and continuous:
        return "rr" if binary >= continuous else "smd"
    return None


def fmt_pair(result: dict) -> dict:
    """A pooled estimate as the changes page compares and shows it: formatted numbers, k and measure."""
    m, nat = result["measure"], result["natural"]
    return {"estimate": S.fmt(nat["estimate"], m), "ci_low": S.fmt(nat["ci_low"], m), "ci_high": S.fmt(nat["ci_high"], m),
            "k": result["k"], "measure": m}


def snapshot(site: Site) -> dict:
    """What the changes page compares between builds: the evidence and the pooled estimates (a preview's
    drafts are never reported as added, nor as removed by the next build)."""
    return {"studies": {i: d["sha1"] for i, d in sorted(site.digests.items()) if not d["draft"]},
            "pooled": {"/".join(x for x in k if x): fmt_pair(a["result"]) for k, a in sorted(
                site.analyses.items(), key=lambda ka: [str(x) for x in ka[0]]) if a["ok"]}}


def compute_changes(prev: dict | None, snap: dict, info: SiteInfo) -> dict:
    """Studies added, changed or removed since the previous build, and pooled estimates that moved.
    A rebuild of the same inputs keeps the previous answer, so the page does not empty itself."""
    if prev and prev.get("snapshot") == snap and "changes" in prev:
        return prev["changes"]
    if not prev or "snapshot" not in prev:
        return {"first": True, "date": info.date, "added": sorted(snap["studies"]), "changed": [], "removed": [],
                "moved": [], "new_pooled": sorted(snap["pooled"]), "gone_pooled": []}
    before, after = prev["snapshot"]["studies"], snap["studies"]
    pb, pa = prev["snapshot"]["pooled"], snap["pooled"]
    moved = [{"key": k, "before": pb[k], "after": pa[k]} for k in sorted(set(pb) & set(pa)) if pb[k] != pa[k]]
    return {"first": False, "date": info.date, "since": prev.get("date"),
            "added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
            "changed": sorted(i for i in set(before) & set(after) if before[i] != after[i]),
            "moved": moved, "new_pooled": sorted(set(pa) - set(pb)), "gone_pooled": sorted(set(pb) - set(pa))}

