"""The dependency rules of the package layout, checked on the source of every module.

The science (``analysis/``, ``physics/``) runs the same live, in replay, offline and in a
Dask worker, so it never imports the control and storage stack; the simulators' physics
never imports the analysis it is meant to check; the shared foundations (``materials/``,
``instrument/``) import nothing else of the package. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mc_beamline"

CONTROL_STACK = ("bluesky", "ophyd", "ophyd_async", "tiled", "databroker", "caproto", "event_model",
                 "bluesky_tiled_plugins", "bluesky_queueserver")

RULES = {
    # folder: (forbidden third-party top-level packages, forbidden mc_beamline sub-packages)
    "analysis": (CONTROL_STACK, ("physics", "sim_iocs", "devices", "plans", "callbacks", "storage", "commands",
                                 "queue_server", "io")),
    "physics": (CONTROL_STACK, ("analysis", "sim_iocs", "devices", "plans", "callbacks", "storage", "commands",
                                "queue_server", "io")),
    "materials": (CONTROL_STACK, ("analysis", "physics", "instrument", "sim_iocs", "devices", "plans", "callbacks",
                                  "storage", "commands", "queue_server", "io")),
    "instrument": (CONTROL_STACK, ("analysis", "physics", "materials", "sim_iocs", "devices", "plans", "callbacks",
                                   "storage", "commands", "queue_server", "io")),
}


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path`` (a module below package
    folder ``root``), relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(root.parent).with_suffix("").parts)[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names if name == "mc_beamline"]
    return found


def violations(folder: str, root: Path = PACKAGE) -> list[str]:
    """Every import in ``root/folder`` that its rule forbids, as ``file:line imports module``."""
    third_party, siblings = RULES[folder]
    bad = []
    for path in sorted((root / folder).rglob("*.py")):
        for line, module in imported_modules(path, root):
            top = module.split(".")[0]
            parts = module.split(".")
            if top in third_party or (top == "mc_beamline" and len(parts) > 1 and parts[1] in siblings):
                bad.append(f"{path.relative_to(root.parent)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("folder", sorted(RULES))
def test_layout_import_rules(folder):
    assert violations(folder) == []


def test_the_rules_see_imports(tmp_path):
    """The checker finds a forbidden import, also a relative one inside a function."""
    fake = tmp_path / "mc_beamline"
    (fake / "physics").mkdir(parents=True)
    (fake / "physics" / "model.py").write_text(
        "import numpy\n\ndef f():\n    from ..analysis.xcca import ccf\n    import bluesky.plans\n")
    assert violations("physics", fake) == ["mc_beamline/physics/model.py:4 imports mc_beamline.analysis.xcca",
                                           "mc_beamline/physics/model.py:5 imports bluesky.plans"]
