"""Aliases of catalog names and the resolution of a title against them (docs/domain_rules.md §6.1, §6.3).

Catalog names are written in the BA's compact gendered style ("Koch/Köchin", "Softwareentwickler/in",
"Pflegefachmann/-frau", "Kaufmännische/r Angestellte/r", "Tierwirt/in - Rinderhaltung",
"Ackergehilf(e/in)"), while postings say "Koch", "Softwareentwicklerin" or "Tierwirt Rinderhaltung".
`aliases_for` spells every name out into its masculine and feminine readings, with and without the
specialisation after " - " and without parenthesised qualifiers, all as `title_key`s, so Phase 1 of the
mapping is an exact dictionary lookup. Full-name readings take precedence over shortened forms.

One alias often belongs to several professions ("Koch" is a named profession in more than one
occupation). `resolve_candidates` applies the upstream three-tier rule: one profession -> `owl`;
several in one 2-digit domain with one qualification level -> `owl_unanimous`; one domain, mixed
levels -> the most common level, `owl_majority`; several domains -> rejected as ambiguous.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from ty_pipeline.domain.kldb_catalog import NamedProfession
from ty_pipeline.domain.titles import clean_job_title, title_key

# Variants this short ("In", "Dr") match far too much to be useful as lookups.
MIN_ALIAS_LENGTH = 3

# "Gehilf(e/in)", "Beamt(er/in)": masculine and feminine endings in one bracket glued to the stem.
_BRACKET_PAIR = re.compile(r"(?<=[a-zäöüß])\(([a-zäöüß]{1,4})/([a-zäöüß]{1,5})\)")
# "Landwirtschaftliche(r)", "Lehrer(in)": one optional ending glued to the stem.
_BRACKET_ENDING = re.compile(r"(?<=[a-zäöüß])\((r|n|in|innen)\)")
# "Kaufmann/-frau", "Fachmann/frau", "Vormann-/frau" and the reverse order.
_MANN_FRAU = re.compile(r"(mann|frau)-?\s*/\s*-?\s*(frau|mann)\b", re.IGNORECASE)
# "Gerontolog/e/in": stem, masculine "e", feminine "in".
_E_IN = re.compile(r"(?<=[a-zäöüß])/e/in(?![a-zäöüß])", re.IGNORECASE)
# "Softwareentwickler/in", "Kinderkrankenpflegehelfer/-in", "Facharbeiter/In", "Fachlehrer/innen".
_SLASH_IN = re.compile(r"(?<=[a-zäöüß])/-?(in|innen)(?![a-zäöüß])", re.IGNORECASE)
# "Kaufmännische/r", "Angestellte/r": the adjective takes -r in the masculine reading only.
_SLASH_R = re.compile(r"(?<=[a-zäöüß])/r(?![a-zäöüß])")
# "Garderobier/e": the feminine adds -e.
_SLASH_E = re.compile(r"(?<=[a-zäöüß])/e(?![a-zäöüß])")
# "Tierarzt/-ärztin", "Sozialpädagoge/-pädagogin", "Krankenschwester/-pfleger": a hyphenated second form
# that replaces the last part of the word before the slash.
_SLASH_HYPHEN = re.compile(r"([A-Za-zÄÖÜäöüß]+)\s*/\s*-([a-zäöüß]+)\b")
# "Koch/Köchin", "Arzt/Ärztin", "Bauer/Bäuerin": two full words.
_WORD_PAIR = re.compile(r"\b([A-ZÄÖÜ][a-zäöüß]+)/([A-ZÄÖÜ][a-zäöüß]+)\b")
# A free-standing qualifier "(FH)", "(Landwirtschaft)"; brackets glued to a word are gender endings.
_PARENTHESISED = re.compile(r"\s+\([^()]*\)")
_SPECIALISATION_SEP = " - "
_SPACES = re.compile(r"\s{2,}")

# Second forms that share no letters with the part they replace.
# (Compared without umlaut dots, see `_plain`.)
_REPLACED_PARTS = {"pfleger": "schwester", "schwester": "pfleger", "madchen": "bursche", "bursche": "madchen",
                   "frau": "mann", "mann": "frau", "vater": "mutter", "mutter": "vater"}


def _plain(text: str) -> str:
    """Lower case without umlaut dots, for comparing word stems ("Ärztin" ~ "arzt")."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(ch))


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _replace_tail(word: str, second: str) -> str:
    """The second form of "word/-second": "Tierarzt" + "ärztin" -> "Tierärztin"."""
    plain_word, plain_second = _plain(word), _plain(second)
    replaced = _REPLACED_PARTS.get(plain_second)
    if replaced and plain_word.endswith(replaced):
        return word[: len(word) - len(replaced)] + second
    best_start, best_len = -1, 1
    for start in range(1, len(word)):
        n = _common_prefix(plain_word[start:], plain_second)
        if n > best_len or (n == best_len and n > 1):
            best_start, best_len = start, n
    if best_start < 0:
        return second[:1].upper() + second[1:]
    return word[:best_start] + second


def _is_gender_pair(first: str, second: str) -> bool:
    """"Koch/Köchin" is one profession in two genders; "Maler/Lackierer" is two trades."""
    a, b = _plain(first), _plain(second)
    shared = _common_prefix(a, b)
    return shared >= min(3, len(a)) and b.endswith(("in", "frau", "ess", "euse"))


def _reading(name: str, feminine: bool, keep_pairs: bool = False) -> str:
    """The name with every gendered spelling resolved to one gender.

    `keep_pairs` leaves full-word pairs ("Koch/Köchin") alone, which is what `clean_job_title` does to a
    posting title, so a title written exactly like a catalog name still finds it.
    """
    if "/" not in name and "(" not in name:
        return name  # nothing gendered to resolve; most of the work below is skipped this way
    text = _BRACKET_PAIR.sub(lambda m: m.group(2) if feminine else m.group(1), name)
    text = _BRACKET_ENDING.sub(
        lambda m: (m.group(1) if m.group(1).startswith("in") else "") if feminine
        else ("" if m.group(1).startswith("in") else m.group(1)),
        text,
    )

    def mann_frau(m: re.Match[str]) -> str:
        wanted = "frau" if feminine else "mann"
        return wanted.capitalize() if m.group(1)[0].isupper() else wanted

    text = _MANN_FRAU.sub(mann_frau, text)
    text = _E_IN.sub("in" if feminine else "e", text)
    text = _SLASH_IN.sub(lambda m: m.group(1).lower() if feminine else "", text)
    text = _SLASH_R.sub("" if feminine else "r", text)
    text = _SLASH_E.sub("e" if feminine else "", text)
    text = _SLASH_HYPHEN.sub(lambda m: _replace_tail(m.group(1), m.group(2)) if feminine else m.group(1), text)
    if not keep_pairs:
        text = _WORD_PAIR.sub(
            lambda m: (m.group(2) if feminine else m.group(1)) if _is_gender_pair(m.group(1), m.group(2))
            else m.group(0),
            text,
        )
    return _SPACES.sub(" ", text).strip()


def _derived_shapes(text: str) -> set[str]:
    """Shorter spellings of one reading: without qualifiers, with the specialisation joined or dropped."""
    out = {text}
    variants = {text, _SPACES.sub(" ", _PARENTHESISED.sub("", text)).strip()} if " (" in text else {text}
    for variant in variants:
        out.add(variant)
        if _SPECIALISATION_SEP in variant:
            # "Tierwirt - Rinderhaltung" -> "Tierwirt Rinderhaltung" and bare "Tierwirt"; the catalog's
            # "Fachkraft - Lagerlogistik" is written "Fachkraft für Lagerlogistik" in postings, and
            # "Kaufmann - Einzelhandel" "Kaufmann im Einzelhandel".
            out.add(variant.replace(_SPECIALISATION_SEP, " "))
            out.add(variant.replace(_SPECIALISATION_SEP, " für ", 1))
            out.add(variant.replace(_SPECIALISATION_SEP, " im ", 1))
            out.add(variant.split(_SPECIALISATION_SEP, 1)[0])
    return out


def _keys(texts: Iterable[str]) -> set[str]:
    return {key for key in map(title_key, texts) if len(key) >= MIN_ALIAS_LENGTH}


def _pair_forms(masculine: str, feminine: str) -> tuple[str, ...]:
    """"Bankkaufmann/Bankkauffrau" and "Bankkauffrau/Bankkaufmann" for "Bankkaufmann/-frau".

    Postings spell the pair out in full; only the first word is paired, the rest is the masculine reading.
    """
    m_first, _, m_rest = masculine.partition(" ")
    f_first, _, f_rest = feminine.partition(" ")
    if m_first == f_first or m_rest != f_rest or "/" in m_first or "/" in f_first:
        return ()
    rest = f" {m_rest}" if m_rest else ""
    return f"{m_first}/{f_first}{rest}", f"{f_first}/{m_first}{rest}"


def alias_tiers(name: str) -> tuple[set[str], set[str]]:
    """(full-name aliases, derived aliases) of a catalog name.

    Full-name aliases are the name itself and its masculine and feminine readings; derived ones drop
    or rephrase parts of it. The split lets an exact name win over a shortened one: "Erzieherin" is
    the profession "Erzieher/in", not the bare form of "Erzieher/in - Heimerziehung".
    """
    masculine, feminine = _reading(name, False), _reading(name, True)
    # The raw name is a full alias but not worth shortening: cleaned titles never contain "/in".
    readings = {masculine, feminine, _reading(name, False, keep_pairs=True)}
    pairs = _pair_forms(masculine, feminine)
    full = _keys([name, *readings, *pairs])
    # Pair forms only get their bare head ("Erzieher/Erzieherin"): their other variants would double
    # the index for spellings no posting uses.
    derived = _keys(
        [*(shape for reading in readings for shape in _derived_shapes(reading)),
         *(_PARENTHESISED.sub("", pair).split(_SPECIALISATION_SEP, 1)[0] for pair in pairs)]
    ) - full
    return full, derived


def aliases_for(name: str) -> set[str]:
    """Every lookup key under which a catalog name should be found."""
    full, derived = alias_tiers(name)
    return full | derived


def build_alias_index(professions: Iterable[NamedProfession]) -> dict[str, list[str]]:
    """Alias key -> sorted profession ids.

    A key that is the full name of some professions lists only those; a key that is only ever a
    derived form lists every profession it was derived from. Named professions contribute all their
    aliases; occupation entries (bare five-digit ids) only their exact title, because splitting
    "Führungskräfte – Museum" would make "Führungskräfte" an alias of every management occupation.
    """
    full_index: defaultdict[str, set[str]] = defaultdict(set)
    derived_index: defaultdict[str, set[str]] = defaultdict(set)
    for prof in professions:
        derived: set[str]
        if prof.is_occupation:
            full, derived = _keys([prof.name]), set()
        else:
            full, derived = alias_tiers(prof.name)
        for key in full:
            full_index[key].add(prof.profession_id)
        for key in derived:
            derived_index[key].add(prof.profession_id)
    index = {key: sorted(ids) for key, ids in derived_index.items()}
    index.update((key, sorted(ids)) for key, ids in full_index.items())
    return index


class AliasTier(StrEnum):
    """How a title's alias hits were resolved; the first three are `berufenet_verified` statuses."""

    MATCH = "owl"
    UNANIMOUS = "owl_unanimous"
    MAJORITY = "owl_majority"
    AMBIGUOUS = "ambiguous"
    NO_MATCH = "no_match"


TIER_SCORES: dict[AliasTier, float] = {AliasTier.MATCH: 1.0, AliasTier.UNANIMOUS: 0.95, AliasTier.MAJORITY: 0.90}


@dataclass(frozen=True, slots=True)
class AliasResolution:
    """The outcome of one lookup: the chosen profession (None unless accepted) and why."""

    profession_id: str | None
    tier: AliasTier
    candidates: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        return self.profession_id is not None

    @property
    def score(self) -> float | None:
        return TIER_SCORES.get(self.tier)


def _pick(ids: Iterable[str], professions: Mapping[str, NamedProfession]) -> str:
    """Deterministic representative: a named profession before an occupation entry, then the lowest id."""
    return min(ids, key=lambda pid: (professions[pid].is_occupation, pid))


def resolve_candidates(
    candidate_ids: Sequence[str], professions: Mapping[str, NamedProfession]
) -> AliasResolution:
    """Apply the three-tier rule of docs/domain_rules.md §6.3 to the professions one alias points at.

    Ids missing from `professions` are ignored (a stale alias must not crash a run).
    """
    ids = tuple(sorted({pid for pid in candidate_ids if pid in professions}))
    if not ids:
        return AliasResolution(None, AliasTier.NO_MATCH, ())
    if len(ids) == 1:
        return AliasResolution(ids[0], AliasTier.MATCH, ids)
    domains = {professions[pid].domain_code for pid in ids}
    if len(domains) > 1:
        return AliasResolution(None, AliasTier.AMBIGUOUS, ids)
    levels = Counter(professions[pid].qualification_level for pid in ids)
    if len(levels) == 1:
        return AliasResolution(_pick(ids, professions), AliasTier.UNANIMOUS, ids)
    # Most common level; a tie goes to the lower level, the reading of a title without seniority words.
    level = min(levels, key=lambda lv: (-levels[lv], lv))
    chosen = _pick((pid for pid in ids if professions[pid].qualification_level == level), professions)
    return AliasResolution(chosen, AliasTier.MAJORITY, ids)


def lookup_title(
    title: str, index: Mapping[str, Sequence[str]], professions: Mapping[str, NamedProfession]
) -> AliasResolution:
    """Clean a posting title, look its key up in the alias index and resolve the hits."""
    key = title_key(clean_job_title(title))
    return resolve_candidates(index.get(key, ()), professions)
