"""What changed between commits (`kb changes`, the changes page's "Since commit" section) and when the
evidence was last searched (kb.yaml's literature_search: on every page, the methods page, kb stats).

Each git test makes its own repository in a temporary folder: records written with the helpers of
test_synthesis, committed, changed and committed again."""

from __future__ import annotations

import json
import math
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from statistics import NormalDist

import pytest
import yaml

from kb.config import open_kb
from kb.scaffold import KB_YAML
from kb.site import build_site
from kb.site import history

from .conftest import ROOT, bundled_copy, invoke
from .test_synthesis import binary, make_kb, trial

KEY = "depression/response/24h/inert-placebo"  # alpha's and beta's result: response at about 24 h vs saline
LABEL = "Depression: response, about 24 h, vs inert placebo (saline)"


@pytest.fixture(autouse=True)
def _no_parent_repository(tmp_path, monkeypatch):
    """git never finds a repository above the test's folder, nor the user's configuration."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=Test", "-c", "user.email=test@example.org",
                           "-c", "commit.gpgsign=false", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


def write(root: Path, rec: dict) -> None:
    (root / "studies" / f"{rec['id']}.yaml").write_text(yaml.safe_dump(rec, sort_keys=False))


def wald_rr(a: int, n1: int, c: int, n2: int) -> dict:
    """One trial's risk ratio and 95% CI, computed here by hand (log scale, Wald), as the site shows it."""
    log_rr = math.log((a / n1) / (c / n2))
    se = math.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n2)
    z = NormalDist().inv_cdf(0.975)
    return {"measure": "rr", "estimate": f"{math.exp(log_rr):.2f}", "ci_low": f"{math.exp(log_rr - z * se):.2f}",
            "ci_high": f"{math.exp(log_rr + z * se):.2f}", "k": 1}


@pytest.fixture
def repo(tmp_path) -> dict:
    """A knowledge base under git: commit 1 has alpha-2001 (12/20 vs 4/20) and gamma-2010 (PTSD);
    commit 2 changes alpha's count to 16/20 and removes gamma."""
    alpha = trial("alpha-2001", [binary("response", 12, 20, 4, 20)])
    gamma = trial("gamma-2010", [binary("response", 9, 30, 5, 30)], conditions=["ptsd"])
    root = make_kb(tmp_path, [alpha, gamma])
    git(root, "init", "-q")
    first = commit(root, "two trials")
    alpha["outcomes"] = [binary("response", 16, 20, 4, 20, source={"url": alpha["sources"][0], "locator": "Table 2"})]
    write(root, alpha)
    (root / "studies/gamma-2010.yaml").unlink()
    second = commit(root, "alpha's count corrected; gamma removed")
    return {"root": root, "first": first, "second": second, "alpha": alpha}


# -- kb changes --------------------------------------------------------------------------------


def test_kb_changes_lists_the_moved_estimate_with_its_numbers(repo, runner):
    res = invoke(runner, "--kb", repo["root"], "changes", "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    # the default comparison point: the commit before the latest one that changed the evidence
    assert out["since"]["commit"] == repo["first"] and out["since"]["short"] == repo["first"][:len(out["since"]["short"])]
    assert out["now"] == {"commit": repo["second"], "short": out["now"]["short"], "uncommitted_changes": False}
    assert out["studies"] == {"added": [], "changed": [{"id": "alpha-2001", "label": "Alpha 2001"}],
                              "removed": [{"id": "gamma-2010", "label": "Gamma 2010"}]}
    assert out["moved"] == [{"key": KEY, "label": LABEL, "before": wald_rr(12, 20, 4, 20), "after": wald_rr(16, 20, 4, 20)}]
    assert out["moved"][0]["before"]["estimate"] == "3.00" and out["moved"][0]["after"]["estimate"] == "4.00"
    assert out["new_results"] == []
    assert [(r["key"], r["estimate"]) for r in out["gone_results"]] == [
        ("ptsd/response/24h/inert-placebo", wald_rr(9, 30, 5, 30))]
    assert out["left_out"] == {"since": 0, "now": 0}
    # the same in words
    res = invoke(runner, "--kb", repo["root"], "changes")
    assert res.exit_code == 0, res.output
    b, a = wald_rr(12, 20, 4, 20), wald_rr(16, 20, 4, 20)
    assert f"Changes since commit {out['since']['short']} (" in res.output
    assert "Studies changed (1):\n  Alpha 2001 (alpha-2001)\n" in res.output
    assert "Studies removed (1):\n  Gamma 2010 (gamma-2010)\n" in res.output
    assert (f"Estimates that moved (1):\n  {LABEL}\n    before: RR {b['estimate']} ({b['ci_low']} to {b['ci_high']}), k = 1\n"
            f"    after:  RR {a['estimate']} ({a['ci_low']} to {a['ci_high']}), k = 1\n") in res.output
    # the working tree was not touched, nor the index
    assert git(repo["root"], "status", "--porcelain") == ""
    assert not (repo["root"] / "studies/gamma-2010.yaml").exists()


def test_kb_changes_agrees_with_kb_meta_when_a_trial_is_added(repo, runner):
    """An uncommitted new trial: compared with the latest commit (--since HEAD), the estimate moves from
    alpha's alone (k = 1) to the pooled one, which is kb meta's number."""
    root = repo["root"]
    write(root, trial("beta-2005", [binary("response", 8, 15, 3, 16)]))
    res = invoke(runner, "--kb", root, "changes", "--since", "HEAD", "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["now"]["uncommitted_changes"] is True
    assert out["studies"]["added"] == [{"id": "beta-2005", "label": "Beta 2005"}]
    (moved,) = out["moved"]
    assert moved["before"] == wald_rr(16, 20, 4, 20)
    result = json.loads(invoke(runner, "--kb", root, "meta", "--condition", "depression", "--outcome", "response",
                               "--window", "24h", "--comparator-class", "inert-placebo", "--format", "json").output)
    assert result["measure"] == "rr" and result["k"] == 2 and moved["after"]["k"] == 2
    assert moved["after"]["estimate"] == f"{result['natural']['estimate']:.2f}"
    assert (moved["after"]["ci_low"], moved["after"]["ci_high"]) == (f"{result['natural']['ci_low']:.2f}",
                                                                      f"{result['natural']['ci_high']:.2f}")
    # the default comparison point does not move with uncommitted work
    default = json.loads(invoke(runner, "--kb", root, "changes", "--format", "json").output)
    assert default["since"]["commit"] == repo["first"]


def test_kb_changes_unknown_revision_is_a_usage_error(repo, runner):
    res = invoke(runner, "--kb", repo["root"], "changes", "--since", "no-such-branch")
    assert res.exit_code == 2
    assert "unknown revision 'no-such-branch'" in res.output
    assert "hint: `git log --oneline -- studies`" in res.output and "Traceback" not in res.output
    res = invoke(runner, "--kb", repo["root"], "changes", "--since", "--output=x")
    assert res.exit_code == 2 and "is not a revision" in res.output


def test_kb_changes_outside_git_is_a_usage_error(kb_dir, runner):
    res = invoke(runner, "--kb", kb_dir, "changes")
    assert res.exit_code == 2
    assert "is not in a git repository" in res.output and "hint: " in res.output and "Traceback" not in res.output


def test_kb_changes_with_one_commit_has_nothing_to_compare(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    git(root, "init", "-q")
    commit(root, "one")
    res = invoke(runner, "--kb", root, "changes")
    assert res.exit_code == 1 and "no earlier commit changed studies/, summaries/ or kb.yaml" in res.output
    res = invoke(runner, "--kb", root, "changes", "--since", "HEAD", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.output)["moved"] == []


def test_kb_changes_in_a_knowledge_base_below_the_repository_top(tmp_path, runner):
    """Paths are the knowledge base's own, wherever it sits in the repository."""
    top = tmp_path / "repo"
    root = make_kb(top / "reviews", [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    (top / "studies").mkdir()  # a folder of the same name at the top is not the knowledge base's
    (top / "studies/zeta-2020.yaml").write_text("not: a record\n")
    git(top, "init", "-q")
    commit(top, "one")
    rec = trial("alpha-2001", [binary("response", 16, 20, 4, 20)])
    write(root, rec)
    commit(top, "two")
    out = json.loads(invoke(runner, "--kb", root, "changes", "--format", "json").output)
    assert [m["after"] for m in out["moved"]] == [wald_rr(16, 20, 4, 20)]
    assert out["left_out"] == {"since": 0, "now": 0}


def test_a_record_the_commit_got_wrong_is_left_out_and_counted(repo, runner):
    root = repo["root"]
    (root / "studies/broken-2020.yaml").write_text("id: broken-2020\ntitle: [\n")
    bad = commit(root, "a broken record")
    (root / "studies/broken-2020.yaml").unlink()
    commit(root, "removed")
    out = json.loads(invoke(runner, "--kb", root, "changes", "--since", bad, "--format", "json").output)
    assert out["left_out"] == {"since": 1, "now": 0} and out["studies"]["removed"] == []
    res = invoke(runner, "--kb", root, "changes", "--since", bad)
    assert "record files with errors are left out" in res.output


def test_a_commit_this_kb_cannot_read_is_named_and_the_build_goes_on(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    (root / "kb.yaml").write_text("title: Test KB\nfuture_setting: 1\n")
    git(root, "init", "-q")
    old = commit(root, "a kb.yaml of a later kb")
    (root / "kb.yaml").write_text("title: Test KB\n")
    commit(root, "kb.yaml this kb reads")
    res = invoke(runner, "--kb", root, "changes")
    assert res.exit_code == 1
    assert (f"the knowledge base at commit {old[:7]}" in res.output
            and "cannot be read by this kb: kb.yaml: unknown key(s) future_setting" in res.output), res.output
    assert "kb-commit-" not in res.output  # the temporary folder is not named
    report = build_site(open_kb(root), tmp_path / "out", search=False)
    assert report.studies == 1
    section = commit_section(tmp_path / "out")
    assert "cannot be read by this version of kb, so no comparison is shown" in section


def test_snapshot_at_a_commit_equals_a_fresh_one(repo):
    """Reusing the working tree's digests for the records a commit has unchanged gives the snapshot that
    parsing every record of the commit gives."""
    kb = open_kb(repo["root"])
    write(repo["root"], trial("beta-2005", [binary("response", 8, 15, 3, 16)]))
    now = history.working_tree(kb)
    base = history.resolve(kb.root, "HEAD~1")
    reused = history.at_commit(kb, base, now.digests)
    fresh = history.at_commit(kb, base)
    assert reused.snapshot == fresh.snapshot
    assert set(reused.snapshot["studies"]) == {"alpha-2001", "gamma-2010"}


# -- the changes page: since the previous build ------------------------------------------------


def moved_rows(out: Path, section: str = 'id="moved"') -> list[tuple[str, str, str]]:
    text = main_text(out / "changes.html")
    part = text[text.index(section):]
    following = re.search(r"<h[23]", part)  # the section ends at the next heading
    part = part[:following.start()] if following else part
    return re.findall(r'<tr><td><a href="[^"]+">([^<]+)</a></td><td>([^<]+)</td><td>([^<]+)</td></tr>', part)


def shown(e: dict) -> str:
    return f"RR {e['estimate']} ({e['ci_low']} to {e['ci_high']}), k = {e['k']}"


def test_changes_between_builds_list_moves_of_the_estimate_the_ci_and_k(tmp_path, runner):
    root, out = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])]), tmp_path / "out"
    kb = open_kb(root)
    build_site(kb, out, search=False)
    # the same risks in twice the patients: the estimate stays 3.00, the CI narrows
    write(root, trial("alpha-2001", [binary("response", 24, 40, 8, 40)]))
    build_site(kb, out, search=False)
    assert wald_rr(12, 20, 4, 20)["estimate"] == wald_rr(24, 40, 8, 40)["estimate"] == "3.00"
    assert moved_rows(out) == [(LABEL, shown(wald_rr(12, 20, 4, 20)), shown(wald_rr(24, 40, 8, 40)))]
    # a second trial: k goes from 1 to 2, and the pooled estimate is kb meta's
    write(root, trial("beta-2005", [binary("response", 8, 15, 3, 16)]))
    build_site(kb, out, search=False)
    result = json.loads(invoke(runner, "--kb", root, "meta", "--condition", "depression", "--outcome", "response",
                               "--window", "24h", "--comparator-class", "inert-placebo", "--format", "json").output)
    nat = result["natural"]
    after = {"estimate": f"{nat['estimate']:.2f}", "ci_low": f"{nat['ci_low']:.2f}", "ci_high": f"{nat['ci_high']:.2f}",
             "k": 2}
    assert moved_rows(out) == [(LABEL, shown(wald_rr(24, 40, 8, 40)), shown(after))]
    assert "Studies added (1)" in main_text(out / "changes.html")
    # nothing new: no estimate moved, and the page keeps the last change
    assert build_site(kb, out, search=False).up_to_date
    assert moved_rows(out) == [(LABEL, shown(wald_rr(24, 40, 8, 40)), shown(after))]


# -- the changes page: since commit ------------------------------------------------------------


def main_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text[text.index("<main"):text.index("</main>")]


def commit_section(out: Path) -> str:
    text = main_text(out / "changes.html")
    return text[text.index('id="since-commit"'):text.index("<p>Subscribe")]


def test_changes_page_shows_the_estimates_that_moved_since_the_previous_commit(repo, monkeypatch):
    root, out = repo["root"], repo["root"].parent / "out"
    kb = open_kb(root)
    report = build_site(kb, out, search=False)
    assert report.timings["commits"] >= 0
    section = commit_section(out)
    short = git(root, "rev-parse", "--short", repo["first"])
    date = git(root, "log", "-1", "--format=%cs", repo["first"])
    assert f"Since commit <code>{short}</code> ({date})</h2>" in section
    assert "0 studies added, 1 changed, 1 removed" in section
    b, a = wald_rr(12, 20, 4, 20), wald_rr(16, 20, 4, 20)
    assert f"Estimates that moved since commit {short} (1)" in section
    assert (f'<tr><td><a href="conditions/depression.html#o-{KEY.replace("/", "-")}">{LABEL}</a></td>'
            f"<td>RR {b['estimate']} ({b['ci_low']} to {b['ci_high']}), k = 1</td>"
            f"<td>RR {a['estimate']} ({a['ci_low']} to {a['ci_high']}), k = 1</td></tr>") in section
    assert ("Results no longer available since commit" in section
            and "<li>Post-traumatic stress disorder: response, about 24 h, vs inert placebo (saline)</li>" in section)
    # the commit's snapshot is cached by sha: the next build after an unrelated commit reads it, and does
    # not pool the commit again
    cached = list(out.parent.joinpath("kb/.kb/site").glob(f"*/commits/{repo['first']}.json"))
    assert len(cached) == 1
    (root / "notes.txt").write_text("not evidence\n")
    commit(root, "notes")

    def refuse(*a, **k):
        raise AssertionError("the commit's snapshot was pooled again")
    monkeypatch.setattr(history, "at_commit", refuse)
    again = build_site(kb, out, search=False)
    assert not again.up_to_date  # a new commit: the build information changed
    assert commit_section(out) == section
    assert build_site(kb, out, search=False).up_to_date
    monkeypatch.undo()
    # a new commit that changes the evidence moves the comparison point: the page is current again
    write(root, trial("beta-2005", [binary("response", 8, 15, 3, 16)]))
    commit(root, "beta added")
    report = build_site(kb, out, search=False)
    assert not report.up_to_date
    section = commit_section(out)
    assert f"Since commit <code>{git(root, 'rev-parse', '--short', repo['second'])}</code>" in section
    assert "1 study added, 0 changed, 0 removed" in section
    assert f"RR {a['estimate']} ({a['ci_low']} to {a['ci_high']}), k = 1</td><td>RR " in section
    assert "k = 2</td></tr>" in section


def test_changes_page_says_in_one_line_when_there_is_no_earlier_commit(tmp_path):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    build_site(open_kb(root), tmp_path / "out", search=False)
    section = commit_section(tmp_path / "out")
    assert "not kept in git, so changes between commits cannot be shown" in section
    git(root, "init", "-q")
    commit(root, "one")
    report = build_site(open_kb(root), tmp_path / "out", search=False)
    assert not report.up_to_date
    section = commit_section(tmp_path / "out")
    assert "No earlier commit changed the study records, the summaries or the protocol" in section
    assert section.count("<p>") == 1


# -- evidence searched up to --------------------------------------------------------------------


class _Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)


def text_of(path: Path) -> str:
    p = _Text()
    p.feed(path.read_text(encoding="utf-8"))
    return " ".join("".join(p.parts).split())


def test_every_page_says_when_the_evidence_was_last_searched(tmp_path):
    root = bundled_copy(tmp_path / "ketamine")
    up_to = yaml.safe_load((ROOT / "kb.yaml").read_text())["literature_search"]["up_to"]
    up_to = str(up_to)
    # the bundled date is the newest record's added date: the last ad-hoc search ran then
    added = {str(yaml.safe_load(p.read_text())["added"]) for p in (ROOT / "studies").glob("*.yaml")}
    assert up_to == max(added)
    out = tmp_path / "out"
    build_site(open_kb(root), out, search=False)
    pages = sorted(out.rglob("*.html"))
    assert len(pages) > 100
    missing = [str(p.relative_to(out)) for p in pages if f"Evidence searched up to {up_to}" not in text_of(p)]
    assert missing == []
    methods = text_of(out / "methods.html")
    assert (f'<dt>Evidence searched up to</dt><dd><time datetime="{up_to}">{up_to}</time> '
            '(<a href="#literature-search">how</a>)') in (out / "methods.html").read_text()
    assert (f"The evidence was last searched for new studies on {up_to}: Ad-hoc searches of PubMed" in methods
            and "There is no systematic search log yet: screening will add one." in methods)
    # a new date is a change of every page
    cfg = (root / "kb.yaml").read_text().replace(f"up_to: {up_to}", "up_to: 2026-12-01")
    (root / "kb.yaml").write_text(cfg)
    report = build_site(open_kb(root), out, search=False)
    assert report.full
    assert all("Evidence searched up to 2026-12-01" in text_of(p) for p in pages)


def test_without_a_search_date_pages_say_it_is_not_recorded(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    out = tmp_path / "out"
    build_site(open_kb(root), out, search=False)
    for page in sorted(out.rglob("*.html")):
        text = text_of(page)
        assert "Date of the last search for new studies not recorded" in text, page
        assert not re.search(r"searched up to \d", text), page
    assert "The date of the last search for new studies is not recorded" in text_of(out / "methods.html")
    res = invoke(runner, "--kb", root, "show", "alpha-2001", "--format", "html")
    assert "Date of the last search for new studies not recorded" in res.output
    res = invoke(runner, "--kb", root, "stats")
    assert "Date of the last search for new studies not recorded (set literature_search: up_to: in kb.yaml)" in res.output
    assert json.loads(invoke(runner, "--kb", root, "stats", "--format", "json").output)["searched_up_to"] is None


def test_kb_stats_and_kb_show_say_when_the_evidence_was_searched(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    (root / "kb.yaml").write_text("title: Test KB\nliterature_search:\n  up_to: 2025-06-30\n"
                                  "  note: PubMed, searched for ketamine.\n")
    res = invoke(runner, "--kb", root, "stats")
    assert "Evidence searched up to 2025-06-30 (from kb.yaml)" in res.output
    data = json.loads(invoke(runner, "--kb", root, "stats", "--format", "json").output)
    assert data["searched_up_to"] == {"up_to": "2025-06-30", "note": "PubMed, searched for ketamine.",
                                      "source": "kb.yaml"}
    res = invoke(runner, "--kb", root, "show", "alpha-2001", "--format", "html")
    assert 'Evidence searched up to <time datetime="2025-06-30">2025-06-30</time>' in res.output


@pytest.mark.parametrize("section, where, message", [
    ("literature_search:\n  up_to: last week\n", ":3:10: literature_search.up_to: ", "'last week' is not a date"),
    ("literature_search:\n  up_to: 2026-02-30\n", ":3:10: literature_search.up_to: ", "'2026-02-30' is not a date"),
    ("literature_search:\n  up_to: 20261205\n", ":3:10: literature_search.up_to: ", "20261205 is not a date"),
    ("literature_search:\n  up_to: 2999-01-01\n", ":3:10: literature_search.up_to: ", "2999-01-01 is in the future"),
    ("literature_search:\n  note: PubMed\n", ":3:3: literature_search: ", "up_to is missing"),
    ("literature_search: 2026-12-05\n", ":2:20: literature_search: ", "must be a mapping"),
    ("literature_search:\n  up_to: 2026-01-01\n  databases: [PubMed]\n", ":4:14: literature_search.databases: ",
     "unknown key(s) databases"),
    ("literature_search:\n  up_to: 2026-01-01\n  note: [PubMed]\n", ":4:9: literature_search.note: ", "must be text"),
])
def test_a_bad_search_date_names_kb_yaml_the_line_and_the_field(tmp_path, runner, section, where, message):
    root = make_kb(tmp_path, [])
    (root / "kb.yaml").write_text("title: Test KB\n" + section)
    res = invoke(runner, "--kb", root, "stats")
    assert res.exit_code == 1, res.output
    first, _, rest = res.output.partition("\n")
    assert f"kb.yaml{where}" in first and message in first, first
    assert rest.startswith("hint: ") and "Traceback" not in res.output


def test_kb_init_documents_the_search_date(tmp_path, runner):
    root = tmp_path / "new"
    assert invoke(runner, "init", root).exit_code == 0
    text = (root / "kb.yaml").read_text()
    assert "# literature_search:" in text and text == KB_YAML.format(title="New")
    assert open_kb(root).literature_search is None
    # uncommented, the example is a valid section
    block = re.search(r"^# literature_search:\n(?:#   .*\n)+", text, re.M).group(0)
    (root / "kb.yaml").write_text(text.replace(block, re.sub(r"^# ", "", block, flags=re.M)))
    assert str(open_kb(root).literature_search.up_to) == "2026-01-31"
