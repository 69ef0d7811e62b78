"""Versioned prompt files and their loader.

Each `<name>.md` starts with `version: <name>/<n>` and has a `## system` and a `## user` section. A
prompt's version is part of every LLM result's input hash, so editing a prompt without bumping its
version would keep stale results: bump the number whenever the wording changes.

Rendering fills the *template* with `str.format`; posting text only ever arrives as a value, so braces
in a posting can never be taken for a template field (the replaced system saved literal
`{session_9_output}` strings, docs/domain_rules.md §3.2). Literal braces in a template are written `{{ }}`.

Values are fenced by tags on lines of their own (`<posting>` ... `</posting>`). A value must not be
able to close or open a fence: every fence tag of any prompt found in a value, written plainly or
HTML-escaped (`&lt;/posting&gt;`, `&amp;lt;...`, numeric references), is rewritten to `‹/posting›`,
which a model reads as text. Nothing else in the value changes.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from pathlib import Path

PROMPT_DIR = Path(__file__).resolve().parent
_SECTIONS = ("system", "user")
_FENCE_LINE = re.compile(r"^\s*</?([A-Za-z_][\w-]*)>\s*$", re.MULTILINE)
# "<", "/" and ">" as written in a value: plainly, or HTML-escaped any number of times, named or numeric.
_LT = r"(?:<|&(?:amp;)*(?:lt|\#0*60|\#x0*3c);?)"
_SLASH = r"(?:/|&(?:amp;)*(?:sol|\#0*47|\#x0*2f);?)"
_GT = r"(?:>|&(?:amp;)*(?:gt|\#0*62|\#x0*3e);?)"


@functools.cache
def _fence_pattern(names: frozenset[str]) -> re.Pattern[str] | None:
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"{_LT}\s*({_SLASH}?)\s*({alternatives})\s*{_GT}", re.IGNORECASE)


def neutralise_fences(value: str, names: frozenset[str]) -> str:
    """`value` with every fence tag in `names` (plain or HTML-escaped) turned into inert `‹name›` text."""
    pattern = _fence_pattern(names)
    if pattern is None or not value:
        return value
    return pattern.sub(lambda m: f"‹{'/' if m.group(1) else ''}{m.group(2)}›", value)


class PromptError(ValueError):
    """A prompt file is malformed, or rendering it lacks a value."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str  # "<name>/<n>"
    system: str
    user: str

    @property
    def number(self) -> str:
        return self.version.rsplit("/", 1)[1]

    @property
    def fields(self) -> frozenset[str]:
        """Template fields the prompts use; `render` needs a value for each."""
        names: set[str] = set()
        for template in (self.system, self.user):
            names.update(field for _text, field, _spec, _conv in string.Formatter().parse(template) if field)
        return frozenset(names)

    @property
    def fences(self) -> frozenset[str]:
        """Tag names that fence values in this prompt (`<posting>` on a line of its own)."""
        return frozenset(_FENCE_LINE.findall(self.system) + _FENCE_LINE.findall(self.user))

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages: the system and user templates filled with `values` (which are never re-parsed).

        A value cannot close its fence or open another: see the module docstring.
        """
        missing = sorted(self.fields - values.keys())
        if missing:
            raise PromptError(f"prompt {self.version} needs values for {', '.join(missing)}")
        fences = self.fences | all_fences()
        values = {k: neutralise_fences(v, fences) if isinstance(v, str) else v for k, v in values.items()}
        return [
            {"role": "system", "content": self.system.format(**values)},
            {"role": "user", "content": self.user.format(**values)},
        ]


def parse_prompt(name: str, text: str) -> Prompt:
    lines = text.splitlines()
    if not lines or not lines[0].startswith("version:"):
        raise PromptError(f"prompt {name}: the first line must be 'version: {name}/<n>'")
    version = lines[0].split(":", 1)[1].strip()
    prefix, _, number = version.rpartition("/")
    if prefix != name or not number.isdigit():
        raise PromptError(f"prompt {name}: version {version!r} must look like '{name}/<n>'")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[1:]:
        header = line.strip()
        if header.startswith("## ") and header[3:].strip().lower() in _SECTIONS:
            key = header[3:].strip().lower()
            if key in sections:
                raise PromptError(f"prompt {name}: section '{key}' appears twice")
            current = sections[key] = []
        elif current is not None:
            current.append(line)
        elif header:
            raise PromptError(f"prompt {name}: text before the first section: {header[:40]!r}")
    missing = [s for s in _SECTIONS if not "\n".join(sections.get(s, [])).strip()]
    if missing:
        raise PromptError(f"prompt {name}: missing or empty section(s) {', '.join(missing)}")
    prompt = Prompt(name, version, "\n".join(sections["system"]).strip(), "\n".join(sections["user"]).strip())
    try:
        _ = prompt.fields  # unbalanced braces fail here, at load time, not at the first posting
    except ValueError as exc:
        raise PromptError(f"prompt {name}: {exc}") from exc
    return prompt


@functools.cache
def load_prompt(name: str) -> Prompt:
    path = PROMPT_DIR / f"{name}.md"
    if not path.is_file():
        raise PromptError(f"no prompt file {path}")
    return parse_prompt(name, path.read_text(encoding="utf-8"))


def combined_version(family: str, prompts: list[Prompt]) -> str:
    """Short form for the `prompt_version` column (VARCHAR 32): `summary/1.1.1` in the order given."""
    return f"{family}/" + ".".join(p.number for p in prompts)


@functools.cache
def all_fences() -> frozenset[str]:
    """The fence tags of every prompt file: a posting must not forge another prompt's fence either
    (its text is shown to several prompts, and a grader reads what an extractor wrote)."""
    names: set[str] = set()
    for path in sorted(PROMPT_DIR.glob("*.md")):
        names.update(_FENCE_LINE.findall(path.read_text(encoding="utf-8")))
    return frozenset(names)
