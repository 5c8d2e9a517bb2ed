"""The import rules of the package (README "Layout"): layers only import downward, and no module
imports another module's private names."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fer_jax"
# The runtime and the commands on top of it; the lower layers must not import them.
UPPER = {"fer_jax.train", "fer_jax.experiment", "fer_jax.explain", "fer_jax.predict",
         "fer_jax.main", "fer_jax.interrupts", "fer_jax.clip_sampling", "fer_jax.distributed"}
LOWER = ("models", "data", "attribution", "sampling", "evaluation", "viz")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(imported module, imported names) of every import statement of ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, tuple(a.name for a in node.names)


MODULES = sorted(PACKAGE.rglob("*.py"))


def _imported_modules(module: str, names: tuple[str, ...]) -> set[str]:
    """``from fer_jax import train`` imports the module fer_jax.train."""
    return {module} | {f"{module}.{n}" for n in names}


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_never_import_the_runtime(layer):
    offending = []
    for path in MODULES:
        if path.relative_to(PACKAGE).parts[0] != layer:
            continue
        for module, names in _imports(path):
            upward = _imported_modules(module, names) & UPPER
            if upward:
                offending.append(f"{_module_name(path)} imports {sorted(upward)}")
    assert not offending, offending


def test_attribution_depends_only_on_jax_flax_and_itself():
    """Attribution transforms can be imported into other JAX projects (the spec's rule)."""
    allowed = ("fer_jax.attribution", "fer_jax.naturalsort", "fer_jax.errors")
    for path in (PACKAGE / "attribution").rglob("*.py"):
        for module, names in _imports(path):
            if module == "fer_jax" or module.startswith("fer_jax."):
                targets = _imported_modules(module, names) if module == "fer_jax" else {module}
                assert all(t.startswith(allowed) for t in targets), (path.name, module, names)


def test_no_private_name_is_imported_across_modules():
    offending = []
    for path in MODULES:
        for module, names in _imports(path):
            if module.startswith("fer_jax"):
                offending += [f"{_module_name(path)}: from {module} import {n}" for n in names
                              if n.startswith("_") and not n.startswith("__")]
    assert not offending, offending


def test_the_rules_see_a_violation(tmp_path):
    """The checks read imports the way they are written (guards against a vacuous pass)."""
    source = tmp_path / "example.py"
    source.write_text("from fer_jax import train\nfrom fer_jax.models.cnn3d import _scale\n"
                      "import fer_jax.experiment\n")
    found = list(_imports(source))
    assert ("fer_jax", ("train",)) in found and ("fer_jax.experiment", ()) in found
    assert _imported_modules("fer_jax", ("train",)) & UPPER == {"fer_jax.train"}
    assert any(n.startswith("_") for _, names in found for n in names)
