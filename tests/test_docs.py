"""Every `composer ...` command written in README.md and docs/ names a real command and real
options, and README stays a short front page that links every docs page."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from composer.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^\s*(?:\$ |[^`]*&& )?composer(?: (?P<cmd>[a-z][a-z-]*))?(?P<rest>.*)$")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")


def command_lines(page: Path) -> list[tuple[int, str]]:
    """(line number, text) of every command line in the page's code: fenced blocks and
    four-space indented blocks."""
    found, fenced = [], False
    for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if (fenced or line.startswith("    ")) and COMMAND.match(line):
            found.append((n, line))
    return found


def options_of(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for p in command.params:
        names.update(p.opts)
        names.update(getattr(p, "secondary_opts", []))
    return names


ALL = [(page, n, line) for page in PAGES for n, line in command_lines(page)]


def test_pages_hold_commands():
    assert len(ALL) > 20
    assert {page.name for page, _, _ in ALL} >= {"README.md", "generation.md", "training.md"}


@pytest.mark.parametrize(("page", "n", "line"), ALL,
                         ids=[f"{p.name}:{n}" for p, n, _ in ALL])
def test_each_command_names_a_real_command_and_real_options(page, n, line):
    m = COMMAND.match(line)
    cmd = m.group("cmd")
    rest = m.group("rest").split(" # ")[0].split("  #")[0]
    if cmd is None:  # `composer --help`, `composer --version`
        command = main
    else:
        assert cmd in main.commands, f"{page.name}:{n}: no command `composer {cmd}`"
        command = main.commands[cmd]
    unknown = sorted(set(OPTION.findall(rest)) - options_of(command) - {"--version"})
    assert not unknown, f"{page.name}:{n}: `composer {cmd}` has no {', '.join(unknown)}"
    if "[" not in rest and "|" not in rest and "..." not in rest:  # a concrete line: it parses
        args = shlex.split(rest)
        ctx = command.make_context(f"composer {cmd}", args, resilient_parsing=True)
        assert ctx is not None


def test_readme_is_a_short_front_page_linking_every_doc():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in text, f"README does not link docs/{page.name}"
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), f"README links a missing {link}"


def test_docs_links_and_pictures_resolve():
    for page in PAGES:
        for link in re.findall(r"\]\(([^)#\s]+)\)", page.read_text(encoding="utf-8")):
            if not link.startswith(("http://", "https://")):
                assert (page.parent / link).exists(), f"{page.name} links a missing {link}"
