"""The repository stands alone: its text files point only inside it, and their pointers into docs/ resolve.

Scanned: every text file (``.py``, ``.md``, ``.yaml``/``.yml``, ``.toml``) that git tracks or
would track (new files it does not ignore); without git, every such file under the repository
outside build and cache folders.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml"}
SKIP_DIRS = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".venv", "data"}

# Notes that live outside the repository; spelled in pieces so this file does not match itself.
OUTSIDE_NOTES = ["algorithms" + ".md", "DESIGN" + ".md", "anchors" + ".md"]
OUTSIDE_PATHS = re.compile(r"\.\./(?:\.\./)*" + "shared" + r"\b|(?<![\w.])/" + "work/")
DOC_PATH = re.compile(r"\bdocs/[\w./-]+\.md\b")
DOC_SECTION = re.compile(r"\bdocs/([\w-]+\.md), ([^\n]{1,80})")


def text_files() -> list[Path]:
    if shutil.which("git") and (REPO / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        paths = [REPO / name for name in listed]
    else:
        paths = [p for p in REPO.rglob("*") if not SKIP_DIRS & set(p.relative_to(REPO).parts)]
    return sorted(p for p in paths if p.suffix in SUFFIXES and p.is_file())


def where(path: Path, text: str, index: int) -> str:
    return f"{path.relative_to(REPO)}:{text.count(chr(10), 0, index) + 1}"


def test_scan_sees_the_project() -> None:
    names = {p.relative_to(REPO).as_posix() for p in text_files()}
    assert {"README.md", "pyproject.toml", "interp/sites.py", "docs/design.md", "tests/test_repo.py"} <= names


def test_no_file_points_outside_the_repository() -> None:
    found = []
    for path in text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for note in OUTSIDE_NOTES:
            found += [f"{where(path, text, m.start())}: {note}" for m in re.finditer(re.escape(note), text)]
        found += [f"{where(path, text, m.start())}: {m.group()}" for m in OUTSIDE_PATHS.finditer(text)]
    assert not found, "references to files outside the repository:\n" + "\n".join(found)


def test_every_docs_path_mentioned_exists() -> None:
    missing = []
    for path in text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        missing += [f"{where(path, text, m.start())}: {m.group()}" for m in DOC_PATH.finditer(text)
                    if not (REPO / m.group()).is_file()]
    assert not missing, "docs/ paths that do not exist:\n" + "\n".join(missing)


def headings(doc: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in doc.read_text(encoding="utf-8").splitlines() if line.startswith("#")]


def test_section_pointers_name_real_headings() -> None:
    """``docs/methods.md, AtP*`` must name a heading of that file (text may wrap across lines)."""
    bad = []
    for path in text_files():
        if path.suffix not in (".py", ".md"):
            continue
        text = re.sub(r"\s*\n\s*(?:#\s*)?", " ", path.read_text(encoding="utf-8", errors="replace"))
        for m in DOC_SECTION.finditer(text):
            doc = REPO / "docs" / m.group(1)
            if not doc.is_file():
                continue  # reported by test_every_docs_path_mentioned_exists
            if not any(m.group(2).startswith(h) for h in headings(doc)):
                bad.append(f"{path.relative_to(REPO)}: docs/{m.group(1)}, {m.group(2)[:40]}...")
    assert not bad, "section pointers that name no heading of their docs file:\n" + "\n".join(bad)
