"""Detectors for degenerate LLM output: loops, unfilled template variables, filler, refusals, bad JSON.

The replaced system saved such texts as if they were summaries (docs/domain_rules.md §3.2, §10.3). Each detector
is a pure function returning `Finding`s with a stable `code` (metadata counts and asset checks key on it)
and a short human `detail` (shown in logs and in the corrective retry prompt). An empty list means clean.

Thresholds are tuned against the real fixtures: normal German/English postings repeat common words
("und", "the") and boilerplate ("Profitieren Sie von Angeboten" four times), and the grading summaries
repeat whole sentences twice; none of that may trigger.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeGuard

# Stable finding codes.
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
REPEATED_WORD = "repeated_word"
REPEATED_PHRASE = "repeated_phrase"
UNFILLED_TEMPLATE_VARIABLE = "unfilled_template_variable"
TEMPLATE_MARKER = "template_marker"
FILLER_PHRASE = "filler_phrase"
REFUSAL = "refusal"
INVALID_JSON = "invalid_json"
UNEXPECTED_JSON_TYPE = "unexpected_json_type"
SCORE_OUT_OF_RANGE = "score_out_of_range"
INVALID_SCORE = "invalid_score"
UNIFORM_SCORES = "uniform_scores"

REPETITION_CODES = frozenset({REPEATED_WORD, REPEATED_PHRASE})
TEMPLATE_CODES = frozenset({UNFILLED_TEMPLATE_VARIABLE, TEMPLATE_MARKER})

# The replaced system's QA limits (docs/domain_rules.md §3.1): <50 chars fails, >5000 chars fails QA.
DEFAULT_MIN_CHARS = 50
DEFAULT_MAX_CHARS = 5000


@dataclass(frozen=True)
class Finding:
    code: str
    detail: str


# ---------------------------------------------------------------------------------------------------------
# Length


def detect_length(text: str, *, min_chars: int | None, max_chars: int | None) -> list[Finding]:
    """Length of the stripped text; `None` disables a bound (e.g. for short fields such as a role)."""
    n = len(text.strip())
    if min_chars is not None and n < min_chars:
        return [Finding(TOO_SHORT, f"{n} characters, fewer than the minimum {min_chars}")]
    if max_chars is not None and n > max_chars:
        return [Finding(TOO_LONG, f"{n} characters, more than the maximum {max_chars}")]
    return []


# ---------------------------------------------------------------------------------------------------------
# Repetition

_WORD_RE = re.compile(r"\w+")
_HAS_LETTER_RE = re.compile(r"[^\W\d_]")

# A word repeated this many times in a row is a loop ("work work work work work"); real text has at most
# two ("sehr sehr", "07 07"). Phrases are rarer still, so four back-to-back copies already mean a loop.
MIN_WORD_RUN = 5
MIN_PHRASE_RUN = 4
# Longest phrase (in words) searched for back-to-back loops: long enough for a looping bullet line.
MAX_PHRASE_WORDS = 40
# Dispersed loops (a phrase recurring with variations in between): 4-grams that occur at least
# DISPERSED_MIN_COUNT times and together cover this share of all words. Real postings stay below 0.05.
DISPERSED_NGRAM = 4
DISPERSED_MIN_COUNT = 4
DISPERSED_MIN_COVERAGE = 0.30
# One word making up this share of a text (with at least DOMINANT_MIN_COUNT uses); real max is ~0.08.
DOMINANT_WORD_SHARE = 0.25
DOMINANT_MIN_COUNT = 10


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(unicodedata.normalize("NFKC", text).casefold())


def _longest_tandem_run(words: list[str], period: int) -> tuple[int, int]:
    """(copies, start) of the longest back-to-back repetition of a `period`-word unit.

    words[i] == words[i + period] over a stretch of L positions means L // period + 1 copies.
    """
    best_len, best_start, run = 0, 0, 0
    for i in range(len(words) - period):
        if words[i] == words[i + period]:
            run += 1
            if run > best_len:
                best_len, best_start = run, i - run + 1
        else:
            run = 0
    return best_len // period + 1, best_start


def _quote(words: list[str], limit: int = 60) -> str:
    phrase = " ".join(words)
    return phrase if len(phrase) <= limit else phrase[: limit - 1] + "…"


def _tandem_findings(words: list[str]) -> list[Finding]:
    # Smallest period first: "work work work" is reported as a word loop, not as a 2-word phrase loop.
    for period in range(1, min(MAX_PHRASE_WORDS, len(words) // 2) + 1):
        copies, start = _longest_tandem_run(words, period)
        unit = words[start : start + period]
        if not any(_HAS_LETTER_RE.search(w) for w in unit):
            continue  # digit runs ("0 0 0 0") are data such as phone numbers, not a language loop
        if period == 1 and copies >= MIN_WORD_RUN:
            return [Finding(REPEATED_WORD, f"'{unit[0]}' repeated {copies} times in a row")]
        if period > 1 and copies >= MIN_PHRASE_RUN:
            return [Finding(REPEATED_PHRASE, f"phrase '{_quote(unit)}' repeated {copies} times in a row")]
    return []


def _dispersed_phrase_finding(words: list[str]) -> list[Finding]:
    n = DISPERSED_NGRAM
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered: set[int] = set()
    for i, gram in enumerate(grams):
        if counts[gram] >= DISPERSED_MIN_COUNT:
            covered.update(range(i, i + n))
    if not words or len(covered) / len(words) < DISPERSED_MIN_COVERAGE:
        return []
    top, count = counts.most_common(1)[0]
    share = len(covered) / len(words)
    return [Finding(REPEATED_PHRASE, f"looping text: {share:.0%} of the words belong to phrases repeated "
                                     f"{DISPERSED_MIN_COUNT}+ times, e.g. '{_quote(list(top))}' x{count}")]


def _dominant_word_finding(words: list[str]) -> list[Finding]:
    counts = Counter(w for w in words if _HAS_LETTER_RE.search(w))
    if not counts:
        return []
    word, count = counts.most_common(1)[0]
    if count >= DOMINANT_MIN_COUNT and count / len(words) >= DOMINANT_WORD_SHARE:
        return [Finding(REPEATED_WORD, f"'{word}' makes up {count / len(words):.0%} of the words ({count}x)")]
    return []


def detect_repetition(text: str) -> list[Finding]:
    """At most one finding: back-to-back loops first, then dispersed phrase loops, then a dominant word."""
    words = _words(text)
    return _tandem_findings(words) or _dispersed_phrase_finding(words) or _dominant_word_finding(words)


# ---------------------------------------------------------------------------------------------------------
# Unfilled template variables and prompt-template markers

_TEMPLATE_VARIABLE_PATTERNS = (
    re.compile(r"\{\{\s*[\w.\-]+\s*\}\}"),  # {{variable}}
    re.compile(r"\$\{\s*[\w.\-]+\s*\}"),  # ${x}
    # {session_9_output}: lowercase identifiers only, so requisition ids such as "{SR9207358}" in real
    # Deutsche Bank titles are not mistaken for variables.
    re.compile(r"(?<![{$])\{[a-z_][a-z0-9_.]*\}(?!\})"),
    re.compile(r"\[(?:insert|enter|your)\s[^\]\n]{1,40}\]", re.IGNORECASE),  # [Insert company name]
)
# ===OUTPUT TEMPLATE=== and friends: prompt scaffolding echoed into the answer.
_TEMPLATE_MARKER_RE = re.compile(r"={3,}[ \t]*[A-Z][A-Z0-9 _\-]{1,40}?[ \t]*={3,}", re.IGNORECASE)


def detect_unfilled_template_variables(text: str) -> list[Finding]:
    found: list[str] = []
    for pattern in _TEMPLATE_VARIABLE_PATTERNS:
        found.extend(m.group(0) for m in pattern.finditer(text))
    if not found:
        return []
    distinct = list(dict.fromkeys(found))
    return [Finding(UNFILLED_TEMPLATE_VARIABLE, "unfilled template variable(s): " + ", ".join(distinct[:5]))]


def detect_template_markers(text: str) -> list[Finding]:
    markers = list(dict.fromkeys(m.group(0) for m in _TEMPLATE_MARKER_RE.finditer(text)))
    if not markers:
        return []
    return [Finding(TEMPLATE_MARKER, "prompt template marker(s) in the output: " + ", ".join(markers[:5]))]


def detect_template_artifacts(text: str) -> list[Finding]:
    return detect_unfilled_template_variables(text) + detect_template_markers(text)


# ---------------------------------------------------------------------------------------------------------
# Filler: the model admits a value is missing instead of leaving it out

_FILLER_PHRASE_RE = re.compile(
    r"|".join(
        (
            # English (the replaced system's "bad data" phrases, docs/domain_rules.md §3.1, and close variants)
            r"\bnot (?:specified|mentioned|stated|provided|given|listed|included|indicated)"
            r" in the (?:text|posting|job posting|job description|description|ad|advert(?:isement)?)\b",
            r"\binformation (?:is )?not available\b",
            r"\bcannot be determined from\b",
            r"\bno (?:specific )?information (?:is |was )?(?:provided|available|given)\b",
            # German
            r"\bnicht angegeben\b",
            r"\bkeine angaben?\b",
            r"\bnicht (?:im|in der) (?:text|stellenanzeige|stellenbeschreibung|anzeige)"
            r" (?:angegeben|erwähnt|genannt|spezifiziert|enthalten)\b",
            r"\bim text nicht (?:angegeben|erwähnt|genannt|spezifiziert|enthalten)\b",
            r"\bnicht spezifiziert\b",
            r"\binformationen? (?:ist |sind )?nicht verfügbar\b",
            r"\bkann nicht (?:aus dem text )?(?:ermittelt|bestimmt) werden\b",
        )
    ),
    re.IGNORECASE,
)

# Whole values that only say "missing". Short and common words, so they count only as an entire value
# (a field, or the value after a `**Header:**`), never inside a sentence. Bare "NA" is left out: it may
# mean North America.
_FILLER_VALUES = frozenset(
    {
        "not specified", "not available", "not provided", "not mentioned", "not stated", "not given",
        "not applicable", "not disclosed", "unknown", "unspecified", "none", "n/a", "n.a.", "tbd",
        "-", "--", "—", "–", "nicht angegeben", "keine angabe", "keine angaben", "nicht bekannt",
        "unbekannt", "nicht verfügbar", "nicht vorhanden", "k.a.", "k. a.", "entfällt",
    }
)
_HEADER_VALUE_RE = re.compile(r"^[ \t]*(?:\*\*)?([^:*\n]{1,40}):(?:\*\*)?[ \t]*(\S[^\n]*?)[ \t]*$", re.MULTILINE)


def is_filler_value(value: str) -> bool:
    """True for a value that only says it is missing ("Not available", "N/A", "keine Angabe")."""
    normalised = " ".join(value.replace("*", " ").split()).casefold().rstrip(".!")
    if normalised in _FILLER_VALUES or f"{normalised}." in _FILLER_VALUES:
        return True
    return bool(_FILLER_PHRASE_RE.fullmatch(normalised))


def detect_filler(text: str) -> list[Finding]:
    phrases = [m.group(0) for m in _FILLER_PHRASE_RE.finditer(text)]
    # `**Job ID:** Not available`: quote the whole line unless its value was already quoted as a phrase.
    values = [
        f"{m.group(1).strip()}: {m.group(2)}"
        for m in _HEADER_VALUE_RE.finditer(text)
        if is_filler_value(m.group(2)) and not _FILLER_PHRASE_RE.search(m.group(2))
    ]
    if not phrases and not values and is_filler_value(text):
        values.append(text.strip())
    found = list(dict.fromkeys(phrases + values))
    if not found:
        return []
    return [Finding(FILLER_PHRASE, "filler instead of content: " + "; ".join(f"'{f}'" for f in found[:5]))]


# ---------------------------------------------------------------------------------------------------------
# Refusals and requests for the posting

# Nouns for "the posting". Bare "description"/"Anzeige" are left out: postings themselves say "please
# include a description of your project" or "nennen Sie uns die Kennziffer der Anzeige".
_POSTING_NOUNS_EN = (
    r"(?:job (?:posting|description|ad|advert(?:isement)?|listing|offer|text)|posting(?: text)?|text)"
)
_ARTICLES_EN = r"(?:(?:the|a|an|your|full|complete|actual|entire) ){0,2}"
_POSTING_NOUNS_DE = r"(?:stellenanzeige|stellenbeschreibung|stellenausschreibung|jobbeschreibung|anzeigentext|text)"
_ARTICLES_DE = (
    r"(?:(?:den|die|das|eine|einen|ein|vollständigen?|vollständige|kompletten?|komplette|gesamten?|gesamte) ){0,2}"
)
_TASK_VERBS_EN = (
    r"(?:provide|create|generate|write|summari[sz]e|extract|help|assist|complete|fulfil+|process|access"
    r"|see|find|read|comply|answer|determine|identify|do that|do this)"
)
_I_CANNOT = r"I(?: cannot| can't| can ?not| am unable to|'m unable to| am not able to|'m not able to)"
_REFUSAL_RE = re.compile(
    r"|".join(
        (
            rf"\bplease (?:provide|share|paste|send|give|supply|include|enter) (?:me |us )?(?:with )?"
            rf"{_ARTICLES_EN}{_POSTING_NOUNS_EN}\b",
            rf"\bI (?:need|require|did not receive|didn't receive|do not have|don't have) {_ARTICLES_EN}"
            rf"{_POSTING_NOUNS_EN}\b",
            rf"\bno {_POSTING_NOUNS_EN} (?:was |has been |were )?(?:provided|given|included|attached)\b",
            rf"\byou (?:have not|haven't|did not|didn't) (?:provided?|included?|shared?|attach(?:ed)?|given?)"
            rf" (?:me |us )?(?:any |a |the )?{_POSTING_NOUNS_EN}\b",
            rf"\b{_I_CANNOT} (?:\w+ ){{0,3}}?{_TASK_VERBS_EN}\b",
            rf"\A\s*{_I_CANNOT}\b",  # only as the opening words: "I cannot" inside a quote is not a refusal
            r"\bas an? (?:AI|artificial intelligence)(?:\s+(?:language\s+)?(?:model|assistant)\b|\s*[,.;])",
            r"^\s*(?:I'm sorry|I am sorry|I apologi[sz]e|Sorry),?\s+(?:but\s+)?I\b",
            # German
            rf"\bbitte (?:geben|stellen|senden|schicken|teilen|fügen|nennen) sie (?:mir |uns )?{_ARTICLES_DE}"
            rf"{_POSTING_NOUNS_DE}\b",
            rf"\bich (?:benötige|brauche) {_ARTICLES_DE}{_POSTING_NOUNS_DE}\b",
            r"\bals (?:KI|künstliche intelligenz)(?:-?\s*sprachmodell|-?\s*modell|-?\s*assistent)?"
            r"\s*(?:[,.;]|kann\b|bin\b|habe\b)",
            r"\bich kann (?:\w+ ){0,4}?(?:nicht|keine) (?:\w+ ){0,2}?"
            r"(?:erstellen|zusammenfassen|helfen|bearbeiten|verarbeiten|extrahieren|finden|lesen)\b",
            r"^\s*(?:es tut mir leid|entschuldigung|leider kann ich)\b",
            rf"\bkeine {_POSTING_NOUNS_DE} (?:wurde |wurden )?(?:erhalten|bereitgestellt|angegeben|übermittelt)\b",
        )
    ),
    re.IGNORECASE | re.MULTILINE,
)


def detect_refusal(text: str) -> list[Finding]:
    match = _REFUSAL_RE.search(text)
    if match is None:
        return []
    return [Finding(REFUSAL, f"the model refused or asked for the posting: '{match.group(0).strip()}'")]


# ---------------------------------------------------------------------------------------------------------
# All text detectors


def detect_degenerate(
    text: str, *, min_chars: int | None = DEFAULT_MIN_CHARS, max_chars: int | None = DEFAULT_MAX_CHARS
) -> list[Finding]:
    """Every text detector, in a fixed order, so findings are stable across runs."""
    return (
        detect_length(text, min_chars=min_chars, max_chars=max_chars)
        + detect_repetition(text)
        + detect_template_artifacts(text)
        + detect_filler(text)
        + detect_refusal(text)
    )


# ---------------------------------------------------------------------------------------------------------
# Across postings


def normalize_output(text: str) -> str:
    """Casefolded words only: outputs that differ in spacing, punctuation or markdown count as equal."""
    return " ".join(_words(text))


def find_duplicate_outputs(outputs: Mapping[int, str]) -> list[list[int]]:
    """Groups of posting ids with the same normalised output (a model answering from memory, not input).

    Empty outputs are left to the length check: grouping them would only repeat that finding.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for posting_id, text in outputs.items():
        key = normalize_output(text)
        if key:
            groups[key].append(posting_id)
    duplicates = [sorted(ids) for ids in groups.values() if len(ids) > 1]
    return sorted(duplicates)


# ---------------------------------------------------------------------------------------------------------
# JSON answers and scores


def detect_invalid_json(text: str, *, expect: Literal["object", "array", "any"] = "any") -> list[Finding]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        return [Finding(INVALID_JSON, f"not valid JSON: {exc}")]
    wanted = {"object": dict, "array": list}.get(expect)
    if wanted is not None and not isinstance(value, wanted):
        return [Finding(UNEXPECTED_JSON_TYPE, f"expected a JSON {expect}, got {type(value).__name__}")]
    return []


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def detect_scores_out_of_range(scores: Mapping[int, object], *, low: float, high: float) -> list[Finding]:
    """One finding per posting whose score is not a finite number within [low, high]."""
    findings: list[Finding] = []
    for posting_id, score in scores.items():
        if not _is_number(score):
            findings.append(Finding(INVALID_SCORE, f"posting {posting_id}: score {score!r} is not a number"))
        elif not low <= score <= high:
            findings.append(
                Finding(SCORE_OUT_OF_RANGE, f"posting {posting_id}: score {score} outside {low}..{high}")
            )
    return findings


def uniform_scores(scores: Mapping[int, float] | Iterable[float], *, min_count: int = 20) -> list[Finding]:
    """A model that gives every posting of a large partition the same score is not scoring at all.

    Small partitions may legitimately agree, hence `min_count`. `None` (not scored) is ignored.
    """
    values = list(scores.values() if isinstance(scores, Mapping) else scores)
    values = [v for v in values if v is not None]
    if len(values) < min_count or len(set(values)) != 1:
        return []
    return [Finding(UNIFORM_SCORES, f"all {len(values)} postings got the same score {values[0]}")]
