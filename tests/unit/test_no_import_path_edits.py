"""No program of the checkout edits Python's import path at run time (issue 16): each imports
what the venv has installed (`make setup`, or the wheels on a lab node), and a program that
must run outside Python's own entry points is a console script of its distribution."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Hidden directories are tools' caches, the venv and the lab's machines, except the CI's scripts.
HIDDEN_SOURCES = {".ci"}
GENERATED = {"__pycache__", "build", "dist"}
EDIT = re.compile(r"sys\.path\s*(\.\s*(insert|append|extend)\s*\(|\+=|=(?!=)|\[[^\]]*\]\s*=)|site\.addsitedir\(")


def _sources(directory: Path) -> list[Path]:
    found = []
    for path in sorted(directory.iterdir()):
        hidden = path.name.startswith(".") and path.name not in HIDDEN_SOURCES
        if hidden or path.name in GENERATED or path.name.endswith(".egg-info"):
            continue
        if path.is_dir() and not path.is_symlink():
            found += _sources(path)
        elif path.is_file():
            found.append(path)
    return found


def _edits(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if EDIT.search(line)]


def test_the_pattern_finds_each_kind_of_edit() -> None:
    edits = [
        "sys.path.insert(0, str(Path(__file__).parents[3]))",
        "sys.path.append('lab')",
        "sys.path.extend(paths)",
        "sys.path += ['lab']",
        "sys.path = ['lab', *sys.path]",
        "sys.path[:0] = ['lab']",
        "site.addsitedir('/opt/tandem/lib')",
    ]
    assert _edits("\n".join(edits)) == edits
    assert _edits("print(sys.path)\nif 'lab' in sys.path: pass\nok = sys.path == []") == []


def test_no_source_file_edits_the_import_path() -> None:
    edits = {}
    for path in _sources(REPO):
        if path == Path(__file__).resolve():  # its examples of edits
            continue
        data = path.read_bytes()
        if b"\0" in data:  # a binary file: nothing that Python runs
            continue
        found = _edits(data.decode(errors="replace"))
        if found:
            edits[str(path.relative_to(REPO))] = found
    assert edits == {}
