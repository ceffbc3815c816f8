"""The house's import rules, checked over the package's source with ``ast`` (imports inside
functions count too), so that they stay true:

* nothing imports ``main``, ``tools/`` or ``modes/`` (they sit on top; ``main`` may
  import ``modes``);
* the ground floor (``rewards/``, the GRPO math ``rl/advantages.py``, ``rl/losses.py`` and
  ``rl/group_filter.py``,
  ``metrics.py``) imports nothing from the model, the data, the sampler or the training;
* ``model/`` and ``data/`` never import each other; the sampler never imports the data.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "reczero_jax"
GROUND_FLOOR = ("reczero_jax.rewards", "reczero_jax.rl.advantages", "reczero_jax.rl.losses",
                "reczero_jax.rl.group_filter", "reczero_jax.metrics")  # fmt: skip


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path) -> set[str]:
    """Every reczero_jax module ``path`` imports (``from a import b`` counts as a.b too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in out if name.startswith("reczero_jax")}


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def violations(rule) -> list[str]:
    return sorted(
        f"{mod} imports {imp}" for mod, imps in MODULES.items() for imp in imps if rule(mod, imp)
    )


RULES = {
    "nothing imports main or tools": lambda mod, imp: within(
        imp, "reczero_jax.main", "reczero_jax.tools"
    ),
    "only main imports modes": lambda mod, imp: (
        within(imp, "reczero_jax.modes")
        and not within(mod, "reczero_jax.main", "reczero_jax.modes")
    ),
    "the ground floor stands alone": lambda mod, imp: (
        within(mod, *GROUND_FLOOR)
        and within(
            imp,
            "reczero_jax.model",
            "reczero_jax.data",
            "reczero_jax.sampling",
            "reczero_jax.hf",
            "reczero_jax.engine",
            "reczero_jax.settings",
            "reczero_jax.checkpointing",
            "reczero_jax.rl.run",
            "reczero_jax.rl.grpo",
            "reczero_jax.rl.sft",
            "reczero_jax.rl.step",
            "reczero_jax.rl.objectives",
            "reczero_jax.rl.evaluation",
            "reczero_jax.rl.traces",
        )
    ),  # fmt: skip
    "model does not import data": lambda mod, imp: (
        within(mod, "reczero_jax.model") and within(imp, "reczero_jax.data")
    ),
    "data does not import model": lambda mod, imp: (
        within(mod, "reczero_jax.data") and within(imp, "reczero_jax.model")
    ),
    "the sampler does not import data": lambda mod, imp: (
        within(mod, "reczero_jax.sampling") and within(imp, "reczero_jax.data")
    ),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_import_rule(name):
    assert violations(RULES[name]) == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n    from reczero_jax.tools import x\n    import reczero_jax.main\n"
    )
    assert imports_of(source) == {"reczero_jax.tools", "reczero_jax.tools.x", "reczero_jax.main"}
    assert len(MODULES) > 50 and "reczero_jax.rl.losses" in MODULES
