"""Every row of the guideline tables, boundaries included."""
from __future__ import annotations

import numpy as np
import pytest

from her2path.errors import ConfigError
from her2path.rules.ihc import ihc_decision
from her2path.rules.ish import ish_group
from her2path.rules.tables import load_guideline


def cells(**percent):
    """100 cells with the given percent per class (keys c0, c1, c2, c3)."""
    n = {k: int(v) for k, v in percent.items()}
    out = ["1+"] * n.get("c1", 0) + ["2+"] * n.get("c2", 0) + ["3+"] * n.get("c3", 0)
    return ["0"] * (100 - len(out)) + out


@pytest.mark.parametrize("mix,score,sub", [
    (dict(c3=11), "3+", "positive"),
    (dict(c3=10), "2+", "equivocal"),           # intense complete in <=10%: unusual pattern, 2+
    (dict(c2=11), "2+", "equivocal"),
    (dict(c2=6, c3=5), "2+", "equivocal"),
    (dict(c2=10), "0", "ultralow"),             # exactly 10% stained is not >10%: no row above 0 fires
    (dict(c1=11), "1+", "low"),
    (dict(c1=10), "0", "ultralow"),             # faint incomplete in <=10%
    (dict(c1=1), "0", "ultralow"),
    (dict(c3=1), "2+", "equivocal"),            # intense complete in 1% (a population) is 2+
    (dict(c1=5), "0", "ultralow"),
    (dict(), "0", "null"),
])
def test_breast_ihc_rows(mix, score, sub):
    d = ihc_decision(cells(**mix), guideline="breast")
    assert (d.score, d.sub_label) == (score, sub)
    assert d.reason.startswith(f"IHC {score}")


@pytest.mark.parametrize("mix,score", [
    (dict(c3=10), "3+"), (dict(c3=9), "0"),     # >=10%: exactly 10% counts; no unusual-pattern row
    (dict(c2=10), "2+"), (dict(c2=5, c3=5), "2+"), (dict(c2=9), "0"),
    (dict(c1=10), "1+"), (dict(c1=5, c3=5), "1+"), (dict(c1=9), "0"),
])
def test_gastric_surgical_rows(mix, score):
    assert ihc_decision(cells(**mix), guideline="gastric").score == score


def test_gastric_biopsy_cluster_of_five():
    xy = np.c_[np.arange(100) * 10.0, np.zeros(100)]        # cells in a row, 10 um apart
    five = ["3+"] * 5 + ["0"] * 95
    assert ihc_decision(five, xy, "gastric-biopsy").score == "3+"
    four_scattered = ["3+", "0"] * 4 + ["0"] * 92
    assert ihc_decision(four_scattered, xy, "gastric-biopsy").score == "0"
    four = ["2+"] * 4 + ["0"] * 96
    assert ihc_decision(four, xy, "gastric-biopsy").score == "0"
    with pytest.raises(ConfigError, match="positions"):
        ihc_decision(five, None, "gastric-biopsy")


def test_near_cutoff_flag():
    assert ihc_decision(cells(c3=11)).near_cutoff
    assert not ihc_decision(cells(c3=40)).near_cutoff


@pytest.mark.parametrize("her2,cep17,group", [
    (4.0, 2.0, 1), (8.0, 2.0, 1),               # ratio exactly 2.0, HER2 exactly 4.0
    (3.99, 1.99, 2), (3.0, 1.2, 2),
    (6.0, 3.1, 3), (9.0, 6.0, 3),               # HER2 exactly 6.0 with ratio < 2
    (4.0, 2.01, 4), (5.99, 3.1, 4),
    (3.99, 2.0, 5), (2.0, 2.0, 5),
])
def test_breast_ish_groups(her2, cep17, group):
    assert ish_group(her2, cep17) == group


def test_gastric_has_no_groups_and_unknown_guideline_is_named():
    assert ish_group(5, 2, "gastric") is None
    with pytest.raises(ConfigError, match="breast"):
        load_guideline("lung")


def test_near_cutoff_names_the_cutoff_and_the_distance():
    from her2path.rules.flags import near_cutoff_reason
    from her2path.rules.ihc import ihc_decision

    classes = ["3+"] * 17 + ["0"] * 183                      # 8.5% intense complete: 2+ (unusual pattern)
    d = ihc_decision(classes, guideline="breast")
    assert d.near_cutoff and any("3+ cells 8.5% against the > 10% cut-off of IHC 3+: 1.5 points below" in c
                                 for c in d.cutoffs)
    assert "1.5 points below" in near_cutoff_reason(2, d.cutoffs)


def test_a_tile_model_vote_one_class_away_flags_only_when_confident():
    """A coin-flip vote one class from the measured score sends no reviewer to a tile; a confident one,
    or one two classes away, does (``rules.flags.tile_flagged`` with the shipped cut-off)."""
    from her2path.config import load_settings
    from her2path.rules.flags import tile_flagged

    p = load_settings().tile_model.flag_probability
    assert not tile_flagged("0", "1+", 0.6, True, p)
    assert tile_flagged("0", "1+", 0.95, True, p)
    assert tile_flagged("1+", "3+", 0.4, True, p)
    assert not tile_flagged("2+", "2+", 0.99, True, p)
    assert not tile_flagged("0", None, 0.99, True, p)        # the model abstained or did not run
    assert not tile_flagged("0", "3+", 0.99, False, p)       # too few tumour cells to compare


def test_a_guideline_table_without_a_positive_near_cutoff_interval_is_refused():
    from pydantic import ValidationError

    from her2path.rules.tables import IshTable

    with pytest.raises(ValidationError, match="near_cutoff_z"):
        IshTable(near_cutoff_z=0)
