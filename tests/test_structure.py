"""The import direction of ../shared/DESIGN.md, read from the import lines of every module.

cli/review -> pipeline -> classify -> rules -> ihc/ish -> io -> schema/config/errors; nothing below the
CLI imports the package top (``her2path/__init__.py``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "her2path"

# layer of a module -> layers it must not import
FORBIDDEN = {
    "ihc": {"io", "pipeline", "classify", "cli", "rules", "review", "synthetic"},
    "ish": {"io", "pipeline", "classify", "cli", "rules", "review", "synthetic"},
    "io": {"ihc", "ish", "rules", "classify", "pipeline", "cli", "review", "synthetic"},
    "rules": {"pipeline", "classify", "cli", "review", "synthetic", "ihc", "ish", "io"},
    "classify": {"pipeline", "cli", "review"},
    "pipeline": {"cli", "review"},
    "core": {"ihc", "ish", "io", "rules", "classify", "pipeline", "cli", "review", "synthetic"},
}
CORE = {"errors", "config", "schema", "provenance", "optics", "segmentation", "filters", "_version", "progress"}


def layer(module: str) -> str:
    """'her2path.ihc.cells' -> 'ihc'; core modules -> 'core'; the top -> 'top'."""
    parts = module.split(".")
    if len(parts) == 1:
        return "top"
    return "core" if parts[1] in CORE else parts[1]


def imports(path: Path, module: str) -> list[str]:
    """Absolute names of the her2path modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "her2path"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] != "her2path":
                continue
            found.append(name)
            if node.module is None:          # `from .. import x`: x may be a module of that package
                found += [f"{name}.{a.name}" for a in node.names]
    return found


def violations(files) -> list[str]:
    bad = []
    for path, module in files:
        src = layer(module)
        for name in imports(path, module):
            dst = layer(name)
            if name == "her2path" and module != "her2path.cli" and src != "top":
                bad.append(f"{module} imports the package top (her2path/__init__.py)")
            elif dst in FORBIDDEN.get(src, set()):
                bad.append(f"{module} ({src}) imports {name} ({dst})")
    return bad


def package_files():
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield p, ".".join(parts)


def test_imports_point_down_only():
    assert violations(package_files()) == []


@pytest.mark.parametrize("module,source,expected", [
    ("her2path.ihc.cells", "from ..io.slide import open_image", "imports her2path.io.slide (io)"),
    ("her2path.ish.count", "from ..pipeline import batch", "(pipeline)"),
    ("her2path.ihc.tile", "from ..rules.ihc import cell_classes", "(rules)"),
    ("her2path.rules.status", "from ..pipeline.case import run_case", "(pipeline)"),
    ("her2path.classify.train", "from .. import __version__", "imports the package top"),
    ("her2path.pipeline.case", "import her2path", "imports the package top"),
    ("her2path.classify.model", "from her2path.cli import main", "(cli)"),
])
def test_the_check_finds_an_arrow_against_the_design(tmp_path, module, source, expected):
    f = tmp_path / "m.py"
    f.write_text(source + "\n")
    found = violations([(f, module)])
    assert len(found) == 1 and expected in found[0]
