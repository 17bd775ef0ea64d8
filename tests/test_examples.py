"""The README's first block runs as written (the example recording it names ships in the repository),
and every page it links exists."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import soundfile as sf

from hushnet.cli import main

ROOT = Path(__file__).resolve().parents[1]


def first_block_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


def test_readme_first_block_denoises_the_shipped_example(tmp_path, monkeypatch, capsys):
    denoise = [c for c in first_block_commands() if c[:2] == ["hushnet", "denoise"]]
    assert len(denoise) == 1, "the README's first block should denoise one shipped example"
    example = ROOT / denoise[0][2]
    assert example.is_file(), f"{example} is not in the repository"
    credit = (example.parent / "README.md").read_text()
    assert "CC BY 4.0" in credit and example.name in credit
    assert sf.info(str(example)).duration < 10  # short: the repository stays small
    # Run the line as written, from a copy of the repository's layout (the result lands beside the input).
    (tmp_path / example.parent.name).mkdir()
    shutil.copy(example, tmp_path / example.parent.name / example.name)
    monkeypatch.chdir(tmp_path)
    assert main([*denoise[0][1:], "-q"]) == 0, capsys.readouterr().err
    written = tmp_path / example.parent.name / f"{example.stem}_denoised{example.suffix}"
    assert sf.info(str(written)).frames == sf.info(str(example)).frames


MAX_README_LINES = 200


def test_readme_is_short_and_every_page_it_links_exists():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    targets = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)]+)\)", text) if "://" not in t]
    assert len(targets) > 10  # the links were read
    missing = [t for t in targets if t and not (ROOT / t).exists()]
    assert not missing, missing


def test_every_page_the_docs_link_exists():
    pages = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "CHANGELOG.md"]
    assert len(pages) > 5
    missing = [
        f"{page.name}: {target}"
        for page in pages
        for target in re.findall(r"\]\(([^)#]+)[^)]*\)", page.read_text())
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert not missing, missing
