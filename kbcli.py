"""kb: the command line. Each command parses options, calls one function in kb/, formats the result."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from kb import __version__
from kb.config import KnowledgeBase, open_kb
from kb.errors import KbError, NoKnowledgeBase
from kb.terminal import safe, safe_json


class KbGroup(click.Group):
    """Turns kb's domain errors into one clear message and its exit code; every choice of every
    command is case-insensitive (`--measure RR`, `--format JSON`)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        for param in cmd.params:  # click then passes on the choice as listed (rr), so kb/ sees one spelling
            if isinstance(param.type, click.Choice):
                param.type.case_sensitive = False
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KbError as e:
            click.echo(safe(f"Error: {e.message}"), err=True)
            if e.hint:
                click.echo(safe(f"hint: {e.hint}"), err=True)
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # `kb search ... | head`: the reader left; not an error
            sys.stderr.close()
            ctx.exit(0)
        except Exception as e:  # a bug in kb, not bad input: one line, and the trace on request
            if os.environ.get("KB_DEBUG"):
                raise
            click.echo(safe(f"Error: internal error in kb ({type(e).__name__}: {e}); "
                            "set KB_DEBUG=1 for the traceback and please report it"), err=True)
            ctx.exit(1)


def _kb(ctx: click.Context, required: bool = True) -> KnowledgeBase | None:
    obj = ctx.find_root().obj or {}
    if "kb" not in obj:
        try:
            obj["kb"] = open_kb(obj.get("kb_dir"))
        except NoKnowledgeBase:
            if required:
                raise
            obj["kb"] = None
    return obj["kb"]


@contextlib.contextmanager
def _progress(label: str, phased: bool = False, quiet: bool = False):
    """A rich progress bar on stderr while the block runs, when stderr is a terminal; yields the
    update callback, or None (no terminal, or ``quiet``). ``phased``: the update takes
    (phase, done, total) and the phase replaces the label (kb build)."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    def update_phase(phase: str, done: int, total: int) -> None:
        bar.update(task, description=phase, completed=done, total=total)

    with bar:  # started here, stopped on the way out (an error too), before anything is printed
        yield update_phase if phased else update


@click.group(cls=KbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kb")
@click.option("--kb", "kb_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="The knowledge base folder (default: this folder or the nearest parent with a studies/ folder).")
@click.pass_context
def cli(ctx: click.Context, kb_dir: Path | None) -> None:
    """kb: an evidence knowledge base of YAML study records.

    A knowledge base is a folder with a studies/ folder (one YAML file per
    study), an optional kb.yaml and an optional templates/ folder.

    \b
    Examples:
      kb validate                 check every record
      kb stats                    what the knowledge base covers
      kb show murrough-2013       read one record
      kb --kb ~/other-kb stats    work on another knowledge base
    """
    ctx.obj = {"kb_dir": kb_dir}


def _filter_options(f):
    """The record filters of `kb search`, shared by `kb export`."""
    for option in reversed([
        click.option("--condition", multiple=True, help="Only these conditions (repeatable; synonyms accepted)."),
        click.option("--outcome", multiple=True, help="Only records reporting this outcome (repeatable)."),
        click.option("--design", multiple=True, help="Only these designs (repeatable)."),
        click.option("--route", multiple=True, help="Only this route: iv, sc, intranasal, ... (repeatable)."),
        click.option("--drug", multiple=True, help="Only this drug: racemic-ketamine, esketamine, ... (repeatable)."),
        click.option("--status", multiple=True,
                     help="Only these statuses: draft, extracted, verified, or any for all (repeatable or "
                          "comma list). Default: kb search leaves drafts out, kb export keeps them."),
        click.option("--year", metavar="RANGE", help="Publication years, e.g. 2015..2024, >=2018 or 2020."),
        click.option("--min-n", type=click.IntRange(0), help="Only studies with at least this many participants."),
    ]):
        f = option(f)
    return f


def _search_request(query: tuple[str, ...], filters: dict, **settings):
    """The SearchRequest of QUERY and the `_filter_options` (``filters``, as click passes them);
    ``settings``: sort, limit and the like."""
    from kb.search import SearchRequest

    return SearchRequest(query=" ".join(query), **{k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in filters.items()}, **settings)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1 on any warning).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one object with every problem, for CI annotations.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Processes to use (default: all cores).")
@click.pass_context
def validate(ctx: click.Context, paths: tuple[Path, ...], strict: bool, fmt: str, jobs: int | None) -> None:
    """Check record files and report every problem in every file.

    PATHS are record files or folders (default: the knowledge base's
    studies/, the reviewers' summaries/<condition>.yaml files and their
    notes on published reviews, comparisons/<review-id>.yaml). Each
    problem is one line, file:line:col: field: message.
    Exit status: 0 when clean, 1 on any error (or warning with --strict).

    \b
    Examples:
      kb validate
      kb validate studies/murrough-2013.yaml --strict
      kb validate --format json > problems.json
    """
    from kb.load import comparisons_dir, summaries_dir
    from kb.validate import validate_paths

    kb = _kb(ctx, required=not paths)
    targets = list(paths) or [kb.studies_dir]
    with _progress("validating", quiet=fmt != "text") as update:
        report = validate_paths(targets, kb.vocab if kb else None, kb_studies=kb.studies_dir if kb and paths else None,
                                base=kb.root if kb and not paths else None, jobs=jobs, progress=update,
                                keep_studies=False, summaries=summaries_dir(kb) if kb and not paths else None,
                                protocol=kb.protocol if kb else None, links_within=kb.links_within if kb else None,
                                comparisons=comparisons_dir(kb) if kb and not paths else None)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(strict), indent=2))
    else:
        for p in report.problems:
            click.echo(safe(p.format()))
        click.echo(report.summary(strict))
    ctx.exit(1 if report.failed(strict) else 0)


@cli.command()
@click.option("--rebuild", is_flag=True, help="Rebuild from scratch instead of updating what changed.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Processes for a full build (default: all cores).")
@click.option("--wait", type=click.FloatRange(0), default=600, show_default=True, metavar="SECONDS",
              help="While another kb process writes the index, wait this long for it, then give up (exit 1).")
@click.pass_context
def index(ctx: click.Context, rebuild: bool, jobs: int | None, wait: float) -> None:
    """Build or update the search index in .kb/index (kb search does this by itself).

    Only records whose content changed are re-indexed; a new kb version or a
    changed vocabulary rebuilds everything. Records with errors are left out
    and listed. One process at a time writes the index: a second one waits
    (saying so on stderr), up to --wait seconds, then exits 1 (busy).

    \b
    Examples:
      kb index
      kb index --rebuild
    """
    from kb.index import SearchIndex

    kb = _kb(ctx)
    with _progress("indexing") as update:
        report = SearchIndex(kb).refresh(rebuild=rebuild, jobs=jobs, progress=update, lock_timeout=wait,
                                         on_wait=lambda message: click.echo(message, err=True))
    for p in report.problems:
        click.echo(safe(p.format()), err=True)
    click.echo(report.summary())
    if report.problems:
        click.echo(f"{report.files_left_out} record file(s) with errors left out of the index; run `kb validate`", err=True)


SEARCH_FORMATS = ("table", "json", "csv", "ids", "bibtex", "ris")


@cli.command()
@click.argument("query", nargs=-1)
@_filter_options
@click.option("--sort", type=click.Choice(["relevance", "year", "n", "evidence"]), default="relevance",
              show_default=True, help="evidence ranks meta-analyses and RCTs above cohorts and case series.")
@click.option("--match", type=click.Choice(["auto", "all", "any"]), default="auto", show_default=True,
              help="Whether every free-text term must match (auto: all for up to 3 terms, else ranked by how many).")
@click.option("--limit", type=click.IntRange(0, 10_000), default=10, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(SEARCH_FORMATS), default="table", show_default=True,
              help="json is a stable contract (see README); ids, bibtex and ris list the hits only.")
@click.option("--no-facets", is_flag=True, help="Skip the facet counts.")
@click.pass_context
def search(ctx: click.Context, query: tuple[str, ...], sort, match, limit, offset, fmt, no_facets, **filters) -> None:
    """Search the records: free text, "phrases", AND/OR/NOT and field filters.

    Filters in the query: condition:ptsd outcome:remission design:rct
    route:iv drug:esketamine year:2015..2024 n:>=50 author:feder title:ketamine.
    Synonyms and abbreviations expand (TRD, PTSD, SI, ECT, Spravato), and so do
    clinicians' words (safe: safety, side effects; infusions: repeated,
    maintenance); question words and connectives (is, how, does, vs) are
    never required, so questions work as typed. Drafts (imported references not yet extracted) are not evidence and are
    left out; --status draft or --status any shows them, marked DRAFT.
    The index is refreshed first when records changed. Exit status: 0 with
    results, 1 with none (suggestions are shown), 2 for a malformed query.

    \b
    Examples:
      kb search "suicidal ideation rapid" --condition depression --design rct
      kb search 'condition:ptsd outcome:response year:2015..2024' --sort evidence
      kb search "blood pressure" --format json
      kb search "is ketamine safe"
      kb search ptsd --status any          # drafts too
    """
    from kb.search import search as run_search

    kb = _kb(ctx)
    req = _search_request(query, filters, sort=sort, match=match, limit=limit, offset=offset,
                          facets=not no_facets and fmt in ("table", "json"))
    with _progress("updating the index") as update:
        result = run_search(kb, req, progress=update)
    for note in result.notices:
        click.echo(safe(f"note: {note}"), err=True)
    _print_results(kb, result, fmt)
    if result.total == 0:
        ctx.exit(1)


def _meta_options(f):
    """The selection and model options shared by `kb meta` and `kb forest`."""
    options = [
        click.option("--outcome", help="The outcome to pool, e.g. response, remission, symptom-change."),
        click.option("--condition", help="Studies whose primary condition this is (synonyms accepted)."),
        click.option("--measure", type=click.Choice(["rr", "or", "rd", "smd", "md", "hr"]),
                     help="Default: rr for events, smd for means, else the reported measure."),
        click.option("--method", type=click.Choice(["REML", "DL", "PM", "FE", "MH"], case_sensitive=False),
                     default="REML", show_default=True,
                     help="REML, DerSimonian-Laird, Paule-Mandel; FE common effect; MH Mantel-Haenszel."),
        click.option("--knha", is_flag=True, help="Knapp-Hartung adjustment (t distribution, k - 1 df)."),
        click.option("--subgroup", type=click.Choice(["condition", "comparator", "route", "design", "drug",
                                                      "blinding", "counts", "instrument"]),
                     help="Pool within subgroups of this field and test the difference."),
        click.option("--comparator", multiple=True,
                     help="Comparators to pool against (repeatable). Default: saline, placebo, midazolam."),
        click.option("--window", metavar="ID",
                     help="One time window: under-12h, 24h, 2-7d or later (kb.yaml may set others). "
                          "Default: each window is its own analysis; windows are never pooled together."),
        click.option("--comparator-class", metavar="ID",
                     help="One comparator class: inert-placebo (saline, placebo) or active-placebo (midazolam). "
                          "Default: each class is its own analysis."),
        click.option("--combine-placebos", is_flag=True,
                     help="Pool inert and active placebo together (class any-placebo; certainty -1 for indirectness)."),
        click.option("--assumed-risk", type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="P",
                     help="The comparator risk for absolute effects, e.g. 0.2 (200 per 1000). "
                          "Default: the median control-group risk of the pooled studies."),
        click.option("--sensitivity/--no-sensitivity", default=True, show_default=True,
                     help="Refit without high-risk, derived or weak-source, and crossover results."),
        click.option("--timepoint", metavar="DAYS", help="Only entries in this window, e.g. 1, 0.5..7, >=7."),
        click.option("--crossover/--no-crossover", default=True, show_default=True, help="Include crossover trials."),
        click.option("--derived/--no-derived", default=True, show_default=True,
                     help="Include counts derived from percentages (marked in the output)."),
        click.option("--non-iv", is_flag=True, help="Also routes other than intravenous."),
        click.option("--esketamine", is_flag=True, help="Also esketamine (default: racemic ketamine only)."),
        click.option("--any-condition", is_flag=True,
                     help="Also studies where --condition is a secondary condition."),
        click.option("--smd-variant", type=click.Choice(["metafor", "revman5"]), default="metafor", show_default=True,
                     help="Hedges' g as metafor computes it, or with RevMan 5's approximations."),
        click.option("--level", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True,
                     help="Confidence level."),
        click.option("--ids", "ids", multiple=True, metavar="ID[,ID...]",
                     help="Pool only these records (repeatable, or a comma list). An unknown id is an error "
                          "(exit 2); a listed record that gives no numbers to an analysis is listed as left "
                          "out, with why."),
        click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Pool a CSV of study data instead of the records (metafor's column names)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _meta_request(opts: dict):
    from kb.synthesis import MetaRequest

    return MetaRequest(outcome=opts["outcome"], condition=opts["condition"], measure=opts["measure"],
                       method=opts["method"], knha=opts["knha"], subgroup=opts["subgroup"],
                       comparators=tuple(opts["comparator"]), timepoint=opts["timepoint"], crossover=opts["crossover"],
                       derived=opts["derived"], non_iv=opts["non_iv"], esketamine=opts["esketamine"],
                       any_condition=opts["any_condition"], smd_variant=opts["smd_variant"], level=opts["level"],
                       window=opts["window"], comparator_class=opts["comparator_class"],
                       combine_placebos=opts["combine_placebos"], assumed_risk=opts["assumed_risk"],
                       sensitivity=opts["sensitivity"], ids=_id_list(opts["ids"]))


def _id_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """--ids a,b --ids c -> ('a', 'b', 'c'); an empty item is a usage error."""
    ids = tuple(i.strip() for v in values for i in v.split(","))
    if any(not i for i in ids):
        raise click.BadParameter("an empty id in the list (write --ids a,b,c)", param_hint="--ids")
    return ids


def _analyse(ctx: click.Context, opts: dict, every: bool = False) -> tuple:
    """One analysis (kb forest), or with ``every`` the answer for every time window and comparator class."""
    from kb.synthesis import analyse, answer_question

    data_file = opts["data_file"]
    kb = _kb(ctx, required=data_file is None)
    return kb, (answer_question if every else analyse)(kb, _meta_request(opts), data_file=data_file)


def _note_files_left_out(result: dict) -> None:
    """The record files kb meta or kb forest left out for their errors, on standard error (JSON has them)."""
    left = result.get("files_left_out") or []
    for f in left[:3]:
        click.echo(safe(f"note: {f['file']}:{f['line']}: {f['message']} (left out)"), err=True)
    if left:
        click.echo(f"note: {len(left)} record file(s) with errors left out; run `kb validate`", err=True)


@cli.command()
@_meta_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json is a stable contract (docs/meta.md).")
@click.pass_context
def meta(ctx: click.Context, fmt: str, **opts) -> None:
    """Pool the studies' data for one outcome: a meta-analysis from the records.

    Each time window (under 12 h, about 24 h, 2 to 7 days, after 7 days)
    and each comparator class (inert placebo, active placebo) is its own
    analysis, a row of a Summary of Findings table: hours are never pooled
    with days, nor saline with midazolam unless --combine-placebos. Every
    row says what one event is, which way is better, the absolute effect
    (per 1000 and NNTB/NNTH for events; points on a scale for scores) and
    "one trial" when only one trial has data.

    Effects are computed from the raw counts (or means and SDs) at run time,
    as metafor computes them; reported effects are used as given. Every
    entry left out is listed with its reason: retracted papers, reviews,
    drafts, entries marked pool: false, non-IV routes, esketamine,
    non-control comparators. The certainty is a GRADE-style suggestion with
    its reasons; summaries/<condition>.yaml can override it.

    \b
    Examples:
      kb meta --condition depression --outcome response
      kb meta --outcome response --window 24h --comparator-class active-placebo
      kb meta --outcome response --combine-placebos --assumed-risk 0.1
      kb meta --condition depression --outcome response --comparator ect
      kb meta --outcome response --ids murrough-2013,fava-2020 --measure or --method DL
      kb meta --data trials.csv --measure or      # study,ai,n1i,ci,n2i
    """
    kb, result = _analyse(ctx, opts, every=True)
    if fmt == "json":
        click.echo(safe_json(json.dumps(result, indent=2, ensure_ascii=False)))
    else:
        from kb import terminal as render

        render.meta_answer_text(result, click.echo, click.style, kb.vocab if kb is not None else None)
        _note_files_left_out(result)


@cli.command()
@_meta_options
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the SVG here (default: standard output).")
@click.option("--force", is_flag=True, help="Overwrite an existing --output file.")
@click.pass_context
def forest(ctx: click.Context, output: Path | None, force: bool, **opts) -> None:
    """Draw the forest plot of a meta-analysis as SVG (same options as kb meta).

    The SVG has a title and description for screen readers, prints well and
    needs no plotting library. Derived counts are marked with a dagger.

    \b
    Example:
      kb forest --condition depression --outcome response -o response.svg
    """
    from kb.forest import forest_svg

    kb, result = _analyse(ctx, opts)
    svg = forest_svg(result, kb)
    if output is None:
        click.echo(svg, nl=False)
        return
    from kb.errors import RecordExists
    from kb.yamlio import write_new

    try:
        write_new(output, svg, overwrite=force)
    except RecordExists:
        raise RecordExists(f"{output} already exists; not overwriting it", hint="--force overwrites it") from None
    _note_files_left_out(result)
    click.echo(f"wrote {output} ({result['k']} studies)", err=True)


def _build(kb: KnowledgeBase, out, base_url, jobs, search, full, strict, quiet=False, include_drafts=False,
           safe_templates=False, wait: float | None = None):
    from kb.site import build_site
    from kb.site.build import WAIT

    with _progress("building", phased=True, quiet=quiet) as update:
        return build_site(kb, out, base_url=base_url, jobs=jobs, search=search, full=full, strict=strict,
                          include_drafts=include_drafts, progress=update, safe_templates=safe_templates,
                          wait=WAIT if wait is None else wait, on_wait=lambda message: click.echo(message, err=True))


def _site_options(f):
    f = click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
                     help="Where the site goes (default: _site in the knowledge base).")(f)
    f = click.option("--base-url", metavar="URL",
                     help="Absolute address the site is published at, for the feed and sitemap "
                          "(default: base_url in kb.yaml; pages always link relatively).")(f)
    f = click.option("--no-search", is_flag=True, help="Skip the Pagefind search index.")(f)
    f = click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Processes for parsing and study pages "
                     "(default: all cores).")(f)
    return f


@cli.command()
@_site_options
@click.option("--full", is_flag=True, help="Rebuild every page, ignoring what the last build left.")
@click.option("--strict", is_flag=True, help="Fail (exit 1) if any record has errors, instead of leaving it out.")
@click.option("--include-drafts", is_flag=True, help="Preview the drafts too: each draft's page carries a DRAFT "
              "banner and the lists mark it; drafts are still never pooled, downloaded or in the feed.")
@click.option("--safe-templates", is_flag=True, help="Render in Jinja's sandbox: for building someone else's "
              "repository (e.g. CI on pull requests), whose templates/ would otherwise run as code.")
@click.option("--wait", type=click.FloatRange(0), default=600, show_default=True, metavar="SECONDS",
              help="While another kb build writes the same folder, wait this long for it, then give up (exit 1).")
@click.pass_context
def build(ctx: click.Context, out: Path | None, base_url: str | None, no_search: bool, jobs: int | None, full: bool,
          strict: bool, include_drafts: bool, safe_templates: bool, wait: float) -> None:
    """Build the static evidence site: a folder any static host can serve.

    Pages: home, one per condition (bottom line, summary of findings with
    forest plots, durability, dosing, adverse events, practice and ethics, all
    studies), one per outcome, one per study, search (Pagefind), methods, what
    changed, downloads (JSON, CSV, BibTeX, RIS), an Atom feed, a sitemap and a
    404 page. Links are relative: the folder also works from disk or a sub-path.

    Only what changed is rebuilt: records are parsed again when their content
    changes, and a page is written only when its bytes differ. The build date
    is SOURCE_DATE_EPOCH, else the last git commit's date, else the newest
    record's date, so the same inputs give the same bytes. Records with errors
    are left out and listed. Open _site/index.html, or serve the folder.

    Drafts (status: draft, as kb import writes them) are not evidence and
    are left out; --include-drafts previews them, best into another folder.

    One build at a time writes a folder: a second one waits for the first
    (saying so on stderr), up to --wait seconds, then exits 1 (busy).

    \b
    Examples:
      kb build
      kb build -o public --base-url https://evidence.example.org/
      kb build --no-search --full
      kb build --include-drafts -o _preview
      kb build --safe-templates --no-search    # a pull request's knowledge base
    """
    kb = _kb(ctx)
    report = _build(kb, out, base_url, jobs, not no_search, full, strict, include_drafts=include_drafts,
                    safe_templates=safe_templates, wait=wait)
    for p in report.problems:
        click.echo(safe(p.format()), err=True)
    if report.problems:
        click.echo(f"{report.files_left_out} record file(s) with errors left out of the site; run `kb validate`", err=True)
    for n in report.notices:
        click.echo(safe(f"note: {n}"), err=True)
    click.echo(report.summary())


@cli.command()
@click.option("--since", metavar="REV", help="The commit to compare with: a sha, branch, tag or HEAD~N "
              "(default: the previous commit that changed studies/, summaries/ or kb.yaml).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def changes(ctx: click.Context, since: str | None, fmt: str) -> None:
    """What changed in the evidence since a git commit: studies and pooled estimates.

    Pools the records of commit REV and of the working tree as the site
    pools them (one result per condition, outcome, time window and
    comparator class), and lists the studies added, changed and removed,
    the estimates that moved (measure, estimate, 95% CI and k, before and
    after), and the results new or gone. Neither the working tree nor the
    index is touched. By default REV is the previous commit that changed
    studies/, summaries/ or kb.yaml: the last one when they have
    uncommitted changes, else the one before it. Both sides are pooled by
    this kb. Exit status: 0, 1 when no earlier commit changed the
    evidence, 2 for an unknown revision or outside a git repository.

    \b
    Examples:
      kb changes
      kb changes --since HEAD~5 --format json
      git log --oneline -- studies     # the commits that changed the records
    """
    from kb.site.history import changes_since

    kb = _kb(ctx)
    with _progress("comparing", phased=True, quiet=fmt != "text") as update:
        result = changes_since(kb, since, progress=update)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        from kb.terminal import changes_text

        changes_text(result, click.echo)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="markdown prints the tables of docs/comparison-table.md; json is the page's data.")
@click.pass_context
def compare(ctx: click.Context, fmt: str) -> None:
    """Set kb's results beside the published reviews' (kb and the published meta-analyses).

    For every result a review record reports (an outcome entry with
    data type effect, or in words), the same question in kb: kb's answer
    with kb meta's defaults, how many of the review's trials kb holds
    (records with related: pooled-in to the review) and how many give
    numbers. A review whose comparisons/<review-id>.yaml says reproduce:
    true is also pooled from its own trials only (kb meta --ids), with
    its measure and the model the file names, and every trial that may
    belong to each analysis is explained: pooled, held without numbers
    (with the records' reasons), or not in kb (with the file's reason).
    The site's comparison page shows the same rows. Exit status 1 when the
    knowledge base holds no review record.

    \b
    Examples:
      kb compare
      kb compare --format markdown > docs/comparison-table.md
      kb compare --format json
    """
    from kb.comparison import compare_kb
    from kb import terminal as render

    result = compare_kb(_kb(ctx))
    if not result["reviews"] and not result["not_compared"]:
        click.echo("no review records (design meta-analysis or systematic-review) in this knowledge base", err=True)
        ctx.exit(1)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    elif fmt == "markdown":
        click.echo(render.compare_markdown(result), nl=False)
    else:
        render.compare_text(result, click.echo, click.style)


@cli.command()
@_site_options
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port on localhost (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.pass_context
def serve(ctx: click.Context, out: Path | None, base_url: str | None, no_search: bool, jobs: int | None, port: int,
          host: str) -> None:
    """Preview the site on localhost, rebuilding when a record changes.

    Builds the site first (as `kb build`), serves it, and watches studies/,
    summaries/, templates/ and kb.yaml once a second; a change rebuilds what it
    touched. A record with errors is reported and left out; the preview keeps
    running. Stop with Ctrl-C.

    \b
    Examples:
      kb serve
      kb serve --port 8080 --no-search
    """
    import time

    from kb.site.serve import Preview

    kb = _kb(ctx)
    report = _build(kb, out, base_url, jobs, not no_search, False, False)
    click.echo(report.summary())

    def rebuild() -> str:
        fresh = open_kb(kb.root)  # kb.yaml may have changed too
        r = _build(fresh, out, base_url, jobs, not no_search, False, False, quiet=True)
        for p in r.problems:
            click.echo(safe(p.format()), err=True)
        return r.summary()

    preview = Preview(kb, report.out, rebuild, host=host, port=port, on_event=lambda text: click.echo(safe(text)))
    preview.start()
    click.echo(f"serving {report.out} at {preview.url} (Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        preview.stop()


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["pubmed-xml", "medline", "ris", "bibtex", "csv"]),
              help="Read every FILE as this format (default: detected from each file's content).")
@click.option("--encoding", metavar="NAME", help="Text encoding of the files (default: UTF-8, with or without BOM; "
              "e.g. cp1252, latin-1).")
@click.option("--dry-run", "-n", is_flag=True, help="Report what would be written; write nothing.")
@click.option("--update", is_flag=True, help="Also fill the empty fields of records that a duplicate matches "
              "(a value already there is never changed); each change is reported.")
@click.option("--all-or-nothing", is_flag=True, help="Write nothing if any record fails (default: write the records "
              "that parsed and list the failures).")
@click.option("--report", "report_fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="How to print the report.")
@click.option("--verbose", "-v", is_flag=True, help="List every new record, duplicate and failure (default: the first 20 of each).")
@click.option("--max-size", metavar="SIZE", default="512MB", show_default=True,
              help="The most text one file may hold once un-gzipped (KB, MB, GB); a larger file stops the "
                   "import, nothing written. Guards against gzip bombs; raise it for a genuinely huge export.")
@click.option("--as-draft", is_flag=True, help="Write each new reference as a draft record in studies/ (for adding "
              "known studies directly) instead of sending it to the screening set.")
@click.option("--database", metavar="NAME", help="The database the export came from (PubMed, Embase ...), for the "
              "search log and the PRISMA counts.")
@click.option("--date-searched", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="The day the database was searched, for the search log.")
@click.option("--query", metavar="TEXT", help="The search string, for the search log.")
@click.pass_context
def import_(ctx: click.Context, files: tuple[Path, ...], fmt, encoding, dry_run, update, all_or_nothing, report_fmt,
            verbose, max_size, as_draft, database, date_searched, query) -> None:
    """Import references from PubMed, MEDLINE, RIS, BibTeX or CSV exports.

    By default each export file is logged as one search in searches.yaml
    (database, date searched, query, file, sha256, counts found, new and
    duplicate) and its new references go to the screening set,
    screening/references/<search-id>.jsonl, to be screened with kb screen;
    studies/ is not touched. Every reference enters the set, missing fields
    and all. A file already imported (the same bytes) is not imported again,
    and a reference already in the screening set (included, excluded or not
    yet screened) is a duplicate, so a re-import never brings back an
    excluded reference.

    With --as-draft each new reference becomes studies/<firstauthor-year>.yaml with status
    draft: the bibliographic fields, the abstract, keywords and MeSH terms,
    conditions suggested from the vocabulary (listed under inferred_fields
    for you to confirm), and a design from PubMed's publication type when
    the export has one ('other' otherwise). A reference already in the
    knowledge base or earlier in the import (same PMID, PMCID, DOI or trial
    registration, or the same or a very similar title with the same year
    and first author) is reported with the record it matches and never
    written twice. No existing file is ever overwritten; --update only
    fills fields that are empty.

    \b
    Formats, detected from the content (gzipped files too):
      pubmed-xml  PubMed XML (PubmedArticleSet) and MEDLINE XML (MedlineCitationSet)
      medline     PubMed's MEDLINE/.nbib text (PMID- / TI  - tags)
      ris         RIS from PubMed, Embase, Scopus, Web of Science, Ovid, ProQuest,
                  Rayyan, Zotero, EndNote
      bibtex      BibTeX from Scopus, Web of Science, Zotero
      csv         Embase and Scopus CSV exports, or any CSV with a title column;
                  headers understood (any case): title, authors, year, journal
                  (or source title), volume, issue, pages (or page start/end),
                  doi, pmid (or pubmed id), pmcid, abstract, keywords

    Exit status: 0 when every record was imported or recognised as a
    duplicate, 1 when any record failed (the others are still written unless
    --all-or-nothing), 2 for a usage error.

    \b
    Examples:
      kb import pubmed.nbib --database PubMed --date-searched 2026-12-01
      kb import scopus.ris embase.csv --dry-run
      kb import known-trial.ris --as-draft
      kb import pubmed.xml --as-draft --update
      kb import old-export.ris --encoding cp1252
    """
    from kb.formats import parse_size
    from kb.importer import ImportFailed, import_files, text_report

    try:
        max_bytes = parse_size(max_size)
    except ValueError as e:
        raise click.BadParameter(f"{e}; write e.g. 512MB or 2GB", param_hint="--max-size") from None
    kb = _kb(ctx)

    def print_report(report) -> None:
        if report_fmt == "json":
            click.echo(safe_json(json.dumps(report.as_dict(), indent=2, ensure_ascii=False, default=str)))
        else:
            for line in text_report(report, verbose):
                click.echo(safe(line))

    if not as_draft:
        if update:
            raise click.UsageError("--update fills records in studies/, so it needs --as-draft")
        from kb.screening.importing import import_to_screening, text_report as screening_report

        text_report = screening_report  # noqa: F811 (the screening set's report)
    for name, value in (("--database", database), ("--query", query)):
        if value is not None and (not value.strip() or any(ord(c) < 32 for c in value)):
            raise click.BadParameter("must be one line of text", param_hint=name)
    try:
        with _progress("importing", phased=True) as update_bar:  # the bar is gone before the report prints
            if as_draft:
                report = import_files(kb, list(files), fmt=fmt, encoding=encoding, dry_run=dry_run, update=update,
                                      all_or_nothing=all_or_nothing, progress=update_bar, max_size=max_bytes)
            else:
                report = import_to_screening(kb, list(files), fmt=fmt, encoding=encoding, database=database,
                                             date_searched=date_searched.date() if date_searched else None,
                                             query=query, dry_run=dry_run, all_or_nothing=all_or_nothing,
                                             progress=update_bar, max_size=max_bytes)
    except ImportFailed as e:
        if e.report is not None:
            print_report(e.report)
        raise
    print_report(report)
    if report.failures:
        ctx.exit(1)


@cli.command("export")
@click.argument("query", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["bibtex", "ris", "csl-json", "csv", "json", "metapsy"]),
              default="ris", show_default=True, help="The file format (see below).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
@_filter_options
@click.pass_context
def export(ctx: click.Context, query, fmt, output, force, **filters) -> None:
    """Export the knowledge base, or a search's matches, for Zotero, EndNote, R or a spreadsheet.

    With no QUERY and no filter, every valid record is exported (records
    with errors are left out and counted). QUERY and the filters are those
    of `kb search`. Records come out in id order.

    \b
    Formats:
      ris       RIS, for EndNote, Zotero, Mendeley, Rayyan, Covidence (default)
      bibtex    BibTeX, for LaTeX and reference managers
      csl-json  CSL-JSON, for Zotero, Pandoc and citeproc
      csv       one row per study, for spreadsheets (formula-like cells neutralised)
      json      the full records, one object per study
      metapsy   one row per comparison and outcome with the raw arm data (events and
                totals, or means, SDs and ns; arm 1 is the ketamine arm), in the wide
                layout of the Metapsy data standard, for R (metapsyTools, meta,
                metafor); reported effects without arm data are left out

    Exit status: 0 with records, 1 when nothing matched.

    \b
    Examples:
      kb export --format bibtex -o ketamine.bib
      kb export --condition ptsd --format csl-json
      kb export 'outcome:response' --design rct --format metapsy -o response.csv
    """
    from kb.errors import NotFound, RecordExists
    from kb.export import export_text, select
    from kb.yamlio import write_new

    kb = _kb(ctx)
    selects = any(f not in ((), None) for f in (query, *filters.values()))
    req = _search_request(query, filters, sort="year", limit=10_000_000, facets=False) if selects else None
    studies, notices = select(kb, req)
    for note in notices:
        click.echo(safe(f"note: {note}"), err=True)
    if not studies:
        raise NotFound("no records to export" + (" match the search" if req else ""),
                       hint="`kb search` with the same query shows what matches" if req else "`kb stats` shows the records")
    text = export_text(studies, fmt)
    if output:
        try:
            write_new(output, text, overwrite=force)
        except RecordExists:
            raise RecordExists(f"{output} already exists; not overwriting it", hint="--force overwrites it") from None
        click.echo(f"wrote {output}: {len(studies):,} record(s) as {fmt}", err=True)
    else:
        click.echo(text, nl=False)


def _print_results(kb: KnowledgeBase, result, fmt: str) -> None:
    from kb import terminal as render

    if fmt == "json":
        click.echo(safe_json(json.dumps(result.as_dict(), indent=2, ensure_ascii=False)))
    elif fmt == "ids":
        for h in result.hits:
            click.echo(h.id)
    elif fmt == "csv":
        click.echo(render.results_csv(result), nl=False)
    elif fmt in ("bibtex", "ris"):  # the same entries as kb export writes, in the hits' order
        from kb.export import export_text
        from kb.load import load_study

        click.echo(export_text([load_study(kb, h.id) for h in result.hits], fmt, keep_order=True), nl=False)
    else:
        import shutil

        width = min(shutil.get_terminal_size((100, 24)).columns, 120)
        render.results_table(result, click.echo, click.style, kb.vocab, width=width)


@cli.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the schema to this file instead of standard output.")
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
@click.pass_context
def schema(ctx: click.Context, output: Path | None, force: bool) -> None:
    """Print the study record's JSON Schema (with this knowledge base's vocabulary).

    Point your editor at it to check records as you type, e.g. with the
    YAML language server, first line of a record:
    # yaml-language-server: $schema=../study.schema.json

    \b
    Example:
      kb schema -o study.schema.json
    """
    from kb.record_schema import json_schema
    from kb.yamlio import write_new

    kb = _kb(ctx, required=False)
    text = json.dumps(json_schema(kb.vocab if kb else None), indent=2, ensure_ascii=False) + "\n"
    if output:
        write_new(output, text, overwrite=force)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("study_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["text", "yaml", "json", "html"]), default="text",
              show_default=True, help="text: readable; yaml: normalised record; json; html: the study page.")
@click.pass_context
def show(ctx: click.Context, study_id: str, fmt: str) -> None:
    """Show one study record.

    \b
    Examples:
      kb show murrough-2013
      kb show parsaik-2015 --format json
    """
    from kb.terminal import show as render
    from kb.load import load_study

    kb = _kb(ctx)
    click.echo(render(kb, load_study(kb, study_id), fmt), nl=False)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--drafts", is_flag=True, help="Count and list the draft records instead (status: draft; not evidence).")
@click.pass_context
def stats(ctx: click.Context, fmt: str, drafts: bool) -> None:
    """Count studies by condition, design, outcome, topic, route, year and status.

    A study counts once under each condition and outcome it reports, so
    columns can add up to more than the number of studies. Files with
    errors are left out and counted; `kb validate` lists their problems.
    Drafts (status: draft, as kb import and kb new write them) are not
    evidence: they are left out and counted on one line; --drafts counts
    them by condition, design and year and lists each one.

    \b
    Examples:
      kb stats --format json
      kb stats --drafts
    """
    from kb.stats import compute_stats
    from kb.load import load_studies

    kb = _kb(ctx)
    report = load_studies(kb)
    invalid = report.files - len(report.studies)
    result = compute_stats(kb, report.studies, invalid, drafts=drafts)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    from kb.terminal import stats_tables

    stats_tables(kb, result)


@cli.command()
@click.option("--title", help="The study's title.")
@click.option("--author", "authors", multiple=True, help='An author, "Surname Initials"; repeat in order.')
@click.option("--year", type=click.IntRange(1800, 2100), help="Year of publication.")
@click.option("--design", help="rct, crossover-rct, open-label, cohort, case-series, meta-analysis, ...")
@click.option("--condition", "conditions", multiple=True, help="depression, ptsd, bipolar, ... (repeatable).")
@click.option("--source", "sources", multiple=True, help="A URL the facts come from (repeatable).")
@click.option("--doi", help="The bare DOI, e.g. 10.1176/appi.ajp.2013.13030392.")
@click.option("--pmid", help="The PubMed id.")
@click.option("--journal", help="The journal's full name.")
@click.option("--id", "study_id", help="The record id (default: firstauthor-year, with a letter on clashes).")
@click.option("--print", "print_only", is_flag=True, help="Print the record instead of writing it.")
@click.pass_context
def new(ctx: click.Context, title, authors, year, design, conditions, sources, doi, pmid, journal, study_id,
        print_only) -> None:
    """Scaffold a new draft record in studies/ (never overwrites).

    Missing values are asked for when run in a terminal. The new record
    validates; fill in its outcomes and move its status to extracted.

    \b
    Example:
      kb new --title "Ketamine for social anxiety disorder" --author "Taylor JH" \\
        --year 2018 --design crossover-rct --condition anxiety \\
        --source https://pubmed.ncbi.nlm.nih.gov/29202655/
    """
    from kb.scaffold import new_study

    kb = _kb(ctx)
    if sys.stdin.isatty():
        title = title or click.prompt("Title")
        authors = authors or tuple(a.strip() for a in click.prompt("Authors (Surname Initials; separated by ';')").split(";") if a.strip())
        year = year or click.prompt("Year", type=click.IntRange(1800, 2100))
        design = design or click.prompt("Design", type=click.Choice(kb.vocab.terms("design")), default="rct")
        conditions = conditions or tuple(c.strip() for c in click.prompt("Conditions (comma-separated)", default="").split(",") if c.strip())
        sources = sources or tuple(s.strip() for s in click.prompt("Source URLs (space-separated)", default="").split() if s.strip())
        doi = doi or click.prompt("DOI (blank if none)", default="", show_default=False).strip() or None
        pmid = pmid or (None if doi else click.prompt("PMID (blank if none)", default="", show_default=False).strip() or None)
    result = new_study(kb, title=title, authors=list(authors), year=year, design=design, conditions=list(conditions),
                       sources=list(sources), doi=doi, pmid=pmid, journal=journal, study_id=study_id,
                       write=not print_only)
    if print_only:
        click.echo(result.text, nl=False)
        return
    click.echo(f"wrote {result.path}")
    for w in result.warnings:
        click.echo(safe(f"{w.severity}: {w.field}: {w.message}"), err=True)


@cli.command()
@click.argument("condition", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"], case_sensitive=False), default="text",
              show_default=True, help="json: every field, for tools; markdown: for notes and pull requests.")
@click.pass_context
def summary(ctx: click.Context, condition: str | None, fmt: str) -> None:
    """Print the reviewers' bottom lines with every number filled from the current analyses.

    The text the site shows for each condition (summaries/<condition>.yaml):
    the bottom line, its further paragraphs, and the claims checked against
    the records. A placeholder that no longer holds shows as a gap in
    brackets, and is listed; kb validate fails on it. Exit 1 when any does.

    \b
    Examples:
      kb summary
      kb summary suicidal-ideation
      kb summary --format markdown > bottom-lines.md
    """
    from kb.bottomline import rendered_summaries

    kb = _kb(ctx)
    found = rendered_summaries(kb, condition)
    fmt = fmt.lower()
    if fmt == "json":
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        md = fmt == "markdown"
        for s in found:
            click.echo(f"## {s['label']}" if md else s["label"].upper())
            click.echo("")
            for para in ([s["bottom_line"]] if s["bottom_line"] else []) + s["details"]:
                click.echo(para)
                click.echo("")
            for c in s["claims"]:
                click.echo(f"- **\u201c{c['claim']}\u201d: {c['verdict']}.** {c['answer']}" if md
                           else f"* \u201c{c['claim']}\u201d: {c['verdict']}. {c['answer']}")
            if s["claims"]:
                click.echo("")
            for p in s["problems"]:
                click.echo(f"problem: {p}", err=True)
    ctx.exit(1 if any(s["problems"] for s in found) else 0)


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--title", help="The knowledge base's title (default: from the folder name).")
def init(folder: Path, title: str | None) -> None:
    """Start a new, empty knowledge base in FOLDER.

    Creates FOLDER/studies/, FOLDER/kb.yaml and FOLDER/.gitignore. Refuses
    to touch a folder that already holds a knowledge base.

    \b
    Example:
      kb init ~/psilocybin-kb --title "Psilocybin evidence"
      cd ~/psilocybin-kb && kb new
    """
    from kb.scaffold import init_kb

    for p in init_kb(folder, title):
        click.echo(f"created {p}")


# -- kb screen (issue 19): screening a database search ------------------------------------------


def _reviewer(kb, reviewer: str | None) -> str:
    from kb.screening.decide import git_user

    name = reviewer or git_user(kb.root)
    if not name:
        raise click.UsageError("no reviewer: pass --reviewer NAME, or set `git config user.name`")
    return name


_REVIEWER = click.option("--reviewer", metavar="NAME", help="Who is screening (default: git config user.name).")
_STAGE = click.option("--stage", type=click.Choice(["title-abstract", "full-text"]), default="title-abstract",
                      show_default=True, help="The screening stage.")


@cli.group("screen", invoke_without_command=True)
@_REVIEWER
@_STAGE
@click.pass_context
def screen(ctx: click.Context, reviewer, stage) -> None:
    """Screen the references `kb import` sent to the screening set.

    Two stages: title-abstract (include, exclude or maybe; a maybe goes on
    to full text) and full-text (include or exclude; an exclusion needs a
    reason from kb.yaml's screening: {exclusion_reasons: [...]}). Each
    decision is one line appended to screening/decisions/<reviewer>.jsonl
    and flushed to disk at once; nothing is ever rewritten, so reviewers'
    branches merge in git without conflicts. Screening is blind until
    `kb screen unblind`: each reviewer sees only their own decisions.

    Without a subcommand: screen in the terminal, one reference at a time in
    import order (title, authors, journal, year, keywords, abstract; the
    vocabulary's terms in bold and underlined, or *starred* when not a
    terminal), with progress (screened, included, excluded, left). Keys:
    i include, e exclude (then a reason by number; Enter for none at
    title-abstract), m maybe, u undo, s skip, q quit. Each decision is on
    disk before the next reference is shown.

    \b
    Examples:
      kb screen decide pmid:23982301 include --reviewer Ann
      kb screen decide doi:10.1/x exclude --stage full-text --reason 2
      kb screen unblind && kb screen conflicts && kb screen agreement
      kb screen decide pmid:1 include --resolve     # settles a conflict
    """
    if ctx.invoked_subcommand is not None:
        return
    from kb.screening.session import run

    kb = _kb(ctx)
    tty = not click.utils.should_strip_ansi(sys.stdout, ctx.color)  # styles reach a terminal

    def show(text: str) -> None:
        click.echo(text)

    result = run(kb, _reviewer(kb, reviewer), stage=stage, getkey=click.getchar, show=show,
                 mark=(lambda w: click.style(w, bold=True, underline=True)) if tty else (lambda w: f"*{w}*"))
    click.echo(f"this session: {result.decided} decided, {result.undone} undone")


@screen.command("decide")
@click.argument("key")
@click.argument("decision", type=click.Choice(["include", "exclude", "maybe", "undo"]))
@click.option("--reason", metavar="N|TEXT", help="Why excluded: a reason's number or text (needed at full text).")
@_STAGE
@_REVIEWER
@click.option("--resolve", is_flag=True, help="This decision resolves a conflict at the stage (after unblinding).")
@click.pass_context
def screen_decide(ctx: click.Context, key, decision, reason, stage, reviewer, resolve) -> None:
    """Record one decision on the reference KEY (doi:..., pmid:... or t:...).

    undo withdraws your last decision on KEY at the stage. A full-text
    include that settles the reference (both reviewers, or a resolution)
    becomes a draft record in studies/, its notes naming its screening key
    and search.
    """
    from kb.screening.decide import decide

    kb = _kb(ctx)
    done = decide(kb, key, decision, reviewer=_reviewer(kb, reviewer), stage=stage, reason=reason,
                  resolves=resolve)
    d = done.decision
    click.echo(safe(f"{d.reviewer}: {d.key} {d.stage} {d.decision}" + (f" ({d.reason})" if d.reason else "")
                    + (" [resolution]" if d.resolves else "") + f" -> {done.path.name}; now: {done.outcome}"))
    if done.draft:
        click.echo(safe(f"draft record written: {done.draft}"))
    elif done.draft_note:
        click.echo(safe(f"note: {done.draft_note}"))


@screen.command("list")
@_STAGE
@_REVIEWER
@click.option("--todo", is_flag=True, help="Only the references you have still to screen at the stage.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def screen_list(ctx: click.Context, stage, reviewer, todo, fmt) -> None:
    """List the screening set's references: key, your own decision at the
    stage (blind: never the others'), year and title, in import order."""
    from kb.screening.decide import load_state, queue

    kb = _kb(ctx)
    me = _reviewer(kb, reviewer)
    state = load_state(kb)
    keys = queue(state, me, stage) if todo else list(state.refs)
    rows = []
    for key in keys:
        ref = state.refs[key]
        mine = state.at(key, stage).votes.get(me)
        rows.append({"key": key, "search": ref.search, "year": ref.data.get("year"), "title": ref.title,
                     "decision": mine.decision if mine else None, "reason": mine.reason if mine else None})
    if fmt == "json":
        click.echo(safe_json(json.dumps(rows, indent=2, ensure_ascii=False)))
        return
    for r in rows:
        click.echo(safe(f"{r['key']}  {(r['decision'] or '-'):8}  {r['year'] or '----'}  {r['title'][:80]}"))
    click.echo(f"{len(rows):,} reference(s)")


@screen.command("unblind")
@_REVIEWER
@click.pass_context
def screen_unblind(ctx: click.Context, reviewer) -> None:
    """Lift blinding: every reviewer then sees conflicts and agreement.
    Recorded in screening/unblinded.yaml (commit it)."""
    from kb.screening.decide import unblind

    kb = _kb(ctx)
    data = unblind(kb, _reviewer(kb, reviewer))
    click.echo(safe(f"screening unblinded ({data.get('unblinded')}, by {data.get('by')})"))


@screen.command("conflicts")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def screen_conflicts(ctx: click.Context, fmt) -> None:
    """List the references the reviewers disagree on (after unblinding).

    A conflict: include against exclude; maybe against exclude at
    title-abstract; two exclusions with different reasons at full-text.
    Resolve one with `kb screen decide KEY DECISION --resolve`.
    Exit status 1 when there is a conflict."""
    from kb.screening.decide import conflicts, load_state

    kb = _kb(ctx)
    state = load_state(kb)
    found = conflicts(kb, state)
    if fmt == "json":
        click.echo(safe_json(json.dumps([{"key": ks.key, "stage": ks.stage, "title": state.refs[ks.key].title,
                                          "votes": {r: {"decision": v.decision, "reason": v.reason}
                                                    for r, v in sorted(ks.votes.items())}} for ks in found],
                                        indent=2, ensure_ascii=False)))
    else:
        for ks in found:
            votes = "; ".join(f"{r}: {v.decision}" + (f" ({v.reason})" if v.reason else "")
                              for r, v in sorted(ks.votes.items()))
            click.echo(safe(f"{ks.key}  [{ks.stage}]  {state.refs[ks.key].title[:70]}\n    {votes}"))
        click.echo(f"{len(found)} conflict(s)")
    for p in state.decisions.problems:
        click.echo(safe(f"warning: {p}"), err=True)
    ctx.exit(1 if found else 0)


@screen.command("agreement")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def screen_agreement(ctx: click.Context, fmt) -> None:
    """Agreement between reviewers per stage, over the references both
    screened (n): Cohen's kappa with its 95% CI (large-sample SE of Fleiss,
    Cohen and Everitt 1969), raw agreement, and the prevalence-adjusted
    PABAK (with about 1% relevant, kappa alone misleads). After unblinding."""
    from kb.screening.decide import CI_METHOD, agreement

    kb = _kb(ctx)
    rows = agreement(kb)
    if fmt == "json":
        click.echo(safe_json(json.dumps({"method": CI_METHOD, "pairs": [a.as_dict() for a in rows]}, indent=2,
                                        ensure_ascii=False)))
        return
    if not rows:
        click.echo("no reference was screened by two reviewers at the same stage")
        ctx.exit(1)
    for a in rows:
        k = ("not defined" if a.kappa is None else
             f"{a.kappa:.2f} (95% CI {a.ci[0]:.2f} to {a.ci[1]:.2f})")
        click.echo(safe(f"{a.stage}: {a.reviewers[0]} and {a.reviewers[1]}, n = {a.n}: raw agreement "
                        f"{a.observed:.1%}, Cohen's kappa {k}, PABAK {a.pabak:.2f}"))
        if a.note:
            click.echo(safe(f"  note: {a.note}"))
    click.echo(CI_METHOD)


@cli.command("prisma")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "svg"]), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (never over an existing one) instead of printing.")
@click.pass_context
def prisma_cmd(ctx: click.Context, fmt, output) -> None:
    """PRISMA 2020 flow counts from the search log (searches.yaml) and the
    screening decisions, as text, an SVG diagram (role="img", with a title
    and a description giving every count) or JSON (the PRISMA2020 R package's field
    names: database_results, duplicates, records_screened, dbr_assessed ...).
    References not yet screened and unresolved conflicts have their own
    counts. Every box's arithmetic is checked; exit status 1 when a check
    fails (a hand-edited count in searches.yaml, say).

    \b
    Examples:
      kb prisma
      kb prisma --format json > prisma.json
      kb prisma --format svg -o prisma.svg
    """
    from kb.screening.prisma import prisma, svg, text

    kb = _kb(ctx)
    p = prisma(kb)
    if fmt == "json":
        out = safe_json(json.dumps(p.as_dict(), indent=2, ensure_ascii=False))
    elif fmt == "svg":
        out = svg(p, kb)
    else:
        out = "\n".join(safe(line) for line in text(p))
    if output:
        from kb.yamlio import write_new

        write_new(output, out + "\n")
        click.echo(f"wrote {output}")
    else:
        click.echo(out)
    if not p.ok:
        for c in p.checks:
            if not c.ok:
                click.echo(safe(f"check failed: {c.name}: {c.formula}"), err=True)
    ctx.exit(0 if p.ok else 1)


def main() -> None:  # pragma: no cover - the console script
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
