from __future__ import annotations

import pytest

from her2path.config import load_settings
from her2path.errors import ConfigError


def test_default_config_loads():
    s = load_settings()
    assert s.tiling.analysis_mpp == 0.5 and len(s.digest()) == 64


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
