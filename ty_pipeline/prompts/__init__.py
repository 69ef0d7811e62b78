"""Versioned prompt files and their loader.

Each `<name>.md` starts with `version: <name>/<n>`. A prompt's version is part of every LLM result's input
hash, so editing a prompt without bumping its version would keep stale results: bump the number whenever
the wording changes.

Layout (prefix caching, issue #11 item 4). Every call about a posting starts with the same first message:
`posting_context.md`, a short neutral preamble and the fenced posting, byte-identical for every prompt
that sees that posting. The role's instructions and the call's other values (the summary to grade, the
analyst's output, the summary language) follow in the user message. Servers that keep the KV cache of a
shared prompt prefix (vLLM automatic prefix caching, SGLang RadixAttention, llama.cpp `cache_prompt`,
Ollama's slot reuse) then read a posting once for all its calls instead of once per call. So a prompt file
has one of two layouts:

* `## instructions` and `## user`: a prompt about a posting. Rendered as two messages: the posting
  context (system), then the instructions and the user text (user). Its templates never name `{posting}`
  themselves: the posting is shown once, in the context, and nowhere a prompt could vary it.
* `## system` and `## user`: a prompt that does not take a posting (the BERUFENET title prompts), rendered
  as its own system and user message.

Rendering fills the *template* with `str.format`; posting text only ever arrives as a value, so braces
in a posting can never be taken for a template field (the replaced system saved literal
`{session_9_output}` strings, docs/domain_rules.md §3.2). Literal braces in a template are written `{{ }}`.

Values are fenced by tags on lines of their own (`<posting>` ... `</posting>`). A value must not be
able to close or open a fence: every fence tag of any prompt found in a value, written plainly or
HTML-escaped (`&lt;/posting&gt;`, `&amp;lt;...`, numeric references), is rewritten to `‹/posting›`,
which a model reads as text. Nothing else in the value changes. The posting is neutralised against the
fences of every prompt file, whichever prompt renders it, so it reads the same in each of its calls.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROMPT_DIR = Path(__file__).resolve().parent
POSTING_CONTEXT = "posting_context"
POSTING_FIELD = "posting"
_SECTIONS = ("system", "instructions", "user")
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


def _template_fields(templates: Iterable[str]) -> frozenset[str]:
    names: set[str] = set()
    for template in templates:
        names.update(field for _text, field, _spec, _conv in string.Formatter().parse(template) if field)
    return frozenset(names)


def _template_fences(templates: Iterable[str]) -> frozenset[str]:
    return frozenset(name for template in templates for name in _FENCE_LINE.findall(template))


@dataclass(frozen=True)
class PostingContext:
    """The first message of every call about a posting (`posting_context.md`): the same bytes for the same
    posting, whichever prompt follows it."""

    version: str  # "posting_context/<n>"
    system: str

    @property
    def number(self) -> str:
        return self.version.rsplit("/", 1)[1]

    def message(self, posting: str) -> dict[str, str]:
        # Neutralised against every prompt's fences, never a per-prompt set: a posting containing
        # `<summary>` must read the same before the grader as before the extractor.
        return {"role": "system", "content": self.system.format(posting=neutralise_fences(posting, all_fences()))}


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str  # "<name>/<n>"
    system: str  # the system message of a prompt without a posting; "" for a prompt about a posting
    user: str
    instructions: str = ""  # a prompt about a posting: its role instructions, opening the user message

    @property
    def number(self) -> str:
        return self.version.rsplit("/", 1)[1]

    @property
    def takes_posting(self) -> bool:
        """True when the posting context comes first (the `## instructions` layout)."""
        return bool(self.instructions)

    @property
    def templates(self) -> tuple[str, ...]:
        return (self.instructions, self.user) if self.takes_posting else (self.system, self.user)

    @property
    def fields(self) -> frozenset[str]:
        """Values `render` needs: the templates' fields, and `posting` for a prompt about a posting."""
        return _template_fields(self.templates) | ({POSTING_FIELD} if self.takes_posting else frozenset())

    @property
    def fences(self) -> frozenset[str]:
        """Tag names that fence values in this prompt (`<summary>` on a line of its own)."""
        return _template_fences(self.templates)

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages: for a prompt about a posting, the posting context and then one user message with
        the instructions and the user text; otherwise the system and the user text. Values are never
        re-parsed, and a value cannot close its fence or open another: see the module docstring."""
        missing = sorted(self.fields - values.keys())
        if missing:
            raise PromptError(f"prompt {self.version} needs values for {', '.join(missing)}")
        fences = self.fences | all_fences()
        filled = {k: neutralise_fences(v, fences) if isinstance(v, str) else v for k, v in values.items()}
        if not self.takes_posting:
            return [
                {"role": "system", "content": self.system.format(**filled)},
                {"role": "user", "content": self.user.format(**filled)},
            ]
        task = self.instructions.format(**filled) + "\n\n" + self.user.format(**filled)
        return [load_posting_context().message(values[POSTING_FIELD]), {"role": "user", "content": task}]


def _sections(name: str, text: str) -> tuple[str, dict[str, str]]:
    """The version line checked, and the non-empty `## <section>` bodies of a prompt file."""
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
    bodies = {key: "\n".join(body).strip() for key, body in sections.items()}
    empty = [key for key, body in bodies.items() if not body]
    if empty:
        raise PromptError(f"prompt {name}: empty section(s) {', '.join(empty)}")
    return version, bodies


def _checked_fields(name: str, templates: Iterable[str]) -> frozenset[str]:
    try:
        return _template_fields(templates)  # unbalanced braces fail here, at load time, not at the first posting
    except ValueError as exc:
        raise PromptError(f"prompt {name}: {exc}") from exc


def parse_prompt(name: str, text: str) -> Prompt:
    version, bodies = _sections(name, text)
    layout = set(bodies)
    if layout == {"instructions", "user"}:
        prompt = Prompt(name, version, "", bodies["user"], bodies["instructions"])
    elif layout == {"system", "user"}:
        prompt = Prompt(name, version, bodies["system"], bodies["user"])
    else:
        raise PromptError(
            f"prompt {name}: has section(s) {', '.join(sorted(layout)) or 'none'}; a prompt about a posting "
            "needs '## instructions' and '## user', any other prompt '## system' and '## user'"
        )
    if POSTING_FIELD in _checked_fields(name, prompt.templates):
        raise PromptError(
            f"prompt {name}: '{{{POSTING_FIELD}}}' belongs in {POSTING_CONTEXT}.md only (the posting comes first "
            "and the same in every call, so servers can reuse its cache); write '## instructions' and refer to "
            "'the posting above'"
        )
    return prompt


def parse_posting_context(text: str) -> PostingContext:
    version, bodies = _sections(POSTING_CONTEXT, text)
    if set(bodies) != {"system"}:
        raise PromptError(f"prompt {POSTING_CONTEXT}: needs exactly one section, '## system'")
    fields = _checked_fields(POSTING_CONTEXT, [bodies["system"]])
    if fields != {POSTING_FIELD} or POSTING_FIELD not in _template_fences([bodies["system"]]):
        raise PromptError(
            f"prompt {POSTING_CONTEXT}: must show '{{{POSTING_FIELD}}}' fenced by <{POSTING_FIELD}> lines and "
            f"take no other value (found {', '.join(sorted(fields)) or 'none'}): it is the same for every call"
        )
    return PostingContext(version, bodies["system"])


@functools.cache
def load_posting_context() -> PostingContext:
    path = PROMPT_DIR / f"{POSTING_CONTEXT}.md"
    if not path.is_file():
        raise PromptError(f"no prompt file {path}")
    return parse_posting_context(path.read_text(encoding="utf-8"))


@functools.cache
def load_prompt(name: str) -> Prompt:
    if name == POSTING_CONTEXT:
        raise PromptError(f"{POSTING_CONTEXT} is not a prompt of its own: use load_posting_context()")
    path = PROMPT_DIR / f"{name}.md"
    if not path.is_file():
        raise PromptError(f"no prompt file {path}")
    return parse_prompt(name, path.read_text(encoding="utf-8"))


def prompt_versions(prompts: list[Prompt]) -> list[str]:
    """Every version the prompts' messages depend on (part of the input hash): the posting context's first
    when any of them takes a posting, then each prompt's in the order given."""
    context = [load_posting_context().version] if any(p.takes_posting for p in prompts) else []
    return context + [p.version for p in prompts]


def combined_version(family: str, prompts: list[Prompt]) -> str:
    """Short form for the `prompt_version` column (VARCHAR 32): `summary/2.2.2+p1` = the prompts' numbers in
    the order given, `+p<n>` the posting context they follow (when any takes a posting)."""
    suffix = f"+p{load_posting_context().number}" if any(p.takes_posting for p in prompts) else ""
    return f"{family}/" + ".".join(p.number for p in prompts) + suffix


@functools.cache
def all_fences() -> frozenset[str]:
    """The fence tags of every prompt file: a posting must not forge another prompt's fence either
    (its text is shown to several prompts, and a grader reads what an extractor wrote)."""
    names: set[str] = set()
    for path in sorted(PROMPT_DIR.glob("*.md")):
        names.update(_FENCE_LINE.findall(path.read_text(encoding="utf-8")))
    return frozenset(names)
