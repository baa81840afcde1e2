"""The package's folders are its stages: a module imports only from its own folder or earlier ones, never a
private name of another folder, and the imports form no circle (read with ``ast``, nothing imported)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xfuse"
STAGES = ("features", "calibration", "heads", "sweep", "report")  # the order data flows; a folder imports earlier ones
TOP = {"errors": -1, "cli": len(STAGES), "__main__": len(STAGES), "__init__": len(STAGES)}  # errors: below every stage


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(module: str) -> int:
    """A module's place in the pipeline: its folder's position; ``errors`` below all, the command line above."""
    parts = module.split(".")
    if len(parts) == 1:
        return TOP["__init__"]
    if parts[1] in STAGES:
        return STAGES.index(parts[1])
    return TOP[parts[1]]


def imports_of(path: Path, own: str = None) -> list:
    """(imported module, [names], line) of every import of a module, function-level ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = own or module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("xfuse")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("xfuse"):
                names = [alias.name for alias in node.names]
                # "from xfuse.features import store" imports a module: count it as that module
                modules = [f"{target}.{name}" for name in names if (PACKAGE.parent / f"{target}.{name}".replace(
                    ".", "/")).with_suffix(".py").is_file()]
                found += [(module, [], node.lineno) for module in modules]
                if len(modules) < len(names):
                    found.append((target, [n for n in names if f"{target}.{n}" not in modules], node.lineno))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_stage_folder_or_at_the_top():
    for path in MODULES:
        parts = path.relative_to(PACKAGE).parts
        assert (len(parts) == 1 and path.stem in TOP) or (len(parts) == 2 and parts[0] in STAGES), path


def violations(path: Path, own: str) -> list:
    """What breaks the layout's rules in one module: later stages imported, other folders' private names."""
    found = []
    for target, names, line in imports_of(path, own):
        if target == "xfuse" and names == ["__version__"]:
            continue  # the version lives at the top and imports nothing
        if rank(target) > rank(own):
            found.append(f"{path}:{line}: {own} imports {target}, a later stage")
        private = [name for name in names if name.startswith("_")]
        if target.split(".")[:2] != own.split(".")[:2] and private:
            found.append(f"{path}:{line}: {own} reaches into {target}'s private name(s) {private}")
        if own.split(".")[1:2] == ["calibration"] and not (target == "xfuse.errors"
                                                           or target.startswith("xfuse.calibration")):
            found.append(f"{path}:{line}: calibration imports only xfuse.errors, got {target}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_point_down_the_pipeline(path):
    assert violations(path, module_name(path)) == []


@pytest.mark.parametrize("source, own", [
    ("from xfuse.report.tables import build_report\n", "xfuse.features.bad"),
    ("def f():\n    from xfuse.sweep.plan import load_plan\n", "xfuse.heads.bad"),
    ("from xfuse.heads.train import _loss\n", "xfuse.report.bad"),
    ("from xfuse.features.store import FeatureStore\n", "xfuse.calibration.bad"),
])
def test_the_check_catches_what_it_forbids(tmp_path, source, own):
    module = tmp_path / "bad.py"
    module.write_text(source)
    assert len(violations(module, own)) == 1


def test_no_circle():
    graph = {module_name(path): {target for target, _, _ in imports_of(path)} for path in MODULES}
    graph = {module: {t for t in targets if t in graph and t != module} for module, targets in graph.items()}
    state = {}

    def visit(module, trail):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import circle: " + " -> ".join(trail + [module])
        state[module] = "open"
        for target in sorted(graph[module]):
            if target.rpartition(".")[0] == module:
                continue  # a package's __init__ naming its own submodules lazily
            visit(target, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_the_public_imports_the_readme_shows_work_in_a_fresh_interpreter():
    """``xfuse.features`` exports no name of one of its submodules (it would be the module or the function
    depending on what was imported first); the README's imports give the classes and callables."""
    import subprocess
    import sys

    code = ("from xfuse.features import ExtractConfig, FeatureStore, AlignConfig\n"
            "from xfuse.features.extract import ExtractConfig as E, extract\n"
            "from xfuse.features.align import align\n"
            "from xfuse.heads.train import TrainConfig, train_heads\n"
            "assert E is ExtractConfig and callable(extract) and callable(align) and callable(train_heads)\n"
            "assert isinstance(FeatureStore, type) and isinstance(AlignConfig, type)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_shell_scripts_import_names_that_exist():
    """Scripts under benchmarks/, docs/ and .ci/ run python snippets: their xfuse imports must follow the layout."""
    import importlib
    import re

    repository = PACKAGE.parent
    found = 0
    for script in sorted(repository.glob("**/*.sh")):
        if ".git" in script.parts or "out" in script.parts:
            continue
        for module, names in re.findall(r"from (xfuse[\w.]*) import ([\w, ]+)", script.read_text()):
            imported = importlib.import_module(module)
            for name in (name.strip() for name in names.split(",")):
                assert hasattr(imported, name), f"{script}: {module} has no {name}"
                found += 1
    assert found >= 6
