"""The docs name what the code has: every core module in the README's layout."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_unet"
SUBPACKAGES = sorted(
    p.parent.name for p in PACKAGE.glob("*/__init__.py") if p.parent.name != "_widgets"
)


def _core_modules() -> set[str]:
    """``folder/module`` for the modules in the core's subpackages, ``module`` at the root."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    for folder in SUBPACKAGES:
        if folder != "distributed":
            modules |= {f"{folder}/{p.stem}" for p in (PACKAGE / folder).glob("*.py")}
    return modules - {f"{folder}/__init__" for folder in SUBPACKAGES}


def test_readme_layout_lists_every_core_module():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout") :]
    modules = _core_modules()
    assert modules, "no core modules found"
    missing = sorted(m for m in modules if f"`{m.rpartition('/')[2]}`" not in layout)
    missing += [f"{f}/" for f in SUBPACKAGES if f"`{f}/`" not in layout]
    assert not missing, f"README's Layout does not mention {missing}"


def test_architecture_doc_owns_every_core_module():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text[text.index("## What each module owns") :]
    modules = _core_modules() - {"_sample_data", "_writer"}  # named in the tree
    missing = sorted(
        m for m in modules if f"`{m}`" not in table and f"`{m.rpartition('/')[2]}`" not in table
    )
    assert not missing, f"docs/architecture.md does not say what {missing} own"
    missing = [f for f in SUBPACKAGES if f"  {f}/" not in text]
    assert not missing, f"docs/architecture.md's tree does not show {missing}"
