"""Tile datasets, the tile model, train / evaluate / calibrate, and broken datasets."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from her2path.classify.datasets import DatasetError, load_tile_set
from her2path.classify.metrics import qwk
from her2path.cli import main
from her2path.synthetic.tiles import write_tile_dataset


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiles") / "ds"
    write_tile_dataset(root, 16, seed=11)
    return root


def test_qwk():
    assert qwk([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0
    assert qwk([0, 1, 2, 3], [3, 2, 1, 0]) < 0
    assert np.isnan(qwk([], []))


def test_layouts_folders_csv_and_bci_names(tiles, tmp_path):
    ts = load_tile_set(tiles)
    assert len(ts) == 16 and min(ts.counts().values()) >= 1
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{['0', '1+', '2+', '3+'][y]}\n" for p, y in zip(ts.paths, ts.labels)))
    assert load_tile_set(csv).labels.tolist() == ts.labels.tolist()
    flat = tmp_path / "bci"
    flat.mkdir()
    for i, (p, y) in enumerate(zip(ts.paths, ts.labels)):
        shutil.copy(p, flat / f"{i:05d}_train_{['0', '1+', '2+', '3+'][y]}.png")
    assert sorted(load_tile_set(flat).labels.tolist()) == sorted(ts.labels.tolist())


def test_broken_dataset_lists_every_bad_file(tiles, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiles, bad)
    (bad / "4+").mkdir()
    (bad / "1+" / "broken.png").write_bytes(b"not a png")
    shutil.rmtree(bad / "3+")
    with pytest.raises(DatasetError) as e:
        load_tile_set(bad)
    msg = e.value.one_line()
    assert "4+" in msg and "broken.png: unreadable image" in msg and "no tiles of class 3+" in msg
    out = tmp_path / "m.pt"
    assert main(["train", str(bad), "--out", str(out), "--epochs", "1"]) == 2
    assert not out.exists() and not (tmp_path / "m.pt.ckpt").exists()     # training never started


def test_train_resume_evaluate_and_calibrate(tiles, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["train", str(tiles), "--out", str(out), "--epochs", "1", "--batch", "8"]) == 0
    assert out.exists() and (tmp_path / "m-confusion.png").exists()
    metrics = json.loads((tmp_path / "m-metrics.json").read_text())
    assert metrics["epoch"] == 1 and len(metrics["history"]) == 1
    # resume: the checkpoint carries on to epoch 2 rather than starting again
    assert main(["train", str(tiles), "--out", str(out), "--epochs", "2", "--batch", "8"]) == 0
    assert len(json.loads((tmp_path / "m-metrics.json").read_text())["history"]) == 2
    capsys.readouterr()
    assert main(["evaluate", str(tiles), "--model", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["n"] == 16 and np.array(ev["confusion"]).sum() == 16 and {"accuracy", "qwk"} <= set(ev)
    assert main(["evaluate", str(tiles), "--model", str(tmp_path / "m-metrics.json")]) == 2
    cfg = tmp_path / "lab.yaml"
    assert main(["calibrate", str(tiles), "--out", str(cfg), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["after"]["accuracy"] >= r["before"]["accuracy"] and cfg.exists()
    from her2path.config import load_settings
    assert load_settings(cfg).ihc.cell_class.weak_od == r["cutoffs"]["weak_od"]


def test_default_model_ships_and_scores_tiles(tiles):
    from her2path.classify.model import load_model, predict
    from her2path.config import DEFAULT_TILE_MODEL
    from her2path.classify.train import load_pixels

    model, meta = load_model()
    assert DEFAULT_TILE_MODEL.exists() and meta["tile_mpp"] == 0.5
    ts = load_tile_set(tiles)
    p = predict(model, load_pixels(ts))
    assert p.shape == (16, 4) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert qwk(ts.labels, p.argmax(1)) > 0.8


def test_model_card_names_the_shipped_weights():
    from pathlib import Path

    from her2path.config import DEFAULT_TILE_MODEL
    from her2path.provenance import file_sha256 as file_digest

    card = (Path(DEFAULT_TILE_MODEL).parent / "MODEL_CARD.md").read_text()
    assert file_digest(DEFAULT_TILE_MODEL) in card


def test_the_tile_model_abstains_only_beyond_its_novelty_threshold():
    """The shipped model withholds its vote on a tile whose features lie farther from its training data
    than its novelty threshold, and votes inside it; a model without novelty statistics abstains only
    where no patch holds tissue to read."""
    from her2path.classify.model import embeddings, load_model, novelty_ratio, tile_probabilities

    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal([150, 110, 90], 20, (256, 256, 3)), 0, 255).astype(np.uint8)   # brown noise
    model, _ = load_model(None)
    assert model.novelty is not None
    ratio = float(novelty_ratio(model, embeddings(model, rgb[None]))[0])
    threshold = model.novelty["threshold"]
    for scale, abstains in ((2.0, False), (0.5, True)):       # the tile's distance at half / twice the threshold
        model.novelty = {**model.novelty, "threshold": threshold * ratio * scale}
        probs, abstained = tile_probabilities(model, rgb, 0.5)
        assert probs is not None and abstained is abstains
    model.novelty = None
    assert novelty_ratio(model, embeddings(model, rgb[None])).tolist() == [0.0]
    assert tile_probabilities(model, rgb, 0.5)[1] is False
    pale = np.full((256, 256, 3), 240, np.uint8)               # no patch with tissue to read: no vote
    assert tile_probabilities(model, pale, 0.5) == (None, True)
