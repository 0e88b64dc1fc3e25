"""Layering: shared blocks import no family and no Lightning; family models import no trainer stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

VAU = Path(__file__).resolve().parents[2] / "vau"
TRAINER_STACK = ("lightning", "pytorch_lightning", "deepspeed", "webdataset")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _bad(names: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == b or n.startswith(b + ".") for b in banned))


@pytest.mark.parametrize("path", sorted((VAU / "models").rglob("*.py")), ids=lambda p: str(p.relative_to(VAU)))
def test_shared_blocks_import_no_family_and_no_trainer_stack(path):
    assert _bad(_imports(path), (*TRAINER_STACK, "vau.families", "vau.lit", "vau.data", "vau.config")) == []


@pytest.mark.parametrize("path", sorted((VAU / "families").glob("*/model.py")), ids=lambda p: p.parent.name)
def test_family_models_are_pure_pytorch(path):
    assert _bad(_imports(path), (*TRAINER_STACK, "vau.lit", "vau.data")) == []


def test_importing_the_shared_blocks_loads_no_lightning_and_no_family():
    code = ("import sys\n"
            "import vau.models.settings, vau.models.llm, vau.models.vision, vau.models.trainable\n"
            "import vau.models.blocks, vau.models.ops, vau.families.task\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r or m.startswith('vau.families.') "
            "and m != 'vau.families.task' or m.startswith('vau.lit')))\n" % (TRAINER_STACK,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
