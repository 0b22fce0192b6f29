"""Terminal text: `kb show` (one record as readable text, YAML, JSON or an HTML page), `kb search`'s
results, `kb meta`'s analyses and `kb stats`'s tables."""

from __future__ import annotations

import html
import json
import re
import textwrap

from typing import TYPE_CHECKING, Callable

from .config import KnowledgeBase

if TYPE_CHECKING:
    from .records import Study
    from .stats import Stats

FORMATS = ("text", "yaml", "json", "html")

# -- control characters ---------------------------------------------------------------------
# A record or an import can hold ESC, OSC, CSI and the other C0/C1 controls (YAML's "\e" escape, a
# copied terminal line): printed raw they can retitle the window, hide text or rewrite what the
# terminal shows. Everything kb prints passes through one of these.

CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F, CSI and OSC among them)."""


def safe(text: str) -> str:
    """``text`` for a terminal: each control character shown as ``\\x1b`` (visible, never obeyed);
    tab and newline kept."""
    if not CONTROLS.search(text):
        return text
    return CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def safe_json(text: str) -> str:
    """JSON text with DEL and the C1 controls escaped as ``\\u009b`` (json.dumps escapes the C0 ones
    only): the same JSON value, with nothing a terminal would obey."""
    return re.sub("[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)


def without_controls(text: str) -> str:
    """``text`` with the control characters of :data:`CONTROLS` dropped (for files: exports, downloads)."""
    return CONTROLS.sub("", text) if CONTROLS.search(text) else text


def safe_data(value):
    """``value`` (dicts, lists, strings) with :func:`safe` applied to every string in it."""
    if isinstance(value, str):
        return safe(value)
    if isinstance(value, dict):
        return {k: safe_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(safe_data(v) for v in value)
    return value


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
            if o.definition:
                out.append(textwrap.fill(f"event: {o.definition}", 88, initial_indent=" " * 6, subsequent_indent=" " * 8))
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
        from .sources import source_info

        out += ["", "Sources"]
        for info in map(source_info, s.sources):
            kind = kb.vocab.label("source_class", info.cls) + (", bare IP address" if info.bare_ip else "")
            out.append(f"  - [{kind}{'; weak source' if info.weak else ''}] {info.url}"
                       + (f" ({info.note})" if info.note else ""))
    if s.unverified_fields:
        out += ["", "Not verified: " + ", ".join(s.unverified_fields)]
    return "\n".join(out) + "\n"


def show(kb: KnowledgeBase, study: Study, fmt: str = "text") -> str:
    from . import yamlio
    from .records import record_data

    if fmt == "yaml":  # PyYAML writes control characters as escapes ("\e")
        return yamlio.dump(record_data(study))
    if fmt == "json":
        return safe_json(json.dumps(study.model_dump(mode="json"), indent=2, ensure_ascii=False)) + "\n"
    if fmt == "html":
        from .site.studies import study_page

        return safe(study_page(kb, study))
    return safe(as_text(kb, study))


# -- search results ------------------------------------------------------------------------

_MARKED = re.compile(r"<mark>(.*?)</mark>", re.S)


def _styled_snippet(snippet: str, style) -> str:
    """HTML snippet with <mark> -> terminal emphasis, everything else shown as text."""
    out, pos = [], 0
    for m in _MARKED.finditer(snippet):
        out.append(html.unescape(snippet[pos:m.start()]))
        out.append(style(html.unescape(m.group(1)), bold=True, reverse=True))
        pos = m.end()
    out.append(html.unescape(snippet[pos:]))
    return "".join(out)


def _wrapped(text: str, indent: int = 4, width: int = 100) -> str:
    return textwrap.fill(text, width=width, initial_indent=" " * indent, subsequent_indent=" " * indent,
                         break_long_words=False, break_on_hyphens=False)


def results_table(result, echo, style, vocab, width: int = 100) -> None:
    """The results page for a terminal: ranked hits with snippets, then the facet counts.

    ``echo`` and ``style`` are click.echo and click.style (colour is dropped when not a terminal).
    Every text from a record is made :func:`safe` before it is styled.
    """
    shown = f"{result.offset + 1}-{result.offset + len(result.hits)} of " if result.hits else ""
    head = f"{shown}{result.total} result{'s' * (result.total != 1)}"
    if result.query:
        head += f' for "{safe(result.query)}"'
    echo(style(head, bold=True) + style(f"  (sorted by {result.sort}; {result.seconds * 1000:.0f} ms)", dim=True))
    for rank, h in enumerate(result.hits, result.offset + 1):
        bits = [vocab.label("design", h.design)]
        if h.n is not None:
            bits.append(f"n={h.n}")
        bits.append(str(h.year))
        if h.route and h.route != "iv":
            bits.append(f"route: {h.route}")
        if h.drug in ("esketamine", "arketamine", "mixed"):
            bits.append(vocab.label("drug", h.drug))
        flag = "  " + style(" RETRACTED ", fg="white", bg="red", bold=True) if h.retracted else ""
        if h.draft:
            flag += "  " + style(" DRAFT: imported, not extracted ", fg="black", bg="yellow", bold=True)
        echo("")
        echo(style(f"{rank:>2}. {safe(h.id)}", bold=True) + "  " + style(safe(" · ".join(bits)), fg="cyan") + flag)
        echo(_wrapped(safe(h.title or "(title not verified)"), width=width))
        if h.snippet:
            # wrap the plain text first, then emphasise the marked words (two private-use characters mark
            # them, so that the record's own control characters can be made visible in between)
            plain = safe(html.unescape(_MARKED.sub(lambda m: "\ue000" + m.group(1) + "\ue001", h.snippet)))
            wrapped = _wrapped("… " + plain + " …", width=width)
            echo(re.sub("\ue000(.*?)\ue001", lambda m: style(m.group(1), bold=True, reverse=True), wrapped, flags=re.S)
                 .replace("\ue000", "").replace("\ue001", ""))
        if h.key_finding:
            echo(_wrapped(safe("Key finding: " + h.key_finding), width=width))
        if h.conditions or h.outcomes:
            extra = ", ".join(h.conditions) + (" | outcomes: " + ", ".join(h.outcomes) if h.outcomes else "")
            echo(style(_wrapped(safe(extra), width=width), dim=True))
    if result.facets and result.total:
        echo("")
        for name, counts in result.facets.items():
            if counts:
                items = "  ".join(f"{safe(str(v))} {style(str(c), bold=True)}" for v, c in counts.items())
                echo(style(f"{name:>9}", fg="magenta") + "  " + items)
    if result.suggestions:
        echo("")
        echo(style("did you mean: ", fg="yellow") + safe(" ".join(result.suggestions)))
    if result.total == 0:
        echo(style("No study matched.", fg="yellow") + " Try fewer words, --match any, or drop a filter.")


def results_csv(result) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "score", "title", "year", "design", "n", "conditions", "outcomes", "retracted", "doi", "pmid"])
    for h in result.hits:
        w.writerow([h.id, "" if h.score is None else h.score, safe(h.title or ""), h.year, h.design,
                    "" if h.n is None else h.n, ";".join(h.conditions), ";".join(h.outcomes),
                    "yes" if h.retracted else "", h.doi or "", h.pmid or ""])
    return buf.getvalue()


def meta_answer_text(answer: dict, echo: Callable[[str], None], style: Callable[..., str], vocab=None) -> None:
    """`kb meta`'s output: one analysis in full, or a Summary of Findings table (one analysis per time
    window and comparator class) followed by each analysis in full. Every text in it is made :func:`safe`."""
    answer = safe_data(answer)
    if "analyses" not in answer:
        meta_text(answer, echo, style, vocab)
        return
    rows = answer["analyses"]
    outcome = answer.get("outcome_label") or answer["outcome"]
    condition = answer.get("condition_label") or answer["condition"]
    echo(style(f"Summary of findings: {outcome.lower()}" + (f" in {condition.lower()}" if condition else "")
               + f" ({len(rows)} analyses; windows and comparator classes are never pooled together)", bold=True))
    for r in rows:
        echo(f"  - {r['headline']}. Certainty: {r['certainty']['level'].replace('-', ' ')}.")
    for bad in answer["not_pooled"]:
        w, c = bad["window"] or {}, bad["comparator_class"] or {}
        echo(f"  - {w.get('label', 'no window')}, {c.get('label', 'no comparator class')}: not pooled ({bad['message']})")
    for r in rows:
        echo("")
        echo(style(f"== {r['window']['label'] if r['window'] else ''} vs {r['comparator_class']['label'] if r['comparator_class'] else ''}"
                   f"  (--window {r['window']['id'] if r['window'] else ''} --comparator-class "
                   f"{r['comparator_class']['id'] if r['comparator_class'] else ''})", bold=True))
        meta_text(r, echo, style, vocab)


def meta_text(result: dict, echo: Callable[[str], None], style: Callable[..., str], vocab=None) -> None:
    """One analysis: its sentence, its numbers and absolute effect, then the studies, their risk of bias,
    exclusions and checks (``vocab`` names the risk-of-bias tools, domains and judgements; kb's own by default)."""
    from .synthesis import fmt
    from .wording import absolute_text

    m = result["measure"]
    nat = result["natural"]
    pct = int(round(result["level"] * 100))
    cert = result["certainty"]
    echo(style(result["sentence"], bold=True))
    echo("")
    n = f"{result['participants']:,}" + ("" if result["participants_known"] else "+")
    a = result.get("absolute") or {}
    absolute = []
    if a.get("note"):
        absolute.append(("Absolute", f"not computed: {a['note']}"))
    if a.get("per_1000"):
        p = a["per_1000"]
        span = a.get("assumed_risk_range")
        absolute.append(("Comparator risk", f"{p['comparator']} per 1000 ({a['assumed_risk_source']}"
                         + (f"; range {span[0] * 1000:.0f} to {span[1] * 1000:.0f}" if span and span[0] != span[1] else "")
                         + ")"))
        absolute.append(("With ketamine", f"{p['ketamine']} per 1000 ({pct}% CI {p['ketamine_ci_low']} to {p['ketamine_ci_high']})"))
    if absolute_text(result) and not a.get("note"):
        absolute.append(("Absolute", absolute_text(result)))
    if a.get("method") and not a.get("per_1000"):
        absolute.append(("", a["method"]))
    rows = [
        ("Time window", f"{result['window']['label']} ({result['window']['id']})" if result.get("window") else "not set"),
        ("Comparator", result["comparator_class"]["label"] if result.get("comparator_class") else "as selected"),
        ("Event", result["definition"] or "see each study's definition"),
        ("One trial" if result["k"] == 1 else "Pooled", f"{result['measure_label']} {fmt(nat['estimate'], m)} ({pct}% CI {fmt(nat['ci_low'], m)} to "
                   f"{fmt(nat['ci_high'], m)}); {result['test']} = {result['stat']:.2f}, p = {_p(result['p'])}"),
        ("Model", result["method_label"] + (" with Knapp-Hartung" if result["knha"] else "")),
        ("Studies", f"k = {result['k']}, {n} participants"
         + (f", {result['events']:,} events" if result["events"] is not None else "")),
        ("Heterogeneity", f"tau2 = {result['tau2']:.4f}, I2 = " + (f"{result['i2']:.1f}%" if result["i2"] is not None
                                                                  else "n/a")
         + f", Q = {result['q']:.2f} on {result['q_df']} df" + (f" (p = {_p(result['q_p'])})" if result["q_p"] is not None else "")),
        ("Prediction", f"{fmt(nat['pi_low'], m)} to {fmt(nat['pi_high'], m)}" if result["k"] > 1 else "n/a (one trial)"),
        *absolute,
        ("Certainty", cert["level"].replace("-", " ") + (f" (reviewer's override of '{cert['suggested']}': "
                                                          f"{cert['override']['justification']})" if cert["override"] else "")),
    ]
    for name, text in rows:
        echo(f"  {name:<15} {text}")
    for r in cert["reasons"]:
        if r["domain"] != "start":
            echo(f"  {'':<15} {r['change']:+d} {r['domain'].replace('_', ' ')}: {r['text']}")
    echo("")
    echo(style(f"  {'study':<24} {'effect':>9}  {pct}% CI{'':<12} {'weight':>7}  data", bold=True))
    for s in result["studies"]:
        s = {**s, "id": s.get("label") or s["id"]}
        d = s["data"]
        data = (f"{d['ai']:g}/{d['n1i']:g} vs {d['ci']:g}/{d['n2i']:g}" if s["kind"] == "binary" else
                f"{d['m1i']:g} ({d['sd1i']:g}) n={d['n1i']:g} vs {d['m2i']:g} ({d['sd2i']:g}) n={d['n2i']:g}"
                if s["kind"] == "continuous" else "reported effect")
        ci = f"{fmt(s['effect_ci_low'], m)} to {fmt(s['effect_ci_high'], m)}"
        echo(f"  {s['id']:<24} {fmt(s['effect'], m):>9}  {ci:<18} {s['weight']:>6.1f}%  {data}"
             + (" (derived counts)" if s["derived"] else "")
             + (f"; {s['instrument']}" if s.get("instrument") else "")
             + (f"; {s['timepoint']}" if s.get("timepoint") else "")
             + (f"; event: {s['definition']}" if s.get("definition") else ""))
    if result.get("source") == "records":  # a CSV's rows carry no assessment
        from .robplot import TEXT_KEY, text_lines
        from .vocab import load_vocabulary

        echo("")
        echo(style(f"  Risk of bias ({TEXT_KEY})", bold=True))
        for line in text_lines(result, vocab or load_vocabulary()):
            echo(f"  {line}")
    if result.get("subgroups"):
        sg = result["subgroups"]
        echo("")
        echo(style(f"  Subgroups by {sg['field']}", bold=True))
        for g in sg["groups"]:
            gn = g["natural"]
            echo(f"  {g['value']:<24} k={g['k']:<3} {fmt(gn['estimate'], m)} ({fmt(gn['ci_low'], m)} to "
                 f"{fmt(gn['ci_high'], m)})")
        if sg["p"] is not None:
            echo(f"  test for subgroup differences: Q = {sg['q_between']:.2f} on {sg['df']} df, p = {_p(sg['p'])}")
    if result["leave_one_out"]:
        echo("")
        echo(style("  Leave one out", bold=True))
        for lo in result["leave_one_out"]:
            ln = lo["natural"]
            echo(f"  without {lo['omitted']:<16} {fmt(ln['estimate'], m)} ({fmt(ln['ci_low'], m)} to {fmt(ln['ci_high'], m)})")
    if result.get("sensitivity"):
        echo("")
        echo(style("  Sensitivity analyses", bold=True))
        for sa in result["sensitivity"]:
            sn = sa["natural"]
            echo(f"  {sa['label']} (k = {sa['k']}; leaves out {', '.join(sa['omitted'])}): "
                 f"{fmt(sn['estimate'], m)} ({fmt(sn['ci_low'], m)} to {fmt(sn['ci_high'], m)})")
    if result["egger"]:
        e = result["egger"]
        echo(f"  Egger's test: intercept {e['intercept']:.2f}, t = {e['t']:.2f} on {e['df']} df, p = {_p(e['p'])}")
    elif result.get("egger_note"):
        echo(f"  Egger's test: {result['egger_note']}")
    if result["excluded"]:
        echo("")
        echo(style(f"  Left out ({len(result['excluded'])})", bold=True))
        for x in result["excluded"]:
            when = f" [{x['timepoint']}]" if x.get("timepoint") else ""
            echo(f"  {x.get('label') or x['id']}{when}: {x['reason']}")


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "< 0.0001" if p < 0.0001 else f"{p:.4f}"


def stats_tables(kb: KnowledgeBase, result: Stats) -> None:
    """`kb stats`'s tables, printed with rich (100 columns): the counts by each vocabulary field, or with
    scope drafts the draft records' counts and one line per draft."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=100)
    invalid = result.invalid_files
    if result.scope == "drafts":
        console.print(f"[bold]{escape(safe(kb.title))}[/bold]: {result.studies} draft records in {kb.studies_dir} "
                      "(imported or scaffolded, not yet extracted; not counted as evidence)")
    else:
        console.print(f"[bold]{escape(safe(kb.title))}[/bold]: {result.studies} studies in {kb.studies_dir}")
        if result.drafts:
            console.print(f"{result.drafts} draft {'record' if result.drafts == 1 else 'records'} not counted; "
                          "`kb stats --drafts` lists them")
    if result.scope != "drafts":
        if result.searched:
            console.print(f"Evidence searched up to {result.searched.up_to.isoformat()} "
                          f"(from {escape(result.searched.source)})")
        else:
            console.print("Date of the last search for new studies not recorded "
                          "(set literature_search: up_to: in kb.yaml)")
    if invalid:
        console.print(f"[red]{invalid} file(s) with errors left out; run `kb validate`[/red]")
    if result.retracted:
        console.print(f"[red]Retracted (never pooled): {', '.join(result.retracted)}[/red]")
    for name, rows in result.tables.items():
        if not rows:
            continue
        t = Table(title=f"by {name}", title_justify="left", show_edge=False, pad_edge=False)
        t.add_column(name)
        t.add_column("label")
        t.add_column("studies", justify="right")
        for term, label, n in rows:
            t.add_row(escape(safe(str(term))), escape(safe(label)) if label != term else "", str(n))
        console.print(t)
    if result.listing:
        t = Table(title="drafts", title_justify="left", show_edge=False, pad_edge=False)
        t.add_column("id", no_wrap=True)
        t.add_column("year", no_wrap=True, min_width=4)
        # one line each, cut to fit 100 columns; --format json has the whole titles
        t.add_column("title", no_wrap=True, overflow="ellipsis", max_width=48)
        t.add_column("conditions", no_wrap=True, overflow="ellipsis", max_width=20)
        for d in result.listing:
            t.add_row(d["id"], str(d["year"]), escape(safe(d["title"] or "")), escape(safe(", ".join(d["conditions"]))))
        console.print(t)


def _estimate(e: dict) -> str:
    return f"{e['measure'].upper()} {e['estimate']} ({e['ci_low']} to {e['ci_high']}), k = {e['k']}"


def changes_text(result: dict, echo: Callable[[str], None]) -> None:
    """`kb changes`: what changed in the evidence since a commit, in plain lines."""
    since, now = result["since"], result["now"]
    to = "the working tree, with uncommitted changes to the evidence" if now["uncommitted_changes"] else (
        f"the working tree (commit {now['short']}, no uncommitted changes to the evidence)" if now["short"]
        else "the working tree")
    echo(f"Changes since commit {since['short']} ({since['date']}), to {to}")
    subject = since["subject"] if len(since["subject"]) <= 96 else since["subject"][:95] + "…"
    echo(f"  {since['short']}: {subject}")
    for key, title in (("added", "Studies added"), ("changed", "Studies changed"), ("removed", "Studies removed")):
        items = result["studies"][key]
        echo(f"{title} ({len(items)}){':' if items else ''}")
        for s in items:
            echo(f"  {s['label']} ({s['id']})")
    echo(f"Estimates that moved ({len(result['moved'])}){':' if result['moved'] else ''}")
    for m in result["moved"]:
        echo(f"  {m['label']}")
        echo(f"    before: {_estimate(m['before'])}")
        echo(f"    after:  {_estimate(m['after'])}")
    for key, title in (("new_results", "New results"), ("gone_results", "Results no longer available")):
        items = result[key]
        echo(f"{title} ({len(items)}){':' if items else ''}")
        for r in items:
            echo(f"  {r['label']}: {_estimate(r['estimate'])}")
    left = result["left_out"]
    if left["since"] or left["now"]:
        echo(f"note: record files with errors are left out, as a build leaves them out: {left['since']} at "
             f"{since['short']}, {left['now']} now (a record this kb can no longer read counts as added once fixed; "
             "`kb validate` lists them)")


# -- kb compare -------------------------------------------------------------------------------------

_ABBR = {"or": "OR", "rr": "RR", "rd": "RD", "smd": "SMD", "md": "MD", "hr": "HR"}


def _effect(measure: str | None, text: str | None) -> str:
    return f"{_ABBR.get(measure, (measure or '').upper())} {text}".strip() if text else ""


def compare_reported(rep: dict) -> str:
    """A review's reported result in one line: 'OR 3.94 (1.54 to 10.10); k = 7, 185 participants;
    certainty very low', or its words when it gives no number kb could read."""
    if not rep.get("measure"):
        return "in words: " + (rep.get("result") or "no result text")
    parts = [(f"{rep['definition']}: " if rep.get("definition") else "") + _effect(rep["measure"], rep["text"])]
    size = ", ".join(x for x in (f"k = {rep['k']}" if rep.get("k") else None,
                                 f"{rep['participants']:,} participants" if rep.get("participants") else None) if x)
    if size:
        parts.append(size)
    parts.append(f"certainty {rep['certainty'].replace('-', ' ')}" if rep.get("certainty") else "certainty not recorded")
    if rep.get("pool_note"):
        parts.append(f"as printed; {rep['pool_note']}")
    return "; ".join(parts)


def compare_kb_text(res: dict) -> str:
    """kb's answer in one line (kb meta's numbers)."""
    if not res["ok"]:
        return f"k = 0: {res['message']}"
    return (f"{_effect(res['measure'], res['text'])}; k = {res['k']}, {res['participants']:,} participants; "
            f"certainty {res['certainty'].replace('-', ' ')}")


def compare_held_text(held: dict) -> str:
    n, m = len(held["included"]), len(held["with_numbers"])
    if not n:
        return "none of its trials is recorded in kb (related: pooled-in)"
    return (f"{n} of its trials in kb; {m} with numbers in this analysis"
            + (f" ({', '.join(held['with_numbers'])})" if m else ""))


def compare_repro_text(rp: dict) -> str:
    res = rp["result"]
    verdict = "agrees with the review to its printed precision" if rp["agrees"] else "does not reproduce the review"
    return f"{compare_kb_text(res)}; {verdict}"


def _hang(label: str, text: str, indent: int, width: int = 100, hang: int | None = None) -> str:
    """'label text' wrapped; continuation lines under the text, or ``hang`` columns in."""
    pad = " " * indent
    return textwrap.fill(text, width=width, initial_indent=pad + label,
                         subsequent_indent=pad + " " * (len(label) if hang is None else hang))


def compare_reasons(reasons: list[str]) -> str:
    """A candidate trial's reasons as sentences."""
    return " ".join((r[:1].upper() + r[1:]).rstrip(".") + "." for r in reasons)


def _status(c: dict) -> str:
    return {"pooled": "in kb's pool", "held, no numbers here": "kb holds it, no numbers here",
            "held, not linked to the review": "kb holds it, not linked to the review",
            "not in kb": "not in kb"}[c["status"]]


def compare_text(result: dict, echo: Callable[[str], None], style: Callable[..., str]) -> None:
    """`kb compare`'s text: per review, each reported result beside kb's, and the reproduction."""
    for rv in result["reviews"]:
        how = ("reproduction attempted: kb pools the trials it included, with its measure and model" if rv["reproduce"]
               else "set beside kb's results, not reproduced")
        echo(style(f"{rv['label']} ({rv['design']}): {how}", bold=True))
        if rv["reason"]:
            echo(_hang("Why: " if not rv["reproduce"] else "How: ", rv["reason"].rstrip(".") + ".", 2))
        if rv["method_note"]:
            echo(_hang("Model: ", rv["method_note"], 2))
        echo(_hang("Its trials in kb: ", f"{len(rv['included'])} (records with related: pooled-in to it)"
                   + (": " + ", ".join(h["label"] for h in rv["included"]) if rv["included"] else ""), 2))
        for row in rv["rows"]:
            q = row["question"]
            echo("")
            echo(style(f"  {q['text']}", bold=True))
            for note in (q["window_note"], q["comparator_note"]):
                if note:
                    echo(_hang("(", note + ")", 4))
            echo(_hang("review      ", compare_reported(row["reported"]), 4))
            echo(_hang("kb          ", compare_kb_text(row["kb"]) + " (kb meta's defaults)", 4))
            echo(_hang("its trials  ", compare_held_text(row["held"]), 4))
            rp = row["reproduction"]
            if rp:
                echo(_hang("kb, only its trials  ", compare_repro_text(rp), 4))
                echo(_hang("command     ", rp["command"], 4))
                for c in rp["candidates"]:
                    echo(_hang(f"- {c['trial']} [{c['membership']}; {_status(c)}]: ", compare_reasons(c["reasons"]), 6, hang=2))
        if rv["same_comparison"]:
            echo("")
            echo(style("  kb's own analyses of the same comparison (kb meta's defaults)", bold=True))
            for x in rv["same_comparison"]:
                echo(_hang("", f"{x['text']}: {compare_kb_text(x['kb'])}", 4))
        echo("")
    if result["not_compared"]:
        echo(style("Reviews not compared", bold=True))
        for x in result["not_compared"]:
            echo(f"  {x['label']}: {x['reason']}")


def _md(text) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def compare_markdown(result: dict) -> str:
    """`kb compare --format markdown`: the same content as tables (docs/comparison-table.md)."""
    out = ["<!-- Generated by `kb compare --format markdown`; do not edit by hand. -->", "",
           "# kb and the published meta-analyses: the comparison, as computed", ""]
    for rv in result["reviews"]:
        how = ("reproduction attempted (kb pools the trials it included, with its measure and model)" if rv["reproduce"]
               else "set beside kb's results, not reproduced")
        out += [f"## {rv['label']} ({rv['design']}): {how}", ""]
        if rv["reason"]:
            reason = rv["reason"][:1].upper() + rv["reason"][1:]
            out += [("**How.** " if rv["reproduce"] else "**Why not reproduced.** ") + _md(reason) + ".", ""]
        if rv["method_note"]:
            out += ["**Model.** " + _md(rv["method_note"]), ""]
        out += [f"**Trials it included that kb holds** (`related: pooled-in`): {len(rv['included'])}"
                + (" (" + ", ".join(h["label"] for h in rv["included"]) + ")" if rv["included"] else "") + ".", ""]
        head = ["Question", "Review (as its record gives it)", "kb, every eligible trial (kb meta's defaults)",
                "Its trials in kb"] + (["kb, its trials only"] if rv["reproduce"] else [])
        out += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for row in rv["rows"]:
            q = row["question"]
            notes = "".join(f" ({n})" for n in (q["window_note"], q["comparator_note"]) if n)
            rp = row["reproduction"]
            cells = [q["text"] + notes, compare_reported(row["reported"]), compare_kb_text(row["kb"]),
                     compare_held_text(row["held"])]
            if rv["reproduce"]:
                cells.append(compare_repro_text(rp) if rp else "not reproduced")
            out.append("| " + " | ".join(_md(x) for x in cells) + " |")
        out.append("")
        for row in rv["rows"]:
            rp = row["reproduction"]
            if not rp:
                continue
            out += [f"### {rv['label']}: {row['question']['text']}, trial by trial", "",
                    f"`{rp['command']}`", "",
                    "| Trial (review's name) | kb record | Membership of this analysis | In kb's pool | Why |",
                    "| --- | --- | --- | --- | --- |"]
            for c in rp["candidates"]:
                out.append("| " + " | ".join(_md(x) for x in (
                    c["trial"], c["id"] or "none", f"{c['membership']}: {c['basis']}", _status(c),
                    compare_reasons(c["reasons"]))) + " |")
            out.append("")
        if rv["same_comparison"]:
            out += [f"### kb's own analyses of the same comparison as {rv['label']}", "",
                    "| Question | kb (kb meta's defaults) |", "| --- | --- |"]
            out += [f"| {_md(x['text'])} | {_md(compare_kb_text(x['kb']))} |" for x in rv["same_comparison"]]
            out.append("")
    if result["not_compared"]:
        out += ["## Reviews not compared", ""]
        out += [f"- {x['label']}: {_md(x['reason'])}" for x in result["not_compared"]]
        out.append("")
    return "\n".join(out)
