from __future__ import annotations

import pytest

from her2path import config
from her2path.config import NucleiConfig, Settings, load_settings
from her2path.errors import ConfigError


def test_default_config_loads():
    s = load_settings()
    assert s.tiling.analysis_mpp == 0.5 and len(s.digest()) == 64


def test_the_code_defaults_are_the_shipped_configuration():
    """Library calls that take the default ``cfg`` apply the rules the CLI applies: one set of cut-offs
    (configs/default.yaml), not a second, older one in the code."""
    shipped, code = load_settings().model_dump(), Settings().model_dump()

    def differ(a, b, path=""):
        if isinstance(a, dict):
            return [d for k in a for d in differ(a[k], b[k], f"{path}.{k}")]
        return [] if a == b else [f"{path}: yaml {a}, code {b}"]

    assert differ(shipped, code) == []


def test_no_setting_has_a_value_written_in_the_code():
    """The values live in configs/default.yaml alone; the classes hold types and limits."""
    def sections(model):
        yield model
        for f in model.model_fields.values():
            if isinstance(f.annotation, type) and issubclass(f.annotation, config._Section):
                yield from sections(f.annotation)

    written = [f"{m.__name__}.{name}" for m in sections(Settings)
               for name, f in m.model_fields.items() if not f.is_required()]
    assert written == []


def test_a_value_changed_in_default_yaml_reaches_the_library_defaults(tmp_path, monkeypatch):
    text = config.DEFAULT_CONFIG.read_text().replace("min_area_um2: 12.0", "min_area_um2: 14.5", 1)
    assert "min_area_um2: 14.5" in text
    (tmp_path / "default.yaml").write_text(text)
    monkeypatch.setattr(config, "DEFAULT_CONFIG", tmp_path / "default.yaml")
    config._default_yaml.cache_clear()
    try:
        assert NucleiConfig().min_area_um2 == 14.5
        assert load_settings().ihc.nuclei.min_area_um2 == 14.5
    finally:
        config._default_yaml.cache_clear()


def test_a_partial_user_config_keeps_the_shipped_values_it_does_not_name(tmp_path):
    p = tmp_path / "lab.yaml"
    p.write_text("ihc:\n  cell_class:\n    weak_od: 0.05\n")
    s = load_settings(p)
    assert s.ihc.cell_class.weak_od == 0.05
    assert s.ihc.cell_class.intense_od == load_settings().ihc.cell_class.intense_od
    assert s.ish == load_settings().ish


@pytest.mark.parametrize("text,match", [
    ("tiling:\n  analysis_mpp: -1\n", "tiling.analysis_mpp"),
    ("tiling:\n  tile_size: 5\n", "tiling.tile_size: unknown key"),
    ("tile_model:\n  flag_probability: 1.5\n", "tile_model.flag_probability"),
    ("ish:\n  nuclei:\n    max_edge_um: 0\n", "ish.nuclei.max_edge_um"),
    ("ihc:\n  nuclei:\n    crosstalk_max: 1.5\n", "ihc.nuclei.crosstalk_max"),
    ("tiling: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "mapping"),
])
def test_bad_config_names_the_key(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as exc:
        load_settings(p)
    assert str(p) in str(exc.value)
