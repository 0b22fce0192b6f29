"""`kb show`: one record as readable text, YAML, JSON or an HTML page."""

from __future__ import annotations

import json
import textwrap

from .config import KnowledgeBase
from .records import Study, record_data
from .templating import make_env
from . import yamlio

FORMATS = ("text", "yaml", "json", "html")


def _wrap(label: str, text: str, width: int = 88) -> str:
    body = textwrap.fill(text, width=width, initial_indent=" " * 2, subsequent_indent=" " * 2)
    return f"{label}\n{body}"


def _data_line(o) -> str:
    d = o.data
    if d is None:
        return ""
    if d.type == "binary":
        return "; ".join(f"{a.label} {a.events}/{a.total}" for a in d.arms)
    if d.type == "continuous":
        return "; ".join(f"{a.label} mean {a.mean:g} (SD {a.sd:g}, n={a.n})" for a in d.arms)
    ci = f" [{d.ci_low:g}, {d.ci_high:g}]" if d.ci_low is not None and d.ci_high is not None else ""
    return f"{d.measure.upper()} {d.value:g}{ci}"


def as_text(kb: KnowledgeBase, s: Study) -> str:
    v = kb.vocab
    out: list[str] = []
    if s.retracted:
        r = s.retraction
        out.append("!" * 72)
        out.append(f"!! RETRACTED{' in ' + r.date if r and r.date else ''}"
                   f"{': ' + r.notice if r and r.notice else ''}")
        if r and r.reason:
            out.append(f"!! {r.reason}")
        out.append("!! Never pooled; do not rely on its results.")
        out.append("!" * 72)
    out.append(f"{s.id}  [{s.status}]")
    out.append(s.title or "(title not verified)")
    if s.authors:
        out.append(", ".join(s.authors) + (", et al." if s.authors_truncated else ""))
    out.append(s.source_line())
    ids = [f"DOI {s.doi}" if s.doi else "", f"PMID {s.pmid}" if s.pmid else "", f"{s.pmcid}" if s.pmcid else "",
           *s.registrations]
    if any(ids):
        out.append("  ".join(i for i in ids if i))
    out.append("")
    design = v.label("design", s.design)
    if s.blinding and s.blinding != "not-applicable":
        design += f", {s.blinding}"
    n = f"; n = {s.n}" if s.n is not None else ""
    out.append(f"Design      {design}{n}")
    if s.conditions:
        conds = ", ".join(v.label("condition", c.term) + (f" ({c.subtype})" if c.subtype else "") for c in s.conditions)
        out.append(f"Conditions  {conds}")
    if s.topics:
        out.append(f"Topics      {', '.join(s.topics)}")
    if s.intervention:
        i = s.intervention
        bits = [v.label("drug", i.drug), v.label("route", i.route)]
        if i.dose_mg_per_kg:
            bits.append(" / ".join(f"{d:g}" for d in i.dose_mg_per_kg) + " mg/kg")
        if i.infusion_minutes:
            bits.append(f"over {i.infusion_minutes:g} min")
        if i.infusions:
            bits.append(f"{i.infusions} infusion{'s' * (i.infusions != 1)}")
        if i.schedule:
            bits.append(i.schedule)
        out.append(f"Ketamine    {', '.join(bits)}")
    if s.comparator:
        out.append(f"Comparator  {v.label('comparator', s.comparator.type)}"
                   + (f": {s.comparator.description}" if s.comparator.description else ""))
    if s.key_finding:
        out += ["", _wrap("Key finding", s.key_finding)]
    if s.outcomes:
        out += ["", "Outcomes"]
        for o in s.outcomes:
            head = "  - " + v.label("outcome", o.outcome)
            extra = ", ".join(x for x in (o.instrument, o.timepoint) if x)
            head += f" ({extra})" if extra else ""
            out.append(head)
            if o.data:
                flag = f" [counts {o.counts}]" if o.counts else ""
                out.append(f"      {_data_line(o)}{flag}{'' if o.pool else ' [not pooled]'}")
            if o.result:
                out.append(textwrap.fill(o.result, 88, initial_indent=" " * 6, subsequent_indent=" " * 6))
    if s.results:
        out += ["", "Results"] + [textwrap.fill(r, 88, initial_indent="  - ", subsequent_indent="    ") for r in s.results]
    if s.adverse_events and (s.adverse_events.summary or s.adverse_events.events):
        ae = s.adverse_events.summary or ", ".join(s.adverse_events.events)
        out += ["", _wrap("Adverse events", ae)]
    if s.durability and (s.durability.summary or s.durability.relapse):
        out += ["", _wrap("Durability", " ".join(x for x in (s.durability.summary, s.durability.relapse) if x))]
    if s.sources:
        out += ["", "Sources"] + [f"  - {src.url}" + (f" ({src.note})" if src.note else "") for src in s.sources]
    if s.unverified_fields:
        out += ["", "Not verified: " + ", ".join(s.unverified_fields)]
    return "\n".join(out) + "\n"


def show(kb: KnowledgeBase, study: Study, fmt: str = "text") -> str:
    if fmt == "yaml":
        return yamlio.dump(record_data(study))
    if fmt == "json":
        return json.dumps(study.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return make_env(kb).get_template("study.html").render(kb=kb, study=study, vocab=kb.vocab, root="")
    return as_text(kb, study)
