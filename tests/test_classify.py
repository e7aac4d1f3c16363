"""The guideline engine: every row of the status tables in ../shared/GUIDELINES.md, boundaries included."""
from __future__ import annotations

import json

import pytest

from her2path.classify import classify
from her2path.cli import main
from her2path.errors import ConfigError, InputError
from her2path.rules.tables import Guideline, load_guideline
from her2path.schema import CaseResult, IshFigures

# (mean HER2/cell, mean CEP17/cell) landing in each breast ISH group; boundaries exactly on the cut-offs.
GROUP = {1: (4.0, 2.0), 2: (3.98, 1.99), 3: (6.0, 3.01), 4: (4.0, 2.01), 5: (3.99, 2.0)}


def fig(group):
    h, c = GROUP[group]
    return IshFigures(her2_per_cell=h, cep17_per_cell=c)


@pytest.mark.parametrize("group,h,c", [(1, 4.0, 2.0), (2, 3.98, 1.99), (3, 6.0, 3.01), (4, 5.99, 3.0),
                                       (4, 4.0, 2.01), (5, 3.99, 2.0), (1, 8.0, 4.0), (3, 6.0, 4.0)])
def test_ish_group_boundaries(group, h, c):
    assert classify(ish=IshFigures(her2_per_cell=h, cep17_per_cell=c)).ish_group == group


@pytest.mark.parametrize("ihc,group,status,sub,step", [
    ("3+", None, "positive", None, None),
    ("3+", 5, "positive", None, None),            # IHC 3+ whatever the ISH
    ("2+", None, "needs-ish", None, "reflex"),
    ("1+", None, "negative", "low", None),
    ("0", None, "negative", None, None),           # a bare 0: null/ultralow needs the percentages
    ("2+", 1, "positive", None, None),
    ("2+", 5, "negative", "low", None),           # 2+ with negative ISH is HER2-low
    ("2+", 2, "equivocal", None, "still group 2: negative"),
    ("2+", 3, "equivocal", None, "still >= 6.0"),
    ("2+", 4, "equivocal", None, "still group 4: negative"),
    ("0", 2, "negative", None, None), ("1+", 3, "negative", "low", None), ("1+", 4, "negative", "low", None),
    ("1+", 1, "positive", None, None),
    (None, 1, "positive", None, None), (None, 5, "negative", None, None),
    (None, 2, "needs-ihc", None, "concurrent IHC"), (None, 3, "needs-ihc", None, "concurrent IHC"),
    (None, 4, "needs-ihc", None, "concurrent IHC"),
    ("no-call", None, "no-call", None, "repeat"),
])
def test_breast_status_rows(ihc, group, status, sub, step):
    r = classify(ihc=ihc, ish=fig(group) if group else None)
    assert (r.status, r.sub_label) == (status, sub)
    assert (step is None and r.next_step is None) or (step and step in r.next_step)
    assert r.reasons[0].startswith(f"{status} (breast)")


def test_fewer_than_20_nuclei_is_no_call():
    r = classify(ihc="2+", ish=IshFigures(her2_per_cell=8, cep17_per_cell=2, nuclei=19))
    assert r.status == "needs-ish" and "19 evaluable nuclei" in " ".join(r.reasons)
    assert "no call" in r.next_step
    assert classify(ihc="2+", ish=IshFigures(her2_per_cell=8, cep17_per_cell=2, nuclei=20)).status == "positive"
    assert classify(ish=IshFigures(her2_per_cell=8, cep17_per_cell=2, nuclei=3)).status == "no-call"


@pytest.mark.parametrize("name", ["gastric", "gastric-biopsy"])
@pytest.mark.parametrize("ihc,ratio,status", [
    ("3+", None, "positive"), ("2+", None, "needs-ish"), ("1+", None, "negative"), ("0", None, "negative"),
    ("2+", 2.0, "positive"), ("2+", 1.99, "negative"), ("0", 2.5, "positive"), (None, 1.5, "negative"),
    ])
def test_gastric_status_rows(name, ihc, ratio, status):
    r = classify(ihc=ihc, ish=IshFigures(ratio=ratio) if ratio else None, guideline=name)
    assert r.status == status and r.sub_label is None   # HER2-low is a breast label


def test_sub_labels_from_a_scored_slide(sample_slide):
    from her2path.pipeline.ihc_slide import score_ihc

    ihc = score_ihc(sample_slide.path, workers=1)
    r = classify(ihc=ihc)
    assert r.ihc_score == ihc.score and r.ihc.tumour_cells == ihc.tumour_cells
    assert CaseResult.from_json(r.to_json()) == r


def test_status_table_must_cover_every_case():
    g = load_guideline("breast").model_dump()
    g["status"]["rules"] = g["status"]["rules"][:3]
    with pytest.raises(ValueError, match="no status for"):
        Guideline.model_validate(g)
    g = load_guideline("breast").model_dump()
    g["status"]["rules"][0]["ihc"] = ["4+"]
    with pytest.raises(ValueError, match="not in"):
        Guideline.model_validate(g)


def test_bad_figures_are_named():
    with pytest.raises(InputError, match="HER2 and CEP17"):
        classify(ish=IshFigures(ratio=2.5))
    with pytest.raises(InputError, match="not one of"):
        classify(ihc="4+")
    with pytest.raises(ConfigError):
        classify(ihc="1+", guideline="lung")


def test_classify_cli_json(capsys):
    assert main(["classify", "--ihc", "2+", "--ratio", "2.5", "--her2-per-cell", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "positive" and out["ish_group"] == 1 and out["next_step"] is None
    assert {"status", "sub_label", "reasons", "next_step"} <= set(out)
    assert main(["classify", "--ihc", "5+"]) == 2
    assert "not one of" in capsys.readouterr().err


def test_case_cli_end_to_end(tmp_path, capsys):
    from her2path.synthetic.sample import build_sample_case

    sc = build_sample_case(tmp_path / "sample")
    out = tmp_path / "case"
    assert main(["case", "--ihc", str(sc.slide), "--ish", str(sc.fish[0].parent), "--out", str(out), "--json",
                 "--workers", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    truth = json.loads(sc.truth.read_text())
    assert res["ihc_score"] == truth["ihc"]["score"] == "2+"
    assert res["ish_group"] == 1 and res["status"] == "positive"
    saved = CaseResult.from_json((out / "result.json").read_text())
    assert saved.status == "positive" and (out / "ihc" / "cells.csv").exists() and (out / "ish" / "nuclei.csv").exists()
    assert main(["case", "--out", str(out)]) == 2


@pytest.mark.parametrize("args,said", [
    (["--ihc", "2+", "--ratio", "2.5", "--her2-per-cell", "3", "--cep17-per-cell", "2"], "does not match"),
    (["--ratio", "-1"], "--ratio must be a number above 0"),
    (["--ihc", "2+", "--her2-per-cell", "0", "--cep17-per-cell", "2"], "--her2-per-cell must be"),
    (["--ihc", "2+", "--ratio", "nan", "--her2-per-cell", "4"], "--ratio must be"),
    (["--ihc", "2+", "--her2-per-cell", "5", "--cep17-per-cell", "2", "--nuclei", "0"], "--nuclei must be"),
    ([], "nothing to classify"),
])
def test_classify_refuses_impossible_or_contradictory_input(args, said, capsys):
    assert main(["classify", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("her2path: error: ") and said in err[0] and "Fix:" in err[0]


def test_a_ratio_that_matches_within_rounding_is_accepted():
    r = classify(ihc="2+", ish=IshFigures(ratio=1.67, her2_per_cell=5.0, cep17_per_cell=3.0))
    assert r.ish_group == 4 and r.ratio == 1.67
