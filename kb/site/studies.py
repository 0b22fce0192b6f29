"""The study pages: the per-study worker of ``kb build`` and the one study-page context.

A worker reads, checks and renders a batch of record files and writes their pages; it hands back each
record's *digest* (the plain data the pages that span studies need of it) and its download fragments.
``kb show --format html`` renders a study page with :func:`study_page`, through the same context and
template as the site's worker (:func:`render_study`), so the two cannot drift.

The worker's state (``_W``) lives here, beside the functions forked workers run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import synthesis as S
from ..bottomline import entry_text
from ..citations import to_bibtex, to_ris
from ..comparison import record_facts
from ..config import KnowledgeBase, searched_up_to
from ..export import FORMATS, fragments
from ..records import label_from_id
from ..sources import CLASSES, SourceInfo, outcome_sources, source_info
from ..stats import year_band
from ..templating import make_env
from ..files import UNREADABLE, link_outside
from ..validate import check_file, external_link_problem, unreadable_problem
from ..yamlio import MAX_BYTES
from .output import SEPARATORS, unchanged, write_page

PARALLEL_THRESHOLD = 300  # record files from which a build parses on all cores
REGISTRY_URLS = {
    "ClinicalTrials.gov": "https://clinicaltrials.gov/study/{}",
    "ISRCTN": "https://www.isrctn.com/{}",
    "ANZCTR": "https://www.anzctr.org.au/Trial/Registration/TrialReview.aspx?ACTRN={}",
    "EudraCT": "https://www.clinicaltrialsregister.eu/ctr-search/search?query={}",
    "DRKS": "https://drks.de/search/en/trial/{}",
}


def study_links(s) -> list[dict]:
    """DOI, PubMed, PMC and registry links of a record."""
    from ..records import registry_of

    links = []
    if s.doi:
        links.append({"label": f"DOI {s.doi}", "url": f"https://doi.org/{s.doi}"})
    if s.pmid:
        links.append({"label": f"PubMed {s.pmid}", "url": f"https://pubmed.ncbi.nlm.nih.gov/{s.pmid}/"})
    if s.pmcid:
        links.append({"label": f"PubMed Central {s.pmcid}", "url": f"https://www.ncbi.nlm.nih.gov/pmc/articles/{s.pmcid}/"})
    for r in s.registrations:
        pattern = REGISTRY_URLS.get(registry_of(r) or "")
        links.append({"label": f"{registry_of(r) or 'Registry'} {r}", "url": pattern.format(r) if pattern else None})
    return links


def study_rows(s, outcomes: list[str], protocol=None, vocab=None,
               comparator: str | None = None) -> list[tuple[str, str, list[dict], list[dict]]]:
    """(condition, outcome, rows, entries left out) for every pair the study can feed, with the site's
    analysis options (kb meta's defaults, or ``--comparator C`` for one comparator outside the protocol's
    classes): a row per time window and comparator class; ``outcomes``: the study's, sorted."""
    out = []
    proto = protocol or S.DEFAULT_PROTOCOL
    for cond in dict.fromkeys(s.condition_terms):
        for outcome in outcomes:
            req = S.MetaRequest(outcome=outcome, condition=cond, protocol=proto, outcome_condition=(
                vocab.meaning("outcome", outcome).get("condition") if vocab is not None else None),
                comparators=(comparator,) if comparator else ())
            seen, rows, excluded = S.select_one(s, req)
            if seen:
                out.append((cond, outcome, [dict(vars(r)) for r in rows], [dict(vars(e)) for e in excluded]))
    return out


NO_CLASS = frozenset({None, "none", "pre-post", "mixed"})  # comparators that make no analysis of their own


def other_rows(s, outcomes: list[str], protocol=None, vocab=None) -> list[tuple[str, str, str, list[dict], list[dict]]]:
    """(condition, outcome, comparator, rows, entries left out) for each comparator of the study outside the
    protocol's classes (ECT, another drug ...), selected as ``kb meta --comparator C`` does: what the
    comparison page sets beside a review of ketamine against that comparator."""
    proto = protocol or S.DEFAULT_PROTOCOL
    default = s.comparator.type if s.comparator else None
    others = dict.fromkeys(o.comparator or default for o in s.outcomes if o.data is not None)
    return [(cond, outcome, c, rows, excluded)
            for c in others if c not in NO_CLASS and c not in proto.controls()
            for cond, outcome, rows, excluded in study_rows(s, outcomes, proto, vocab, comparator=c)]


def digest(s, sha1: str, protocol=None, vocab=None) -> dict:
    """What the pages that span studies need of one study: plain data (dicts, lists, tuples, text,
    numbers), cheap to send between processes and to cache with marshal."""
    iv = s.intervention
    outcomes = sorted({o.outcome for o in s.outcomes})
    return {
        "id": s.id, "sha1": sha1, "title": s.title, "label": s.label, "year": s.year,
        "design": s.design, "n": s.n, "conditions": s.condition_terms, "topics": list(s.topics),
        "retracted": s.retracted, "draft": not s.is_evidence, "added": s.added.isoformat(),
        "updated": s.updated.isoformat() if s.updated else None, "key_finding": s.key_finding,
        "drug": iv.drug if iv else None, "route": iv.route if iv else None,
        "dose": list(iv.dose_mg_per_kg) if iv and iv.dose_mg_per_kg else [],
        "infusion_minutes": iv.infusion_minutes if iv else None, "infusions": iv.infusions if iv else None,
        "schedule": iv.schedule if iv else None,
        "ae": list(s.adverse_events.events) if s.adverse_events else [],
        "ae_summary": s.adverse_events.summary if s.adverse_events else None,
        "durability": s.durability.summary if s.durability else None,
        "relapse": s.durability.relapse if s.durability else None,
        "outcomes": outcomes,
        "data_outcomes": sorted({o.outcome for o in s.outcomes if o.data is not None}),
        "related": [r.id for r in s.related], "rows": study_rows(s, outcomes, protocol, vocab), "page": f"studies/{s.id}.html",
        # a record's own numbers per outcome, for bottom lines' {study: ID, outcome: TERM}
        "entry_texts": {o: [entry_text(e) for e in s.outcomes if e.outcome == o and e.data is not None]
                        for o in outcomes},
        "other_rows": other_rows(s, outcomes, protocol, vocab), "compare": record_facts(s),
    }




def render_study(tpl, kb: KnowledgeBase, s, d: dict, known_ids, frags: dict | None = None,
                 label_of: Callable[[str], str | None] | None = None, searched: Any = None) -> str:
    """A study page: ``tpl`` (study.html) rendered with :func:`study_context`, for the site and for kb show.
    ``searched``: :func:`kb.config.searched_up_to` of ``kb``, when already asked (a worker asks once)."""
    return tpl.render(kb=kb, vocab=kb.vocab, searched=searched if searched is not None else searched_up_to(kb),
                      **study_context(s, d, kb.vocab, known_ids, frags, label_of))


def study_page(kb: KnowledgeBase, s) -> str:
    """The study page of one record, as the site shows it (``kb show --format html``): related records
    are named by their labels, read from their files."""
    from ..validate import record_files

    known = {p.stem: p for p in record_files([kb.studies_dir])} if kb.studies_dir.is_dir() else {}
    tpl = make_env(kb).get_template("study.html")
    d = digest(s, "", kb.protocol, kb.vocab)
    return render_study(tpl, kb, s, d, known, label_of=lambda i: record_label(known[i]))


def study_context(s, d: dict, vocab, known_ids: set[str] | frozenset | dict, frags: dict | None = None,
                  label_of: Callable[[str], str | None] | None = None) -> dict:
    """Everything study.html needs beyond the record: links, citations, the analyses it feeds, each
    source's class and the outcomes whose numbers rest only on weak sources.
    ``frags`` are the study's download fragments, when already made (their BibTeX and RIS are reused);
    ``label_of`` gives a related record's label ("Feder 2014") from its id."""
    fed = {(c, o): [(r["window"], r["cls"]) for r in rows] for c, o, rows, _ in d["rows"] if rows}
    feeds = [(c, o, w, k) for c in vocab_order(vocab, "condition", (c for c, _ in fed))
             for o in sorted(o for cc, o in fed if cc == c) for w, k in fed[(c, o)]]
    return {
        "study": s, "root": "../", "links": study_links(s),
        "bibtex": frags["bibtex"] if frags else to_bibtex([s]).rstrip("\n"),
        "ris": frags["ris"] if frags else to_ris([s]).rstrip("\n"),
        "related": [{"id": r.id, "relation": r.relation, "present": r.id in known_ids, "note": r.note,
                     "label": (label_of(r.id) if label_of and r.id in known_ids else None) or label_from_id(r.id)}
                    for r in s.related],
        "feeds": [{"condition": c, "outcome": o, "slug": "-".join(x for x in (c, o, w, k) if x),
                   "window": w, "cls": k} for c, o, w, k in feeds],
        "sources": [source_view(i, vocab) for i in map(source_info, s.sources)],
        "weak": [weak_sources(o, s.sources, vocab) for o in s.outcomes],
        # the page writes its condition, outcome and route filters beside their labels itself
        "filters": {"design": [vocab.label("design", s.design)], "year": [year_band(s.year)]},
    }


def source_view(info: SourceInfo, vocab) -> dict:
    """A source as the study page lists it: URL, class label, note, and whether it is weak."""
    return {"url": info.url, "cls": info.cls, "label": vocab.label("source_class", info.cls), "note": info.note,
            "bare_ip": info.bare_ip, "weak": info.weak}


def weak_sources(outcome, sources, vocab) -> str | None:
    """What an outcome's numbers rest on when every source of them is weak ("a press release", "a
    commercial or clinic site and a bare IP address"), else None: the study page's marker."""
    if outcome.data is None:
        return None
    infos = outcome_sources(outcome, sources)
    if not infos or not all(i.weak for i in infos):
        return None
    kinds = sorted({"bare-ip" if i.bare_ip else i.cls for i in infos},
                   key=lambda k: (k == "bare-ip", CLASSES.index(k) if k in CLASSES else 0))
    return " and ".join("a bare IP address" if k == "bare-ip" else "an " + vocab.label("source_class", k).lower()
                        if vocab.label("source_class", k)[:1].lower() in "aeiou"
                        else "a " + vocab.label("source_class", k).lower() for k in kinds)


def record_label(path: str | Path) -> str | None:
    """'Feder 2014' for the record file at ``path``, as Study.label gives it, read without full
    validation (None if unreadable)."""
    from .. import yamlio
    from ..records import label_from_id, surname

    try:
        data = yamlio.load(Path(path)).data
    except (yamlio.YamlProblem, OSError):
        return None
    authors, year = data.get("authors"), data.get("year")
    if isinstance(authors, list) and authors and isinstance(authors[0], str) and isinstance(year, int):
        return f"{surname(authors[0])} {year}"
    return label_from_id(Path(path).stem)


def vocab_order(vocab, category: str, terms: Iterable[str]) -> list[str]:
    """``terms`` once each, in the vocabulary's order (terms it does not know last, alphabetically)."""
    order = {t: i for i, t in enumerate(vocab.terms(category))}
    return sorted(set(terms), key=lambda t: (order.get(t, len(order)), t))


_W: dict[str, Any] = {}


def _worker_init(kb: KnowledgeBase, out: str, known_ids: dict, spool: str | None, drafts: bool = False,
                 sandboxed: bool = False) -> None:
    _W.update(kb=kb, out=out, known=known_ids, spool=spool, drafts=drafts, env=make_env(kb, sandboxed=sandboxed),
              labels={}, searched=searched_up_to(kb))
    _W["tpl"] = _W["env"].get_template("study.html")


def listed(d: dict, drafts: bool) -> bool:
    """Whether the site shows the study: evidence always, a draft only in a preview (--include-drafts)."""
    return drafts or not d["draft"]


def _related_label(rid: str) -> str | None:
    """A related record's label, read from its file (known: id -> path under studies/), once per worker."""
    labels = _W["labels"]
    if rid not in labels:
        rel = _W["known"].get(rid)
        labels[rid] = record_label(_W["kb"].studies_dir / rel) if rel else None
    return labels[rid]


ROW_TEMPLATES = {"_study_row.html": "row_html", "_dosing_row.html": "dose_row_html"}


def has_dosing(d: dict) -> bool:
    """Whether a condition page's dosing table lists the study."""
    return bool(d["dose"] or d["infusions"] or d["schedule"])


def study_row_html(env, d: dict, vocab, template: str = "_study_row.html") -> str:
    """The study's row in a table of condition and outcome pages (both one folder deep): rendered
    once per study, where the record is parsed, and joined by every page that lists the study."""
    return env.get_template(template).render(d=d, vocab=vocab).strip("\n")


def _process(batch: tuple[int, list[tuple[str, str | None]]]) -> list[dict]:
    """Parse, check, render and write one batch of record files. Returns per file: stamp, sha1,
    digest (None with problems when the record has errors), page hash, and download fragments
    (in memory, or spooled to files named by the batch number for a full build)."""
    number, items = batch
    kb, out, tpl = _W["kb"], _W["out"], _W["tpl"]
    results = []
    spooled: dict[str, list[str]] = {f: [] for f in FORMATS}
    within = kb.links_within
    for rel, old_page_sha in items:
        path = kb.studies_dir / rel
        target = link_outside(path, within) if within is not None else None
        if target is not None:  # never read: its content is not the knowledge base's
            results.append({"rel": rel, "stamp": _stamp(path), "sha1": "", "digest": None,
                            "problems": [external_link_problem(f"studies/{rel}", target)]})
            continue
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                # read(MAX_BYTES + 1) alone would allocate (and map) a 1 MB buffer per record
                raw = fh.read(min(st.st_size, MAX_BYTES) + 1)
                if len(raw) > st.st_size and len(raw) <= MAX_BYTES:  # grew since the stat
                    raw += fh.read(MAX_BYTES + 1 - len(raw))
        except FileNotFoundError as e:
            if not os.path.islink(path):  # deleted meanwhile
                results.append({"rel": rel, "gone": True, "error": str(e)})
                continue
            results.append(_unreadable(rel, path, e))  # a dangling link: reported, as kb validate reports it
            continue
        except OSError as e:  # a link loop, no permission: left out and reported
            results.append(_unreadable(rel, path, e))
            continue
        except OSError as e:  # there, but unreadable (permissions): left out and listed, never silently
            try:
                st = os.stat(path)
            except OSError:
                results.append({"rel": rel, "gone": True, "error": str(e)})
                continue
            # stamped with an impossible mtime and no hash, so that the next build reads it again
            results.append({"rel": rel, "stamp": (st.st_size, -1), "sha1": "", "digest": None,
                            "problems": [unreadable_problem(f"studies/{rel}", e)]})
            continue
        sha1 = hashlib.sha1(raw).hexdigest()
        # an oversized file is checked from its path, so that the message gives its real size
        res = check_file(path, kb.vocab, f"studies/{rel}", raw=raw if st.st_size <= MAX_BYTES else None)
        errors = [p for p in res.problems if p.severity == "error"]
        item = {"rel": rel, "stamp": (st.st_size, st.st_mtime_ns), "sha1": sha1}
        if res.study is None or errors:
            item.update(digest=None, problems=errors)
            results.append(item)
            continue
        s = res.study
        d = digest(s, sha1, kb.protocol, kb.vocab)
        frags = fragments(s)
        d["page_sha"] = None  # a draft outside a preview has no page
        if listed(d, _W["drafts"]):
            html = render_study(tpl, kb, s, d, _W["known"], frags, _related_label, _W["searched"])
            data = html.encode("utf-8")
            page_sha = hashlib.sha1(data).hexdigest()
            target = os.path.join(out, d["page"])
            if not unchanged(target, data, page_sha, old_page_sha):
                write_page(target, data)
                item["written"] = True
            d["page_sha"] = page_sha
        d["row_html"] = study_row_html(_W["env"], d, kb.vocab)
        if has_dosing(d):  # the only studies a dosing table lists
            d["dose_row_html"] = study_row_html(_W["env"], d, kb.vocab, "_dosing_row.html")
        # the downloads hold the evidence only, in a preview too: a draft's fragments never enter them
        if _W["spool"]:
            if not d["draft"]:
                for f in FORMATS:
                    spooled[f].append(frags[f])
        else:
            item["fragments"] = None if d["draft"] else frags
        item["digest"] = d
        results.append(item)
    if _W["spool"]:
        for f in FORMATS:
            with open(os.path.join(_W["spool"], f"{number:07d}.{f}"), "w", encoding="utf-8") as fh:
                fh.write(SEPARATORS[f].join(spooled[f]))
    return results


def _unreadable(rel: str, path: Path, err: OSError) -> dict:
    """A record file left out unread. A file without read permission is stamped with an impossible mtime:
    chmod does not change the mtime, so the next build must try it again (and take it back once readable)."""
    import errno

    stamp = _stamp(path)
    if err.errno in (errno.EACCES, errno.EPERM) and stamp != UNREADABLE:
        stamp = (stamp[0], -1)
    return {"rel": rel, "stamp": stamp, "sha1": "", "digest": None,
            "problems": [unreadable_problem(f"studies/{rel}", err)]}


def _stamp(path: Path) -> tuple[int, int]:
    """(size, mtime_ns) as kb.files.scan gives it, for a file left out unread: the next build then
    sees it unchanged, and lists its problem again without reading it."""
    try:
        st = os.stat(path)
    except OSError:
        return UNREADABLE
    return st.st_size, st.st_mtime_ns


def known_ids(stamps: dict, digests: dict, drafts: bool) -> dict[str, str]:
    """id -> path of the record files a study page may link to (and name by label): every one but the
    drafts left out (those the digests know of)."""
    return {Path(rel).stem: rel for rel in stamps if (d := digests.get(rel)) is None or listed(d, drafts)}


def render_studies(kb, out: Path, todo: list[str], old_page_sha: dict, known_ids, spool, jobs, progress,
                   drafts: bool = False, sandboxed: bool = False) -> list[dict]:
    """Parse, check, render and write the study pages of the record files ``todo``, in batches: in this
    process for a few, on all cores for many (``sandboxed``: in Jinja's sandbox). Returns what the worker
    returns for each file."""
    jobs = jobs or os.cpu_count() or 1
    size = 100 if len(todo) < 20_000 else 400
    batches = [(i, [(rel, old_page_sha.get(rel)) for rel in todo[j:j + size]])
               for i, j in enumerate(range(0, len(todo), size))]
    results: list[dict] = []
    if progress:
        progress("studies", 0, len(todo))
    if jobs <= 1 or len(todo) < PARALLEL_THRESHOLD:
        _worker_init(kb, str(out), known_ids, spool, drafts, sandboxed)
        for b in batches:
            results.extend(_process(b))
            if progress:
                progress("studies", len(results), len(todo))
        return results
    from ..files import worker_pool

    # jobs - 1 forked workers take the first batches; this process works through the rest meanwhile
    # (a parent that only waited would still compete for a core while unpickling results)
    split = len(batches) * (jobs - 1) // jobs
    with worker_pool(jobs - 1, initializer=_worker_init, initargs=(kb, str(out), known_ids, spool, drafts, sandboxed)) as pool:
        futures = [pool.submit(_process, b) for b in batches[:split]]
        _worker_init(kb, str(out), known_ids, spool, drafts, sandboxed)
        mine: list[dict] = []
        for b in batches[split:]:
            mine.extend(_process(b))
            if progress:
                progress("studies", len(mine) + sum(len(f.result()) for f in futures if f.done()), len(todo))
        for f in futures:
            results.extend(f.result())
            if progress:
                progress("studies", len(results) + len(mine), len(todo))
    results.extend(mine)
    return results
