"""Forest plot layouts: the plot starts after the longest label, and the phone layout stays in its width.
(tests/test_site_browser.py checks the boxes a real browser draws, at 390 and 1280 px.)"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from kb.forest import NARROW_W, forest_html, layout, narrow_layout, text_width

from .test_synthesis import binary, make_kb, meta_json, trial


def _result(runner, tmp_path, *specs):
    recs = [trial(sid, [binary("response", *counts)], authors=[author]) for sid, author, counts in specs]
    return meta_json(runner, make_kb(tmp_path, recs), "--outcome", "response")


def test_one_trial_diamond_starts_after_the_pooled_label(runner, tmp_path):
    # one trial: the pooled diamond spans its whole CI, from near the axis's left end
    r = _result(runner, tmp_path, ("taylor-2018", "Taylor CB", (13, 20, 1, 20)))
    f = layout(r)
    assert f["diamond"]["x1"] - 8 >= text_width(f["pooled_label"], bold=True)
    assert f["left"] >= 8 + text_width(f["pooled_label"], bold=True)


def test_a_long_label_widens_the_label_column(runner, tmp_path):
    long = "Montgomery-Featherstonehaugh"
    r = _result(runner, tmp_path, ("alpha-2001", f"{long} A", (12, 20, 4, 20)), ("beta-2005", "Beta B", (8, 15, 3, 16)))
    f = layout(r)
    assert f["left"] >= 8 + text_width(f"{long} 2001")
    assert min(row["x1"] for row in f["rows"]) >= f["left"] and f["width"] == f["left"] + f["plot_w"] + 210


def test_the_narrow_layout_stays_in_its_width_and_stacks_text_above_marks(runner, tmp_path):
    long = "Montgomery-Featherstonehaugh-Smythe"
    r = _result(runner, tmp_path, ("alpha-2001", f"{long} A", (12, 20, 4, 20)), ("beta-2005", "Beta B", (8, 15, 3, 16)))
    f = narrow_layout(r)
    assert f["width"] == NARROW_W
    xs = [v for row in f["rows"] for v in (row["x1"], row["x2"])] + [f["diamond"]["x1"], f["diamond"]["x2"]]
    assert min(xs) >= f["pad"] and max(xs) <= NARROW_W - f["pad"]
    for row in f["rows"]:
        assert row["y"] - row["size"] / 2 > max(row["label_y"], row["text_y"])  # the square sits below its text
    by_label = {row["label"]: row for row in f["rows"]}
    assert by_label[f"{long} 2001"]["text_y"] > by_label[f"{long} 2001"]["label_y"]  # too long: two text lines
    assert by_label["Beta 2005"]["text_y"] == by_label["Beta 2005"]["label_y"]
    assert f["diamond"]["y"] - 6 > f["pool_text_y"]


def test_the_page_gets_both_layouts_with_unique_ids(runner, tmp_path):
    r = _result(runner, tmp_path, ("alpha-2001", "Alpha A", (12, 20, 4, 20)), ("beta-2005", "Beta B", (8, 15, 3, 16)))
    html = forest_html(r, uid="forest-x")
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) == 2
    classes = [ET.fromstring(s).get("class") for s in svgs]
    assert classes == ["forest-wide", "forest-narrow"]
    ids = re.findall(r'id="([^"]+)"', html)
    assert len(ids) == len(set(ids)) == 4
