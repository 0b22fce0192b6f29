"""Study pages a clinician can trust: each source's class, a marker on numbers that rest only on weak
sources, reviewer internals in a collapsed "For reviewers" section, and study labels instead of ids."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from kb.config import open_kb
from kb.site import build_site
from kb.site.pages import public_reason, template_helpers
from kb.vocab import load_vocabulary

from .conftest import bundled_copy, invoke
from .test_site import EPOCH, built  # noqa: F401  (the bundled knowledge base built once, as test_site builds it)
from .test_synthesis import binary, make_kb, trial

ID_LIKE = re.compile(r"\b[a-z][a-z]+(?:-[a-z]+)*-(?:19|20)\d\d[a-z]?\b")


class _Text(HTMLParser):
    """A page's text as a reader sees it before opening anything: `visible` leaves out closed <details>
    (but keeps their <summary>), scripts and styles; `hidden` is what the closed <details> hold."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.visible: list[str] = []
        self.hidden: list[str] = []
        self._skip = 0
        self._details = 0
        self._summary = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "title", "desc"):
            self._skip += 1
        elif tag == "details" and "open" not in dict(attrs):
            self._details += 1
        elif tag == "summary":
            self._summary += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style", "title", "desc"):
            self._skip -= 1
        elif tag == "details" and self._details:
            self._details -= 1
        elif tag == "summary" and self._summary:
            self._summary -= 1

    def handle_data(self, data):
        if self._skip:
            return
        (self.hidden if self._details and not self._summary else self.visible).append(data)


def text_of(path: Path) -> tuple[str, str]:
    p = _Text()
    p.feed(path.read_text(encoding="utf-8"))
    return " ".join(p.visible), " ".join(p.hidden)


def without_urls(text: str) -> str:
    """The text without URLs and DOIs (a DOI such as 10.1136/bmj-2021-067194 may look like an id)."""
    return re.sub(r"https?://\S+|\b10\.\d{4,9}/\S+", "", text)


def test_each_source_shows_its_class(built):
    html = (built / "studies/murrough-2013.html").read_text(encoding="utf-8")
    press = "https://press-news.org/103816-ketamine-shows-significant-therapeutic-benefit-in-people-with-treatment-resistant-depression.html"
    assert '<li><span class="source-class">Press release</span> <strong class="flag">weak source</strong>: ' in html
    assert f'<a href="{press}">' in html
    assert '<span class="source-class">PubMed or PMC</span><br>' in html
    assert '<span class="source-class">Unofficial copy of a document</span> <strong class="flag">weak source</strong>' in html
    # a class the record states, and its note
    assert ('<span class="source-class">Commercial or clinic site</span> <strong class="flag">weak source</strong>: '
            "ketamine therapy company&#39;s blog reposting the abstract") in html


def test_numbers_resting_only_on_weak_sources_carry_a_text_marker(built, tmp_path):
    visible, _ = text_of(built / "studies/murrough-2013.html")
    assert "Weak source: these numbers rest only on a press release" in visible
    # a clinic's page as the only source of the numbers
    rec = trial("clinic-2020", [binary("response", 12, 20, 4, 20)])
    rec["sources"] = ["https://example-ketamine-clinic.com/our-research"]
    rec["outcomes"][0]["source"] = {"url": rec["sources"][0], "locator": "results paragraph"}
    out = tmp_path / "out"
    build_site(open_kb(make_kb(tmp_path, [rec])), out, search=False)
    visible, _ = text_of(out / "studies/clinic-2020.html")
    assert "Weak source: these numbers rest only on a commercial or clinic site" in visible
    # numbers read from PubMed Central carry no marker
    visible, _ = text_of(built / "studies/lii-2023.html")
    assert "Weak source" not in visible


def test_reviewer_internals_are_collapsed(built):
    visible, hidden = text_of(built / "studies/murrough-2013.html")
    assert "For reviewers" in visible  # the summary stays visible
    for internal in ("back-calculated: 63.8% of 47", "studies/murrough-2013.yaml", "Extraction confidence: medium",
                     "Verified against a source", "Conflicts between sources", "counts derived: back-calculated"):
        assert internal not in visible, internal
    for internal in ("back-calculated: 63.8% of 47", "studies/murrough-2013.yaml", "Extraction confidence: medium",
                     "Verified against a source", "Conflicts between sources"):
        assert internal in hidden, internal
    assert "counts derived" in visible  # the short flag stays beside the numbers


def test_public_study_pages_show_no_ids_paths_or_flags(built):
    for page in sorted((built / "studies").glob("*.html")):
        visible, _ = text_of(page)
        text = without_urls(visible)
        assert not ID_LIKE.search(text), (page.name, ID_LIKE.search(text).group())
        assert ".yaml" not in text and "summaries/" not in text, page.name
        assert not re.search(r"(?<![\w-])--[a-z]", text), page.name


def test_related_records_are_named_by_label(built):
    html = (built / "studies/zarate-2006.html").read_text(encoding="utf-8")
    assert '<a href="diazgranados-2010.html">Diazgranados 2010</a>' in html
    assert '<a href="zarate-2012.html">Zarate 2012</a>' in html
    # a record without authors is named from its id, never shown as the bare id
    assert "<h1>Newport 2015</h1>" in (built / "studies/newport-2015.html").read_text(encoding="utf-8")


def test_a_related_records_new_label_reaches_the_linking_page(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    alpha = trial("alpha-2001", [binary("response", 12, 20, 4, 20)])
    beta = trial("beta-2005", [binary("response", 8, 15, 3, 16)],
                 related=[{"id": "alpha-2001", "relation": "secondary-analysis"}])
    root = make_kb(tmp_path, [alpha, beta])
    kb, out = open_kb(root), tmp_path / "out"
    build_site(kb, out, search=False)
    label = yaml.safe_load((root / "studies/alpha-2001.yaml").read_text())["authors"][0].split()[0]
    assert f'<a href="alpha-2001.html">{label} 2001</a>' in (out / "studies/beta-2005.html").read_text()
    alpha["authors"] = ["Renamed QQ"]
    (root / "studies/alpha-2001.yaml").write_text(yaml.safe_dump(alpha, sort_keys=False))
    build_site(kb, out, search=False)  # incremental: beta-2005's file did not change
    assert '<a href="alpha-2001.html">Renamed 2001</a>' in (out / "studies/beta-2005.html").read_text()


def test_kb_show_html_names_related_records_by_label(runner, tmp_path):
    root = bundled_copy(tmp_path / "kb")
    result = invoke(runner, "--kb", root, "show", "glue-2018", "--format", "html")
    assert result.exit_code == 0, result.output
    assert '<a href="glue-2017.html">Glue 2017</a>' in result.output


REASONS = [
    ("bipolar is a secondary condition here (primary: depression); --any-condition includes it",
     "Bipolar depression is a secondary condition in this study, whose main condition is depression"),
    ("comparator ect (analyse it with --comparator ect)",
     "compared with electroconvulsive therapy, not with a placebo control"),
    ("crossover trial (left out by --no-crossover)", "crossover trial"),
    ("route im: not intravenous (--non-iv includes it)", "not intravenous (route: intramuscular)"),
    ("esketamine, not racemic ketamine (--esketamine includes it)", "esketamine, not racemic ketamine"),
    ("derived counts (left out by --no-derived)", "derived counts"),
    ("timepoint day 7 outside --timepoint 0-2", "timepoint day 7 outside the time window analysed"),
    ("marked pool: false (crossover without first-period data)", "not pooled: crossover without first-period data"),
    ("retracted publication: never pooled", "retracted publication: never pooled"),
    ("no eligible study for symptom-change for ptsd: 2 entries were left out",
     "no study could be pooled; 2 entries were left out"),
    ("no eligible study for response: 1 entry was left out", "no study could be pooled; 1 entry was left out"),
]


@pytest.mark.parametrize("reason, public", REASONS)
def test_public_reason_drops_command_line_options(reason, public):
    assert public_reason(reason, load_vocabulary()) == public


def test_template_helpers_name_studies_by_label(built):
    class FakeSite:
        digests = {"feder-2014": {"label": "Feder 2014"}}
        vocab = load_vocabulary()

    helpers = template_helpers(FakeSite())
    assert helpers["study_label"]("feder-2014") == "Feder 2014"
    assert helpers["study_label"]("riva-posse-2018") == "Riva-Posse 2018"  # not in the digests: from the id
    assert helpers["public_reason"]("crossover trial (left out by --no-crossover)") == "crossover trial"


def test_the_changes_page_names_removed_studies_by_label(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)]),
                              trial("beta-2005", [binary("response", 8, 15, 3, 16)]),
                              trial("gamma-2009", [binary("remission", 5, 15, 3, 16)])])
    kb, out = open_kb(root), tmp_path / "out"
    build_site(kb, out, search=False)
    (root / "studies/gamma-2009.yaml").unlink()  # gone, with the only remission result
    build_site(kb, out, search=False)
    visible, _ = text_of(out / "changes.html")
    assert "Gamma 2009" in visible and "Depression: remission" in visible
    assert not ID_LIKE.search(without_urls(visible)) and "depression/remission" not in visible

