"""The pages that span studies: home, condition, outcome, search, methods, changes, downloads,
Summary of Findings and comparison (kb and the published meta-analyses) pages, the feed and the sitemaps; their contexts (unit-tested), and the writing of
them all, on all cores for a big site.

The workers' state (``_P``) lives here, beside the function forked workers run.
"""

from __future__ import annotations

import functools

import os
import re
from typing import Any, Callable

from markupsafe import Markup

from .. import bottomline
from .. import synthesis as S
from ..config import searched_up_to
from ..protocol import ELIGIBILITY
from ..export import FILE_NAMES
from ..records import label_from_id
from ..robplot import layout as robplot_layout
from ..stats import year_band
from .analyses import LOO_MAX_K, Site, analyses_of, comparison, fmt_pair
from .output import Writer
from .studies import ROW_TEMPLATES, has_dosing, study_row_html, vocab_order

AGGREGATE_PARALLEL = 3000  # studies above which condition and outcome pages are rendered on all cores
FOREST_MAX_K = 80  # larger analyses are summarised, not drawn
LIST_MAX = 200  # long lists on the changes page are cut here, with a count
SITEMAP_MAX = 50_000  # URLs per sitemap file (the protocol's limit)


def template_helpers(site: Site) -> dict:
    """Functions the pages that span studies may call: ``study_label(id)`` ("Feder 2014", for links and
    left-out lists that would otherwise show a record id) and ``public_reason(reason)`` (a left-out
    entry's reason without kb meta's options)."""
    digests, vocab = site.digests, site.vocab

    def study_label(rid: str) -> str:
        d = digests.get(rid)
        return d["label"] if d else label_from_id(rid)

    by_id: dict = {}

    def prose(text: str, root: str = "") -> Markup:
        """A summary's prose with its placeholders filled from the current analyses (kb.bottomline)."""
        if not by_id:
            by_id.update({S.analysis_id(k): a for k, a in site.analyses.items()})
        return bottomline.render(
            text, by_id, lambda rid: digests[rid]["label"] if rid in digests else None,
            lambda rid: f"{root}studies/{rid}.html",
            lambda aid: f"{root}conditions/{aid.split('/')[0]}.html#o-{aid.replace('/', '-')}",
            lambda rid, outcome, entry: _entry(digests.get(rid), outcome, entry),
            lambda rid: bottomline.source_kind(digests[rid]["design"] if rid in digests else None))

    return {"study_label": study_label, "public_reason": lambda reason: public_reason(reason, vocab), "prose": prose}


def _entry(d: dict | None, outcome: str, entry: int) -> str | None:
    texts = (d or {}).get("entry_texts", {}).get(outcome, [])
    return texts[entry] if entry < len(texts) else None


@functools.lru_cache(maxsize=16384)  # reasons repeat across rows and pages
def public_reason(reason: str, vocab=None) -> str:
    """A left-out entry's reason (or a "nothing to pool" message) from kb.synthesis, as a clinician
    reads it: without the `kb meta` options that would include the entry, which kb meta prints for
    reviewers, and with vocabulary labels instead of terms."""
    text = reason
    m = re.match(r"^comparator (\S+) \(analyse it with --comparator \S+\)$", text)
    if m:
        label = vocab.label("comparator", m.group(1)) if vocab is not None else m.group(1)
        return f"compared with {label[:1].lower() + label[1:]}, not with a placebo control"
    lab = (lambda cat, t: vocab.label(cat, t)) if vocab is not None else (lambda cat, t: t)
    m = re.match(r"^no eligible study for \S+(?: for \S+)?: (\d+ (?:entry was|entries were) left out)$", text)
    if m:  # an analysis's message (kb.synthesis.nothing_message), as "Not pooled: ..." shows it
        return f"no study could be pooled; {m.group(1)}"
    m = re.match(r"^(\S+) is a secondary condition here \(primary: (\S+)\)", text)
    if m:
        return (f"{lab('condition', m.group(1))} is a secondary condition in this study, whose main condition is "
                f"{lab('condition', m.group(2)).lower()}")
    m = re.match(r"^route (\S+): not intravenous", text)
    if m:
        return f"not intravenous (route: {lab('route', m.group(1)).lower()})"
    text = re.sub(r"^marked pool: false \((.+)\)$", r"not pooled: \1", text)
    text = text.replace("marked pool: false", "not pooled")
    text = re.sub(r"outside --timepoint \S+", "outside the time window analysed", text)
    text = re.sub(r";\s*--[a-z][a-z-]* includes it", "", text)  # "...; --any-condition includes it"
    text = re.sub(r"\s*\((?:left out by |analyse it with )?--[a-z][a-z-]*(?: \S+)?(?: includes it)?\)", "", text)
    return text.strip()


def page_globals(site: Site) -> dict:
    """What every page that spans studies may use: the knowledge base, its vocabulary, the build
    information, when the evidence was last searched (``searched``), number formatting and
    :func:`template_helpers`."""
    from ..wording import per_1000_text

    return {"kb": site.kb, "vocab": site.vocab, "info": site.info, "fmt": S.fmt, "per_1000_text": per_1000_text,
            "searched": searched_up_to(site.kb), **template_helpers(site)}


# -- page contexts (unit-tested) ---------------------------------------------------------


def headline(site: Site, cond: str) -> dict | None:
    """What a condition's card and bottom line show: the first outcome, in vocabulary order, pooled from
    at least two trials in one time window and comparator class; else the first single-trial result,
    which the page says rests on one trial."""
    single = None
    for outcome in site.vocab.terms("outcome"):
        for (c, o, w, k), a in analyses_of(site, cond, outcome):
            if a["ok"]:
                if a["result"]["k"] >= 2:
                    return {"outcome": outcome, "result": a["result"], "pooled": True}
                single = single or {"outcome": outcome, "result": a["result"], "pooled": False}
    return single


def home_context(site: Site) -> dict:
    cards = []
    for cond in site.conditions():
        studies = site.studies(cond)
        summary = site.summaries.get(cond)
        evidence = [d for d in studies if not d["draft"]]
        cards.append({"condition": cond, "count": len(evidence), "drafts": len(studies) - len(evidence),
                      "primary": sum(d["conditions"][0] == cond for d in evidence),
                      "bottom_line": summary.bottom_line if summary else None, "headline": headline(site, cond)})
    latest = sorted(site.digests.values(), key=lambda d: (d["added"], d["id"]), reverse=True)[:10]
    evidence = site.evidence()
    return {"root": "", "cards": cards, "latest": latest, "total": len(evidence),
            "drafts": len(site.digests) - len(evidence), "retracted": sum(d["retracted"] for d in evidence)}


def _by_study(studies: list[dict], pick: Callable[[dict], Any]) -> list[dict]:
    return [d for d in studies if pick(d)]


def condition_context(site: Site, cond: str) -> dict:
    studies = site.studies(cond)
    summary = site.summaries.get(cond)
    rows = []
    for outcome in site.vocab.terms("outcome"):
        rows += _sof_group(site, analyses_of(site, cond, outcome))
    ae = []
    for term in vocab_order(site.vocab, "adverse_event", [t for d in studies for t in d["ae"]]):
        reporting = [d for d in studies if term in d["ae"]]
        ae.append({"term": term, "studies": reporting})
    return {
        "root": "../", "condition": cond, "summary": summary, "studies": studies, "sof": rows, "controls": S.CONTROLS,
        "headline": headline(site, cond),
        "durability": _by_study(studies, lambda d: d["durability"] or d["relapse"]
                                or {"durability", "maintenance"} & set(d["topics"])),
        "dosing": _by_study(studies, has_dosing),
        "ae": ae, "ae_summaries": _by_study(studies, lambda d: d["ae_summary"]),
        "practice": _by_study(studies, lambda d: "practice-and-ethics" in d["topics"]
                              or d["design"] in ("guideline", "consensus-statement")),
        "primary_count": sum(d["conditions"][0] == cond and not d["draft"] for d in studies),
        "drafts": sum(d["draft"] for d in studies),
    }


def _sof_group(site: Site, analyses: list[tuple[tuple, dict]]) -> list[dict]:
    """The Summary of Findings rows of one condition and outcome (one per time window and comparator
    class). An entry left out of every one of them (a review, a retraction, a secondary condition) is
    listed once, under the last row (``shared_excluded``), not once per row; each row lists its own."""
    rows = [_sof_row(site, key, a) for key, a in analyses]
    if not rows:
        return rows
    shared = [e for e in rows[0]["excluded"] if e.get("window") is None and e.get("cls") is None]
    for row in rows:
        row["excluded"] = [e for e in row["excluded"] if e.get("window") is not None or e.get("cls") is not None]
    rows[-1]["shared_excluded"] = shared
    return rows


def _sof_row(site: Site, key: tuple, a: dict) -> dict:
    cond, outcome, window, cls = key
    slug = "-".join(x for x in (cond, outcome, window, cls) if x)
    row = {"condition": cond, "outcome": outcome, "ok": a["ok"], "slug": slug,
           "window": site.kb.protocol.window(window) if window else None,
           "cls": S.class_info(site.kb.protocol, cls, site.vocab)}
    if not a["ok"]:
        row.update(message=a["message"], excluded=a["excluded"])
        return row
    r = a["result"]
    uid = f"forest-{slug}"
    if "picture" not in a:  # the risk-of-bias picture's layout, made once for the condition and the outcome page
        a["picture"] = robplot_layout(r, site.vocab, uid=f"rob-{slug}", trials=r["k"] <= FOREST_MAX_K)
    row.update(result=r, pair=fmt_pair(r), excluded=r["excluded"], uid=uid,
               draw=r["k"] <= FOREST_MAX_K, studies=r["studies"], rob=a["picture"])
    return row


def outcome_context(site: Site, outcome: str) -> dict:
    rows = []
    for cond in site.vocab.terms("condition"):
        rows += _sof_group(site, analyses_of(site, cond, outcome))
    studies = site.studies(outcome=outcome)
    return {"root": "../", "outcome": outcome, "sof": rows, "studies": studies, "drafts": sum(d["draft"] for d in studies)}


SOF_CSV = "summary-of-findings.csv"
SOF_COLUMNS = ("condition", "outcome", "time_window", "comparator", "event", "k", "participants", "relative_effect",
               "comparator_per_1000", "ketamine_per_1000", "difference_per_1000", "nnt", "points", "certainty",
               "sentence")


def sof_table(site: Site) -> list[dict]:
    """Every pooled result as one flat Summary of Findings row (the downloadable CSV and HTML table)."""
    from ..wording import per_1000_text

    out = []
    for (cond, outcome, window, cls), a in site.analyses.items():
        if not a["ok"]:
            continue
        r = a["result"]
        m, nat, pct = r["measure"], r["natural"], int(round(r["level"] * 100))
        ab = r.get("absolute") or {}
        p = ab.get("per_1000")
        out.append({
            "condition": site.vocab.label("condition", cond), "outcome": site.vocab.label("outcome", outcome),
            "time_window": r["window"]["label"] if r.get("window") else "",
            "comparator": r["comparator_class"]["label"] if r.get("comparator_class") else "",
            "event": r.get("definition") or "; ".join(dict.fromkeys(x["definition"] for x in r["studies"] if x.get("definition"))), "k": r["k"], "participants": r["participants"],
            "relative_effect": f"{r['measure_label']} {S.fmt(nat['estimate'], m)} ({pct}% CI {S.fmt(nat['ci_low'], m)} "
                               f"to {S.fmt(nat['ci_high'], m)})" + (" (one trial)" if r["k"] == 1 else ""),
            "comparator_per_1000": p["comparator"] if p else "",
            "ketamine_per_1000": f"{p['ketamine']} ({p['ketamine_ci_low']} to {p['ketamine_ci_high']})" if p else "",
            "difference_per_1000": f"{per_1000_text(p['difference'])} ({per_1000_text(p['difference_ci_low'])} to "
                                   f"{per_1000_text(p['difference_ci_high'])})" if p else "",
            "nnt": ab["nnt"]["text"] if ab.get("nnt") else "",
            "points": f"{ab['points']:+.1f} on the {ab['instrument']} ({ab['points_ci_low']:+.1f} to "
                      f"{ab['points_ci_high']:+.1f}); {ab['method']}" if ab.get("points") is not None and ab.get("instrument") else "",
            "certainty": r["certainty"]["level"].replace("-", " "), "sentence": r["sentence"],
        })
    return out


def sof_csv(rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SOF_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def comparison_context(site: Site) -> dict:
    """The comparison page (kb and the published meta-analyses): kb.comparison's rows over the digests."""
    return {"root": "", "cmp": comparison(site), "linkable": set(site.digests),
            "abbr": {"or": "OR", "rr": "RR", "rd": "RD", "smd": "SMD", "md": "MD", "hr": "HR"}}


def methods_context(site: Site) -> dict:
    from ..effects import MEASURE_LABELS
    from ..metaanalysis import METHOD_LABELS

    return {"root": "", "rules": S.RULES, "controls": S.CONTROLS, "measures": MEASURE_LABELS, "prisma": _prisma(site),
            "protocol": site.kb.protocol, "combined": S.COMBINED, "eligibility_labels": ELIGIBILITY,
            "methods": METHOD_LABELS, "analyses": sum(a["ok"] for a in site.analyses.values()),
            "pooled": sum(a["ok"] and a["result"]["k"] > 1 for a in site.analyses.values()),
            "total": len(site.evidence()), "forest_max": FOREST_MAX_K, "loo_max": LOO_MAX_K}


def _prisma(site: Site) -> dict | None:
    """The PRISMA 2020 flow diagram for the methods page, from the search log and the screening decisions
    (kb.screening.prisma); None when the knowledge base keeps no search log."""
    from markupsafe import Markup

    from ..errors import KbError
    from ..screening import prisma as P
    from ..screening.store import log_path

    if not log_path(site.kb).is_file():
        return None
    try:
        p = P.prisma(site.kb)
    except KbError as e:  # a broken log is kb validate's and kb prisma's to report; the page says so
        return {"error": e.message}
    return {"svg": Markup(P.svg(p, site.kb, uid="prisma-methods")), "text": P.text(p)}


# -- rendering and writing them ------------------------------------------------------------


class _Pages:
    """Renders the pages that span studies, one task at a time (so that tasks can be shared out)."""

    def __init__(self, site: Site, env, common: dict):
        from ..forest import forest_html

        self.site, self.env = site, env
        self.common = {**common, "rows_html": self.rows_html}
        self.forest = lambda result, uid: forest_html(result, site.kb, uid=uid, env=env)

        def robplot(picture: dict) -> Markup:  # rendered once per analysis, shown on two pages
            if "svg" not in picture:
                picture["svg"] = Markup(env.get_template("_robplot.svg").render(p=picture))
            return picture["svg"]
        self.robplot = robplot

    def rows_html(self, studies: list[dict], template: str = "_study_row.html") -> Markup:
        key = ROW_TEMPLATES[template]
        out = []
        for d in studies:
            if key not in d:
                d[key] = study_row_html(self.env, d, self.site.vocab, template)
            out.append(d[key])
        return Markup("\n".join(out))

    def tasks(self) -> list[tuple[str, str, str | None]]:
        """(path, kind, argument) of every page, the heaviest (condition and outcome pages) first."""
        site = self.site
        heavy = [(f"conditions/{c}.html", "condition", c) for c in site.conditions()]
        heavy += [(f"outcomes/{o}.html", "outcome", o) for o in site.outcomes()]
        heavy.sort(key=lambda t: -len(site.studies(condition=t[2]) if t[1] == "condition" else site.studies(outcome=t[2])))
        light = [(name, name, None) for name in ("index.html", "outcomes/index.html", "search.html", "methods.html",
                                                   "changes.html", "downloads.html", "404.html", "feed.xml",
                                                   "summary-of-findings.html", "comparison.html")]
        light.append((f"downloads/{SOF_CSV}", "sof-csv", None))
        return heavy + light

    def render(self, kind: str, arg: str | None) -> str:
        site = self.site

        def render(name: str, **ctx) -> str:
            return self.env.get_template(name).render(**self.common, **ctx)

        if kind == "condition":
            return render("condition.html", forest=self.forest, robplot=self.robplot, **condition_context(site, arg))
        if kind == "outcome":
            return render("outcome.html", forest=self.forest, robplot=self.robplot, **outcome_context(site, arg))
        if kind == "index.html":
            return render("index.html", **home_context(site))
        if kind == "outcomes/index.html":
            return render("outcomes.html", root="../", outcomes=[
                {"outcome": o, "studies": sum(not d["draft"] for d in site.studies(outcome=o)),
                 "pooled": len({k[0] for k, a in site.analyses.items() if k[1] == o and a["ok"]})}
                for o in site.outcomes()])
        if kind == "search.html":
            ds = site.digests.values()
            filters = {
                "condition": [site.vocab.label("condition", c) for c in site.conditions()],
                "outcome": [site.vocab.label("outcome", o) for o in site.outcomes()],
                "design": [site.vocab.label("design", t) for t in vocab_order(site.vocab, "design", (d["design"] for d in ds))],
                "route": [site.vocab.label("route", t) for t in vocab_order(site.vocab, "route", (d["route"] for d in ds
                                                                                           if d["route"]))],
                "year": list(dict.fromkeys(year_band(y) for y in sorted({d["year"] for d in ds}))),
            }
            return render("search.html", root="", filters=filters, studies=site.studies())
        if kind == "methods.html":
            return render("methods.html", **methods_context(site))
        if kind == "changes.html":
            return render("changes.html", root="", changes=site.changes, since_commit=site.since_commit,
                          digests=site.digests, list_max=LIST_MAX)
        if kind == "downloads.html":
            return render("downloads.html", root="", total=len(site.evidence()), files=FILE_NAMES)
        if kind == "404.html":
            return render("404.html", root=site.info.base_url or "")
        if kind == "summary-of-findings.html":
            return render("summary-of-findings.html", root="", rows=sof_table(site), csv_name=SOF_CSV)
        if kind == "comparison.html":
            return render("comparison.html", **comparison_context(site))
        if kind == "sof-csv":
            return sof_csv(sof_table(site))
        if kind == "feed.xml":
            return render("feed.xml", entries=_feed_entries(site))
        raise ValueError(kind)


_P: dict[str, Any] = {}


def _render_task(task: tuple[str, str, str | None]) -> tuple[str, str, bool]:
    """In a forked worker: render one page and write it if its bytes changed."""
    pages, writer = _P["pages"], _P["writer"]
    rel, kind, arg = task
    before = writer.written
    writer.put(rel, pages.render(kind, arg))
    return rel, writer.pages[rel], writer.written > before


def write_aggregate_pages(site: Site, env, common: dict, writer: Writer, jobs: int | None = None,
                          progress: Callable | None = None) -> None:
    """Render and write every page that spans studies; for a big site, on all cores."""
    pages = _Pages(site, env, common)
    tasks = pages.tasks()
    jobs = jobs or os.cpu_count() or 1
    done = 0
    if jobs > 1 and len(site.digests) >= AGGREGATE_PARALLEL:
        from ..files import worker_pool

        _P.update(pages=pages, writer=writer)  # inherited by the forked workers
        theirs = [t for i, t in enumerate(tasks) if i % jobs != 0]
        mine = [t for i, t in enumerate(tasks) if i % jobs == 0]
        with worker_pool(jobs - 1) as pool:
            futures = [pool.submit(_render_task, t) for t in theirs]
            for rel, kind, arg in mine:
                writer.put(rel, pages.render(kind, arg))
                done += 1
                if progress:
                    progress("pages", done, len(tasks))
            for f in futures:
                rel, sha, written = f.result()
                writer.pages[rel] = sha
                writer.written += written
                done += 1
                if progress:
                    progress("pages", done, len(tasks))
        _P.clear()
    else:
        for rel, kind, arg in tasks:
            writer.put(rel, pages.render(kind, arg))
            done += 1
            if progress:
                progress("pages", done, len(tasks))
    listed = [rel for rel, _, _ in tasks if rel.endswith(".html") and rel != "404.html"]
    for rel, text in _sitemaps(site, env, listed):
        writer.put(rel, text)


def _feed_entries(site: Site) -> list[dict]:
    ds = sorted(site.evidence(), key=lambda d: (d["updated"] or d["added"], d["id"]), reverse=True)[:50]
    return [{"d": d, "date": (d["updated"] or d["added"]) + "T00:00:00Z"} for d in ds]


def _sitemaps(site: Site, env, pages: list[str]) -> list[tuple[str, str]]:
    urls = sorted(pages) + [d["page"] for d in site.studies()]
    base = site.info.base_url or ""
    tpl = env.get_template("sitemap.xml")
    if len(urls) <= SITEMAP_MAX:
        return [("sitemap.xml", tpl.render(base=base, urls=urls, index=False))]
    parts = [urls[i:i + SITEMAP_MAX] for i in range(0, len(urls), SITEMAP_MAX)]
    out = [(f"sitemap-{n + 1}.xml", tpl.render(base=base, urls=part, index=False)) for n, part in enumerate(parts)]
    out.append(("sitemap.xml", tpl.render(base=base, urls=[name for name, _ in out], index=True)))
    return out
