"""The checks on a record's evidence: its outcome entries' numbers (counts, effects, definitions,
time points, sources) and its sources' hosts. ``kb validate`` runs them on every record that fits the
schema (kb.validate.record_checks calls :func:`evidence_checks`); each finding goes through ``add``
with its place in the record, so it is reported with the file, line and field.
"""

from __future__ import annotations

from typing import Any, Callable

from .records import Study
from .sources import CLASSES, WARN_CLASSES, is_bare_ip, url_key, outcome_sources

POOLED_DESIGNS = frozenset({"rct", "crossover-rct", "open-label", "cohort", "case-series", "other"})  # not reviews
RATIO_MEASURES = {"rr", "or", "hr"}


def check_arm_counts(events: Any, total: Any, loc: tuple, add: Callable[..., None]) -> None:
    """An arm cannot have more events than participants (also checked on records the schema refuses)."""
    if isinstance(events, int) and isinstance(total, int) and events > total:
        add((*loc, "events"), f"events ({events}) exceed the arm's total ({total})", code="counts")


def evidence_checks(study: Study, add: Callable[..., None]) -> None:
    """Every check of the record's outcome numbers and source hosts, then its multi-arm entries."""
    crossover = study.design == "crossover-rct"
    for i, o in enumerate(study.outcomes):
        base = ("outcomes", i)
        d = o.data
        if d is None:
            continue
        if d.type in ("binary", "continuous"):
            if o.counts is None:
                add((*base, "data"), "say whether these numbers were stated in the source or derived",
                    hint="add `counts: stated` or `counts: derived` (with a derivation)", code="counts-flag")
            if o.counts == "derived" and not o.derivation:
                add((*base, "counts"), "derived counts need a `derivation` saying how they were computed",
                    code="counts-flag")
        if d.type == "binary":
            for j, arm in enumerate(d.arms):
                check_arm_counts(arm.events, arm.total, (*base, "data", "arms", j), add)
        if d.type in ("binary", "continuous") and study.n_randomized is not None:
            totals = [a.total if d.type == "binary" else a.n for a in d.arms]
            if crossover:
                for j, t in enumerate(totals):
                    if t > study.n_randomized:
                        add((*base, "data", "arms", j), f"arm total {t} is above n_randomized ({study.n_randomized})",
                            code="counts")
            elif sum(totals) > study.n_randomized:
                add((*base, "data", "arms"),
                    f"arm totals add up to {sum(totals)}, above n_randomized ({study.n_randomized})",
                    hint="for a crossover trial set design: crossover-rct", code="counts")
        if d.type == "effect":
            if d.measure in RATIO_MEASURES:
                for name in ("value", "ci_low", "ci_high"):
                    v = getattr(d, name)
                    if v is not None and v <= 0:
                        add((*base, "data", name), f"a {d.measure.upper()} must be above 0, got {v}",
                            hint="ratios are given on their natural scale, not as logs", code="effect")
            if d.ci_low is not None and d.ci_high is not None:
                if d.ci_low > d.ci_high:
                    add((*base, "data", "ci_low"), f"ci_low ({d.ci_low}) is above ci_high ({d.ci_high})", code="effect")
                elif not d.ci_low <= d.value <= d.ci_high and o.pool:
                    add((*base, "data", "value"),
                        f"estimate {d.value} lies outside its CI [{d.ci_low}, {d.ci_high}]",
                        hint="if the source prints it so, set pool: false with a pool_note", code="effect")
            if (d.ci_low is None) != (d.ci_high is None):
                add((*base, "data"), "give both ci_low and ci_high, or neither", code="effect")
        if d.type == "binary" and not o.definition:
            add((*base, "data"), "binary data need a `definition`: what one event is",
                hint="e.g. definition: '>=50% fall in MADRS from baseline' or 'participants reporting nausea'",
                code="definition")
        if o.timepoint_days is None and o.pool and study.design in POOLED_DESIGNS and (d.type == "effect" or len(d.arms) == 2):
            add((*base, "timepoint"), "no timepoint_days: these numbers cannot be placed in a time window, "
                "so they are never pooled", severity="warning",
                hint="add timepoint_days (e.g. 1 for 24 h, 0.167 for 4 h, 7 for day 7)", code="timepoint")
        if not o.pool and not o.pool_note:
            add((*base, "pool"), "pool: false needs a pool_note saying why", code="counts-flag")
        source_checks(study, o, base, add)
        if d is not None:
            weak_source_check(study, o, base, add)

    for i, src in enumerate(study.sources):
        if is_bare_ip(src.url):
            add(("sources", i), f"the source {src.url} is a bare IP address: nothing says who publishes it",
                hint="cite the publisher's, PubMed's or the trial registry's page instead (a mirror of "
                     "PubMed at http://<ip>/<PMID> is https://pubmed.ncbi.nlm.nih.gov/<PMID>/)",
                code="bare-ip")
    multi_arm_checks(study, add)
    unpooled_trial_check(study, add)


NO_NUMBERS = "No poolable numbers"


def unpooled_trial_check(study: Study, add: Callable[..., None]) -> None:
    """A randomised trial either gives some analysis numbers or says why it cannot: entries kept out with
    a pool_note, or a note starting "No poolable numbers:" (what was searched, what the sources give)."""
    if study.design not in ("rct", "crossover-rct") or not study.is_evidence or study.retracted:
        return
    if any(o.data is not None for o in study.outcomes) or NO_NUMBERS.lower() in (study.notes or "").lower():
        return  # pooled numbers, or numbers kept out each with its pool_note, or the reason in notes
    if any(r.relation in ("same-trial", "secondary-analysis") for r in study.related):
        return  # another report of a trial: its numbers may live in the linked record
    add(("outcomes",) if study.outcomes else ("design",),
        "this trial gives no analysis any numbers and does not say why", severity="warning",
        hint=f"add outcome entries with data and a source, or a note '{NO_NUMBERS}: <what was searched and what the "
             "sources give>'", code="no-numbers")


def source_checks(study: Study, o: Any, base: tuple, add: Callable[..., None]) -> None:
    """Numbers need a source a reviewer can check: the page (one of the record's sources, never a bare
    IP address) and the place on it (a table, figure, page or the abstract's sentence)."""
    src = o.source
    if src is None or (not src.url and not src.locator):
        add((*base, "data"), "numbers without a source: say where they were read",
            hint="add source: {url: <the page, listed in sources>, locator: 'Table 2'}", code="no-source")
        return
    if not src.url:
        add((*base, "source"), f"the source '{src.locator}' names no page",
            hint="add `url:` with the page the numbers were read on (one of the record's sources)", code="no-source")
    if not src.locator:
        add((*base, "source"), "the source names no place on the page: a reviewer cannot check the numbers",
            hint="add `locator:` with the table, figure or page, or quote the abstract's sentence", code="no-locator")
    if src.url and url_key(src.url) not in {url_key(s.url) for s in study.sources}:
        if is_bare_ip(src.url):  # a listed one is reported once, under sources
            add((*base, "source", "url"), f"the source {src.url} is a bare IP address",
                hint="cite the publisher's, PubMed's or the registry's page instead", code="bare-ip")
        else:
            add((*base, "source", "url"), f"the source {src.url} is not in the record's sources",
                severity="warning", hint="list it under `sources:` too (with `class:` if kb's guess is wrong)",
                code="source-unlisted")


def weak_source_check(study: Study, o: Any, base: tuple, add: Callable[..., None]) -> None:
    """Warn when an outcome's numbers rest only on press releases or commercial sites
    (the URLs in its `source` text, else all the record's sources: kb.sources.outcome_sources)."""
    infos = outcome_sources(o, study.sources)
    if not infos or not all(i.cls in WARN_CLASSES for i in infos):
        return
    kinds = sorted({i.cls for i in infos}, key=CLASSES.index)
    what = " and ".join({"press-release": "a press release", "commercial": "a commercial or clinic site"}[k]
                        for k in kinds)
    where = "its `source`" if o.source and o.source.url else "the record's sources"
    add((*base, "source") if o.source else (*base, "data"),
        f"these numbers rest only on {what} ({where}: {', '.join(i.url for i in infos)})",
        severity="warning",
        hint="find the numbers in the paper, on PubMed or in the trial registry, and cite that page in `source:`",
        code="weak-source")


def shared_controls(study: Study) -> list[tuple[int, int, str]]:
    """(first entry, later entry, arm) for entries of one analysis (same outcome, timepoint and
    comparator) that reuse the same control arm: a multi-arm trial entered as two comparisons."""
    seen: dict[tuple, int] = {}
    found = []
    for i, o in enumerate(study.outcomes):
        d = o.data
        if d is None or d.type == "effect" or len(d.arms) != 2 or not o.pool:
            continue  # an entry kept out of pooling cannot count its control twice
        control = d.arms[1].model_dump()
        key = (o.outcome, o.timepoint_days, o.comparator or (study.comparator.type if study.comparator else None),
               tuple(sorted(control.items())))
        if key in seen:
            found.append((seen[key], i, d.arms[1].label))
        else:
            seen[key] = i
    return found


def multi_arm_checks(study: Study, add: Callable[..., None]) -> None:
    for first, later, arm in shared_controls(study):
        add(("outcomes", later, "data", "arms", 1),
            f"the control arm '{arm}' is the same as in outcomes[{first}]: a shared control counted twice "
            "if both were pooled (kb pools one entry per study and time window)", severity="warning",
            hint="combine the ketamine arms into one entry, or split the control group between the comparisons "
                 "(Cochrane Handbook 23.3.4)", code="shared-control")
