from __future__ import annotations

import pytest

from her2path.config import Settings, load_settings
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


@pytest.mark.parametrize("text,match", [
    ("tiling:\n  analysis_mpp: -1\n", "tiling.analysis_mpp"),
    ("tiling:\n  tile_size: 5\n", "tiling.tile_size: unknown key"),
    ("tiling: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "mapping"),
])
def test_bad_config_names_the_key(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as exc:
        load_settings(p)
    assert str(p) in str(exc.value)
