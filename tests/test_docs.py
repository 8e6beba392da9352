"""The Python shown in the README and docs/: every block compiles and its imports exist; whole programs run.

Blocks are fragments as often as programs (``await`` at top level, names
defined elsewhere), so each is compiled with top-level await allowed and
every ``from module import name`` in it is checked against the code. The
blocks that are whole programs run in a subprocess, against the simulator
where they need a provider.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.adapters.conftest import checked_sync_simulator

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            line = text[: match.start()].count("\n") + 2
            found.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return found


BLOCKS = blocks()


def test_the_docs_have_python_blocks() -> None:
    assert len(BLOCKS) >= 5 and any(where.startswith("README.md") for where, _ in BLOCKS)


@pytest.mark.parametrize("where, code", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_each_block_compiles_and_its_imports_exist(where: str, code: str) -> None:
    tree = compile(code, where, "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)


def program(page: str, start: str) -> str:
    """The block of ``page`` that begins with ``start`` (a whole program)."""
    (code,) = [code for where, code in BLOCKS if where.startswith(page) and code.startswith(start)]
    assert "anyio.run(main)" in code
    return code


def run(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "snippet.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )


def test_the_readme_program_runs_and_drops_the_stale_progress(tmp_path: Path) -> None:
    proc = run(program("README.md", "import anyio\nfrom eventbus import Bus"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("JobProgress(")]
    assert len(printed) == 1 and "done=10" in printed[0]  # the stale done=5 was merged away


def test_the_submitting_program_runs_against_the_simulator(tmp_path: Path) -> None:
    with checked_sync_simulator() as sim:
        env = {"PRONTO_API_KEY": "demo-key", "PRONTO_BASE_URL": sim.urls["pronto"]}
        proc = run(program("docs/submitting.md", "import anyio"), tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The "..." in the contacts list stands for more contacts: it is reported invalid, the contact before it goes.
    assert "ItemFailed(" in proc.stdout and "a contact must be a mapping of fields, not ellipsis" in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("[AcceptedJob(provider='pronto'")
