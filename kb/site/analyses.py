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
from .state import SiteInfo

LOO_MAX_K = 40  # leave-one-out (sensitivity) up to this many studies


@dataclass
class Site:
    """Everything the pages that span studies are made from."""

    kb: KnowledgeBase
    info: SiteInfo | None  # None for a snapshot of the evidence at a commit (kb.site.history): no pages
    digests: dict[str, dict]  # id -> digest
    summaries: dict
    review_notes: dict = field(default_factory=dict)  # review id -> comparisons/<id>.yaml (kb.review_notes)
    # (condition, outcome, window, comparator class) -> result or error; window and class are None for a
    # (condition, outcome) with data that nothing could be pooled from. The pages add a result's
    # risk-of-bias picture ("picture": kb.robplot's layout, and its SVG) the first time they show it.
    analyses: dict[tuple, dict] = field(default_factory=dict)
    changes: dict = field(default_factory=dict)  # since the last build of the same output folder
    since_commit: dict = field(default_factory=dict)  # since an earlier commit (kb.site.history.since_commit)
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
    analysis per time window and comparator class (never pooled together; kb.synthesis.analyse_groups),
    from the digests' rows; a review's left-out entry says how many of its trials kb holds."""
    groups = row_groups(site)
    included = included_of(site)
    with_data = set()
    for d in sorted(site.digests.values(), key=lambda d: d["id"]):
        if not d["draft"]:  # a preview's drafts are listed as left out, and make no analysis of their own
            for cond, outcome in ((c, o) for c in d["conditions"] for o in d["data_outcomes"]):
                with_data.add((cond, outcome))
    groups = {key: (rows, S.describe_reviews(rows, excluded, included)) for key, (rows, excluded) in groups.items()}
    site.analyses = S.analyse_groups(groups, with_data, site.kb.protocol, site.summaries, site.vocab, LOO_MAX_K)


def row_groups(site: Site, comparator: str | None = None) -> dict[tuple[str, str], tuple[list, list]]:
    """(condition, outcome) -> (rows, entries left out), from the digests in id order: what kb meta's
    selection gives with its defaults, or with ``--comparator C`` for a comparator outside the protocol's
    classes (the digests hold those rows for the studies that have such a comparator)."""
    groups: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
    for d in sorted(site.digests.values(), key=lambda d: d["id"]):
        items = d["rows"] if comparator is None else [(c, o, r, e) for c, o, comp, r, e in d["other_rows"]
                                                        if comp == comparator]
        for cond, outcome, rows, excluded in items:
            found, out = groups[(cond, outcome)]
            found.extend(S.Row(**row) for row in rows)
            out.extend(S.Excluded(**e) for e in excluded)
    return dict(groups)


def included_of(site: Site) -> dict[str, tuple[str, ...]]:
    """review id -> the trials the digests record as included in it (related: pooled-in)."""
    return S.included_map((d["id"], "pooled-in", review) for d in site.digests.values()
                          for review, _ in d["compare"]["pooled_in"])


def comparison(site: Site) -> dict:
    """The comparison page's data: kb.comparison over the digests (the same rows ``kb compare`` makes)."""
    from ..comparison import compare

    groups = {None: row_groups(site)}

    def rows_of(cond: str, outcome: str, comparator: str | None):
        if comparator not in groups:
            groups[comparator] = row_groups(site, comparator)
        return groups[comparator].get((cond, outcome), ([], []))

    facts = {d["id"]: d["compare"] for d in site.digests.values()}
    return compare(facts, rows_of, site.review_notes, site.kb.protocol, site.vocab, site.summaries)


def analyses_of(site: Site, cond: str | None = None, outcome: str | None = None) -> list[tuple[tuple, dict]]:
    """The analyses of a condition, or of an outcome, in protocol order (windows, then classes)."""
    return [(k, a) for k, a in site.analyses.items()
            if (cond is None or k[0] == cond) and (outcome is None or k[1] == outcome)]


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
    return {"first": False, "date": info.date, "since": prev.get("date"), **diff_snapshots(prev["snapshot"], snap)}


def diff_snapshots(before: dict, after: dict) -> dict:
    """Two :func:`snapshot` s compared: the studies added, removed and changed (by content), the pooled
    estimates that moved (measure, estimate, CI or k differ, as shown), and the results new or gone.
    The changes page compares builds with it, and kb.site.history compares commits."""
    sb, sa = before["studies"], after["studies"]
    pb, pa = before["pooled"], after["pooled"]
    moved = [{"key": k, "before": pb[k], "after": pa[k]} for k in sorted(set(pb) & set(pa)) if pb[k] != pa[k]]
    return {"added": sorted(set(sa) - set(sb)), "removed": sorted(set(sb) - set(sa)),
            "changed": sorted(i for i in set(sb) & set(sa) if sb[i] != sa[i]),
            "moved": moved, "new_pooled": sorted(set(pa) - set(pb)), "gone_pooled": sorted(set(pb) - set(pa))}

