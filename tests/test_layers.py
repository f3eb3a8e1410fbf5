"""The package's dependency direction and its one error hierarchy.

Layers, bottom to top (a module may import only from its own layer or below)::

    errors  <-  models / data  <-  hub  <-  factory  <-  lightning / deploy  <-  bench  <-  cli

Checked twice: statically (every ``import`` statement of every module, also the ones inside
functions) and at run time (what importing a layer puts in ``sys.modules``, in a fresh
interpreter).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import resnet_pl
from resnet_pl.errors import ResNetPLError

PACKAGE = Path(resnet_pl.__file__).resolve().parent
ROOT = PACKAGE.parent

# Longest prefix wins. resnet_pl.data (the shared data layer) sits beside the models: it needs
# nothing of them, and the hub, training and deployment all read data through it.
LAYER_OF_PREFIX = {
    "resnet_pl": 0,
    "resnet_pl.errors": 0,
    "resnet_pl.models": 1,
    "resnet_pl.data": 1,
    "resnet_pl.hub": 2,
    "resnet_pl.factory": 3,
    "resnet_pl.lightning": 4,
    "resnet_pl.deploy": 4,
    "resnet_pl.serve": 4,
    "resnet_pl.backbones": 4,
    # The benchmark engine times exported files (deploy) and dense models (backbones): above
    # them, below the command line that runs it.
    "resnet_pl.bench": 5,
    "resnet_pl.cli": 6,
}
LAYER_NAMES = ["errors", "models/data", "hub", "factory", "lightning/deploy", "bench", "cli"]

# The only imports that go up a layer. Each is inside a function (checked below), so importing
# the lower module never loads the higher one; each says why it exists.
ALLOWED_UPWARD = {
    ("resnet_pl.models.hub_hooks", "resnet_pl.factory"): "resnet50(pretrained=True)",
    ("resnet_pl.models.hub_hooks", "resnet_pl.hub.hf"): "ResNet.from_pretrained & co.",
}


def layer_of(module: str) -> int:
    best = max((p for p in LAYER_OF_PREFIX if module == p or module.startswith(p + ".")), key=len)
    return LAYER_OF_PREFIX[best]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """``(imported resnet_pl module, at module level?)`` for each import statement, skipping
    ``if TYPE_CHECKING:`` blocks (they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names if a.name.startswith("resnet_pl"))
            elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith("resnet_pl"):
                base = str(child.module)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                        ROOT / Path(*sub.split(".")) / "__init__.py"
                    ).is_file()
                    found.append((sub if is_module else base, top))
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, top and not nested)

    visit(tree, True)
    return found


def test_no_module_imports_from_a_layer_above_it() -> None:
    problems = []
    used = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        src = module_name(path)
        for target, top_level in imports_of(path):
            if layer_of(target) <= layer_of(src):
                continue
            key = (src, target)
            if key in ALLOWED_UPWARD and not top_level:
                used.add(key)
                continue
            where = "at module level" if top_level else "inside a function"
            problems.append(
                f"{src} ({LAYER_NAMES[layer_of(src)]}) imports {target} "
                f"({LAYER_NAMES[layer_of(target)]}) {where}"
            )
    assert not problems, "\n".join(problems)
    # An exception that is no longer needed is removed from the list, not left to rot.
    assert used == set(ALLOWED_UPWARD), f"unused exceptions: {set(ALLOWED_UPWARD) - used}"


def test_lightning_and_deploy_do_not_import_each_other() -> None:
    """Training and deployment are siblings: classify/export run without Lightning, and
    training runs without ONNX."""
    for pkg, other in (("lightning", "resnet_pl.deploy"), ("deploy", "resnet_pl.lightning")):
        for path in sorted((PACKAGE / pkg).rglob("*.py")):
            bad = [t for t, _ in imports_of(path) if t == other or t.startswith(other + ".")]
            assert not bad, f"{module_name(path)} imports {bad}"


def test_runtimes_read_metadata_without_the_export_orchestrator() -> None:
    """deploy/runtime.py reads a file's metadata through deploy/metadata.py; it imports the
    export pipeline only inside the one function that exports (classify --backend onnx on a
    checkpoint)."""
    found = imports_of(PACKAGE / "deploy" / "runtime.py")
    assert ("resnet_pl.deploy.metadata", True) in found
    assert not [t for t, top in found if top and t == "resnet_pl.deploy.onnx_export"]


THIRD_PARTY_ABOVE_MODELS = ["lightning", "pytorch_lightning", "onnx", "onnxruntime"]
RUNTIME_CASES = {
    # statement run in a fresh interpreter: module prefixes that must NOT be loaded after it
    "import resnet_pl.errors": ["torch", "resnet_pl.models", "resnet_pl.hub"],
    "import resnet_pl.models; resnet_pl.models.resnet20()": [
        "resnet_pl.hub",
        "resnet_pl.factory",
        "resnet_pl.lightning",
        "resnet_pl.deploy",
        "resnet_pl.cli",
        "huggingface_hub",
        "safetensors",
        *THIRD_PARTY_ABOVE_MODELS,
    ],
    "import resnet_pl.hub; resnet_pl.hub.list_pretrained()": [
        "resnet_pl.factory",
        "resnet_pl.lightning",
        "resnet_pl.deploy",
        "resnet_pl.cli",
        "huggingface_hub",
        *THIRD_PARTY_ABOVE_MODELS,
    ],
    "import resnet_pl; resnet_pl.create_model('resnet20.fashion_mnist', pretrained=True)": [
        "resnet_pl.lightning",
        "resnet_pl.deploy",
        "resnet_pl.cli",
        "huggingface_hub",
        *THIRD_PARTY_ABOVE_MODELS,
    ],
    "import resnet_pl.lightning": [
        "resnet_pl.deploy",
        "resnet_pl.bench",
        "resnet_pl.cli",
        "onnx",
        "onnxruntime",
    ],
    "import resnet_pl.deploy": [
        "resnet_pl.lightning",
        "resnet_pl.bench",
        "resnet_pl.cli",
        "lightning",
        "pytorch_lightning",
    ],
    # The engine that ships: no Lightning, and nothing of the repository's benchmarks/ folder.
    "import resnet_pl.bench.run, resnet_pl.bench.measure": [
        "resnet_pl.lightning",
        "resnet_pl.cli",
        "benchmarks",
        "lightning",
        "pytorch_lightning",
    ],
    # Serving sits beside deploy: no training code in a server process.
    "import resnet_pl.serve": [
        "resnet_pl.lightning",
        "resnet_pl.cli",
        "lightning",
        "pytorch_lightning",
    ],
}


@pytest.mark.parametrize("statement", list(RUNTIME_CASES))
def test_importing_a_layer_loads_nothing_above_it(statement: str) -> None:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    for prefix in RUNTIME_CASES[statement]:
        hits = [m for m in loaded if m == prefix or m.startswith(prefix + ".")]
        assert not hits, f"`{statement}` loaded {hits}"


# --------------------------------------------------------------------------------------------
# One error hierarchy
# --------------------------------------------------------------------------------------------
def _all_error_classes() -> list[type[BaseException]]:
    """Every exception class defined in a resnet_pl module (imports every module)."""
    import importlib

    classes: dict[str, type[BaseException]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("resnet_pl")
            ):
                classes[f"{value.__module__}.{value.__qualname__}"] = value
    return list(classes.values())


def test_every_error_derives_from_the_base_and_a_builtin() -> None:
    classes = _all_error_classes()
    assert len(classes) >= 20, sorted(c.__name__ for c in classes)
    for cls in classes:
        if not issubclass(cls, Exception):
            # TrainingInterrupted is a BaseException, as KeyboardInterrupt is, so that no
            # `except Exception` on the way up swallows a Ctrl-C: not an error to classify.
            continue
        assert issubclass(cls, ResNetPLError), cls
        if cls is not ResNetPLError:
            # ... and from a standard exception more specific than Exception (ValueError,
            # FileNotFoundError, pickle.UnpicklingError ...), so existing handlers still work.
            std = [b for b in cls.__mro__ if not b.__module__.startswith("resnet_pl")]
            assert std[0] not in (Exception, BaseException), f"{cls} has no specific builtin"
    names = [c.__name__ for c in classes]
    assert len(names) == len(set(names)), "an error class is defined twice"


def test_merged_duplicates_are_one_object() -> None:
    from resnet_pl import data, errors
    from resnet_pl.deploy import source
    from resnet_pl.hub import checkpoint, evaluate, pretrained
    from resnet_pl.lightning import errors as lightning_errors

    assert evaluate.DatasetUnavailableError is errors.DatasetUnavailableError
    # A missing dataset is one kind of unavailable dataset: the hub's handlers catch both.
    assert issubclass(data.DataNotFoundError, errors.DatasetUnavailableError)
    assert lightning_errors.DataNotFoundError is data.DataNotFoundError
    assert lightning_errors.BadDataError is data.BadDataError
    assert source.CheckpointError is checkpoint.CheckpointError is checkpoint.CheckpointFormatError
    assert source.sha256_file is pretrained.sha256_file
    assert resnet_pl.ResNetPLError is ResNetPLError
