"""PRISMA 2020 flow counts (Page et al., BMJ 2021;372:n71) from the search log and the decisions.

Field names are those of the PRISMA2020 R package's template (Haddaway et al. 2022,
``inst/extdata/PRISMA.csv``) where one exists; kb's own counts (references never screened,
unresolved conflicts, reports awaiting full-text assessment) are kept apart, so no reference
vanishes from the diagram. Every box's arithmetic is checked and each check is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import KnowledgeBase
from . import store
from .decide import load_state

NOT_RETRIEVABLE = "not retrievable"


@dataclass
class Check:
    name: str
    formula: str
    ok: bool


@dataclass
class Prisma:
    fields: dict  # PRISMA2020 template names -> counts (dbr_excluded as "Reason, n; Reason, n")
    kb: dict  # kb's own counts
    excluded_reasons: dict[str, int]
    databases: list[dict]  # per search: database, found
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict:
        return {"prisma2020": self.fields, "kb": self.kb, "full_text_exclusions": self.excluded_reasons,
                "searches": self.databases,
                "checks": [{"name": c.name, "formula": c.formula, "ok": c.ok} for c in self.checks],
                "ok": self.ok}


SAME_STUDY = ("same-trial", "secondary-analysis", "companion")


def count_studies(kb: KnowledgeBase, reports: list[store.ScreeningRef]) -> int:
    """How many studies the included ``reports`` are: each report is matched (kb.dedup) to its record
    in studies/, and records linked by ``related:`` (same-trial, secondary-analysis, companion) are
    one study. A report with no record (no draft could be written) is a study of its own."""
    from ..importer import entry_of_ref, known_records
    from ..validate import record_files

    if not reports:
        return 0
    files = record_files([kb.studies_dir]) if kb.studies_dir.is_dir() else []
    index, _, _ = known_records(files)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ids: list[str] = []
    links: list[tuple[str, str]] = []
    for ref in reports:
        match = index.match(entry_of_ref(store.as_reference(ref.data), ref.key))
        if match is None or match.entry.path is None:
            ids.append("screening:" + ref.key)
            continue
        sid = match.entry.label
        ids.append(sid)
        data = match.entry.payload if isinstance(match.entry.payload, dict) else {}
        for r in data.get("related") or []:
            if isinstance(r, dict) and r.get("relation") in SAME_STUDY and isinstance(r.get("id"), str):
                links.append((sid, r["id"]))
    for a, b in links:
        if b in ids:
            parent[find(a)] = find(b)
    return len({find(i) for i in ids})


def prisma(kb: KnowledgeBase) -> Prisma:
    log = store.read_log(kb)
    state = load_state(kb)
    db = [s for s in log.searches if not s.get("register")]
    reg = [s for s in log.searches if s.get("register")]
    database_results = sum(s.get("found", 0) for s in db)
    register_results = sum(s.get("found", 0) for s in reg)
    duplicates = sum(s.get("duplicates", 0) for s in log.searches)
    unreadable = sum(s.get("failed", 0) for s in log.searches)
    in_set = len(state.refs)
    ta = {k: state.at(k, "title-abstract").outcome for k in state.refs}
    ft = {k: state.at(k, "full-text") for k in state.refs if ta[k] == "full-text"}
    not_screened = sum(1 for o in ta.values() if o == "unscreened")
    ta_conflicts = sum(1 for o in ta.values() if o == "conflict")
    records_excluded = sum(1 for o in ta.values() if o == "excluded")
    sought = len(ft)
    records_screened = in_set - not_screened
    reasons: dict[str, int] = {}
    not_retrieved = included = ft_conflicts = awaiting = 0
    for ks in ft.values():
        o = ks.outcome
        if o == "unscreened":
            awaiting += 1
        elif o == "conflict":
            ft_conflicts += 1
        elif o == "included":
            included += 1
        elif (ks.reason or "").lower() == NOT_RETRIEVABLE:
            not_retrieved += 1
        else:
            r = ks.reason or "no reason recorded"
            reasons[r] = reasons.get(r, 0) + 1
    included_keys = [k for k, ks in ft.items() if ks.outcome == "included"]
    studies = count_studies(kb, [state.refs[k] for k in included_keys])
    assessed = sought - not_retrieved - awaiting
    ft_excluded = sum(reasons.values())
    other = log.other_methods
    fields = {
        "database_results": database_results,
        "register_results": register_results,
        "website_results": other.get("websites", 0),
        "organisation_results": other.get("organisations", 0),
        "citations_results": other.get("citation_searching", 0),
        "duplicates": duplicates,
        "excluded_automatic": 0,
        "excluded_other": unreadable,
        "records_screened": records_screened,
        "records_excluded": records_excluded,
        "dbr_sought_reports": sought,
        "dbr_notretrieved_reports": not_retrieved,
        "dbr_assessed": assessed,
        "dbr_excluded": "; ".join(f"{r}, {n}" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "new_studies": studies,
        "new_reports": included,
    }
    own = {"records_after_removal": in_set, "records_not_screened": not_screened,
           "title_abstract_conflicts": ta_conflicts, "full_text_awaiting": awaiting,
           "full_text_conflicts": ft_conflicts, "full_text_excluded": ft_excluded,
           "studies_note": ("reports of one trial are grouped by the related: links (same-trial, "
                            "secondary-analysis, companion) of their records in studies/")}
    identified = database_results + register_results
    removed = duplicates + unreadable
    checks = [
        Check("studies <= reports", f"{studies} <= {included}", studies <= included),
        Check("identified = removed + kept", f"{identified} = {duplicates} duplicates + {unreadable} unreadable + "
              f"{in_set} in the screening set", identified == removed + in_set),
        Check("screened <= identified - removed", f"{records_screened} <= {identified} - {removed}",
              records_screened <= identified - removed),
        Check("kept = screened + not screened", f"{in_set} = {records_screened} + {not_screened}",
              in_set == records_screened + not_screened),
        Check("excluded <= screened", f"{records_excluded} <= {records_screened}", records_excluded <= records_screened),
        Check("screened = excluded + sought + conflicts", f"{records_screened} = {records_excluded} + {sought} + "
              f"{ta_conflicts}", records_screened == records_excluded + sought + ta_conflicts),
        Check("sought = assessed + not retrieved (+ awaiting)", f"{sought} = {assessed} + {not_retrieved} + {awaiting}",
              sought == assessed + not_retrieved + awaiting),
        Check("assessed = excluded + included + conflicts", f"{assessed} = {ft_excluded} + {included} + {ft_conflicts}",
              assessed == ft_excluded + included + ft_conflicts),
    ]
    dbs = [{"search": s["id"], "database": s.get("database"), "date_searched": s.get("date_searched"),
            "found": s.get("found", 0), "register": bool(s.get("register"))} for s in log.searches]
    return Prisma(fields, own, reasons, dbs, checks)


def text(p: Prisma) -> list[str]:
    f, k = p.fields, p.kb
    out = ["PRISMA 2020 flow (from searches.yaml and screening/decisions)", "", "Identification"]
    for s in p.databases:
        out.append(f"  {s['database'] or 'database not recorded'} ({s['search']}"
                   + (f", searched {s['date_searched']}" if s["date_searched"] else "") + f"): n = {s['found']:,}")
    out.append(f"  records identified from databases: n = {f['database_results']:,}; registers: n = "
               f"{f['register_results']:,}")
    if f["website_results"] or f["organisation_results"] or f["citations_results"]:
        out.append(f"  other methods: websites n = {f['website_results']:,}, organisations n = "
                   f"{f['organisation_results']:,}, citation searching n = {f['citations_results']:,}")
    out.append(f"  records removed before screening: duplicates n = {f['duplicates']:,}; marked ineligible by "
               f"automation tools n = 0; other reasons (unreadable) n = {f['excluded_other']:,}")
    out += ["", "Screening",
            f"  records screened: n = {f['records_screened']:,} (not yet screened: n = {k['records_not_screened']:,}; "
            f"unresolved conflicts: n = {k['title_abstract_conflicts']:,})",
            f"  records excluded (by reviewers; none by tools): n = {f['records_excluded']:,}",
            f"  reports sought for retrieval: n = {f['dbr_sought_reports']:,}",
            f"  reports not retrieved: n = {f['dbr_notretrieved_reports']:,}",
            f"  reports assessed for eligibility: n = {f['dbr_assessed']:,} (awaiting assessment: n = "
            f"{k['full_text_awaiting']:,}; unresolved conflicts: n = {k['full_text_conflicts']:,})",
            f"  reports excluded: n = {k['full_text_excluded']:,}"]
    for r, n in sorted(p.excluded_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        out.append(f"    {r}: n = {n:,}")
    out += ["", "Included", f"  studies included in review: n = {f['new_studies']:,}",
            f"  reports of included studies: n = {f['new_reports']:,}", f"  ({k['studies_note']})", "", "Checks"]
    for c in p.checks:
        out.append(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.formula}")
    return out


# -- the diagram ----------------------------------------------------------------------------------

LINE_H = 16
BOX_W = 330
GAP = 26


def _box(x: float, y: float, lines: list[tuple[str, bool]]) -> dict:
    return {"x": x, "y": y, "w": BOX_W, "h": 12 + LINE_H * len(lines),
            "lines": [{"text": t, "bold": b} for t, b in lines]}


def layout(p: Prisma, uid: str = "prisma") -> dict:
    """Boxes, arrows and bands of the PRISMA 2020 flow diagram (databases and registers column), with
    kb's own counts (never screened, conflicts, awaiting assessment) in the boxes they belong to."""
    f, k = p.fields, p.kb
    left, right = 44, 44 + BOX_W + 40
    rows: list[tuple[list, list | None, str]] = []
    ident = [("Records identified from:", True)]
    ident += [(f"{s['database'] or 'database not recorded'} (n = {s['found']:,})", False) for s in p.databases[:6]]
    if len(p.databases) > 6:
        ident.append((f"... {len(p.databases) - 6} more searches", False))
    ident += [(f"Databases (n = {f['database_results']:,})", False), (f"Registers (n = {f['register_results']:,})", False)]
    removed = [("Records removed before screening:", True), (f"Duplicate records (n = {f['duplicates']:,})", False),
               (f"Marked ineligible by automation tools (n = {f['excluded_automatic']:,})", False),
               (f"Removed for other reasons: unreadable (n = {f['excluded_other']:,})", False)]
    rows.append((ident, removed, "Identification"))
    rows.append(([(f"Records screened (n = {f['records_screened']:,})", True),
                  (f"Not yet screened (n = {k['records_not_screened']:,})", False),
                  (f"Unresolved conflicts (n = {k['title_abstract_conflicts']:,})", False)],
                 [(f"Records excluded (n = {f['records_excluded']:,})", True), ("by reviewers; none by tools", False)],
                 "Screening"))
    rows.append(([(f"Reports sought for retrieval (n = {f['dbr_sought_reports']:,})", True)],
                 [(f"Reports not retrieved (n = {f['dbr_notretrieved_reports']:,})", True)], "Screening"))
    excl = [(f"Reports excluded (n = {k['full_text_excluded']:,}):", True)]
    excl += [(f"{r} (n = {n:,})", False) for r, n in sorted(p.excluded_reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    rows.append(([(f"Reports assessed for eligibility (n = {f['dbr_assessed']:,})", True),
                  (f"Awaiting assessment (n = {k['full_text_awaiting']:,})", False),
                  (f"Unresolved conflicts (n = {k['full_text_conflicts']:,})", False)], excl, "Screening"))
    rows.append(([(f"Studies included in review (n = {f['new_studies']:,})", True),
                  (f"Reports of included studies (n = {f['new_reports']:,})", True)], None, "Included"))
    boxes, arrows, bands = [], [], []
    y = 12.0
    prev = None
    for main, side, band in rows:
        mb = _box(left, y, main)
        h = mb["h"] if band == "Screening" else max(mb["h"], 100)  # room for the band's rotated label
        if side:
            sb = _box(right, y, side)
            h = max(h, sb["h"])
            mb["h"] = sb["h"] = h
            boxes.append(sb)
            arrows.append({"x1": left + BOX_W, "y1": y + h / 2, "x2": right - 2, "y2": y + h / 2})
        mb["h"] = h
        boxes.append(mb)
        if prev is not None:
            arrows.append({"x1": left + BOX_W / 2, "y1": prev["y"] + prev["h"], "x2": left + BOX_W / 2, "y2": y - 2})
        if bands and bands[-1]["label"] == band:
            bands[-1]["h"] = y + h - bands[-1]["y"]
        else:
            bands.append({"label": band, "y": y, "h": h})
        prev = mb
        y += h + GAP
    desc = " ".join(line for line in text(p)[2:] if line.strip() and not line.startswith("Checks")
                    and not line.lstrip().startswith(("ok ", "FAIL")))
    return {"uid": uid, "width": right + BOX_W + 8, "height": y - GAP + 12, "band_w": 28, "boxes": boxes,
            "arrows": arrows, "bands": bands, "title": "PRISMA 2020 flow diagram",
            "desc": " ".join(desc.split())}


def svg(p: Prisma, kb: KnowledgeBase | None = None, uid: str = "prisma") -> str:
    from ..templating import make_env

    return make_env(kb).get_template("_prisma.svg").render(p=layout(p, uid))
