"""The 16 German federal states and the spellings the job APIs use for them.

Jobsuche v6 answers with upper-case enum names (`BADEN_WUERTTEMBERG`), v4 with mixed case
(`Baden-Württemberg`), Deutsche Bank with free text. Everything is normalised to the German
name so demand snapshots group one state under one key.
"""

from __future__ import annotations

import unicodedata

STATES: tuple[str, ...] = (
    "Baden-Württemberg",
    "Bayern",
    "Berlin",
    "Brandenburg",
    "Bremen",
    "Hamburg",
    "Hessen",
    "Mecklenburg-Vorpommern",
    "Niedersachsen",
    "Nordrhein-Westfalen",
    "Rheinland-Pfalz",
    "Saarland",
    "Sachsen",
    "Sachsen-Anhalt",
    "Schleswig-Holstein",
    "Thüringen",
)

# `wo` is fuzzy-geocoded: plain "Hessen" and "Sachsen" matched a village and a municipality, so
# those two states were silently never crawled upstream until 2026-02-27 (docs/domain_rules.md §1.1).
WO_OVERRIDES: dict[str, str] = {"Hessen": "Bundesland Hessen", "Sachsen": "Bundesland Sachsen"}


def wo_for_state(state: str) -> str:
    """The `wo` query value that reliably selects one whole state."""
    return WO_OVERRIDES.get(state, state)


def _fold(text: str) -> str:
    text = text.strip().casefold()
    for src, dst in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        text = text.replace(src, dst)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return "".join(ch for ch in text if ch.isalnum())


_BY_FOLDED: dict[str, str] = {_fold(name): name for name in STATES}
# Common alternative spellings seen in free-text locations.
_BY_FOLDED.update(
    {
        _fold("NRW"): "Nordrhein-Westfalen",
        _fold("Bavaria"): "Bayern",
        _fold("Hesse"): "Hessen",
        _fold("Lower Saxony"): "Niedersachsen",
        _fold("North Rhine-Westphalia"): "Nordrhein-Westfalen",
        _fold("Saxony"): "Sachsen",
        _fold("Saxony-Anhalt"): "Sachsen-Anhalt",
        _fold("Thuringia"): "Thüringen",
        _fold("Rhineland-Palatinate"): "Rheinland-Pfalz",
        _fold("Freistaat Bayern"): "Bayern",
        _fold("Freistaat Sachsen"): "Sachsen",
        _fold("Freistaat Thüringen"): "Thüringen",
        _fold("Freie und Hansestadt Hamburg"): "Hamburg",
        _fold("Freie Hansestadt Bremen"): "Bremen",
    }
)


def canonical_state(value: str | None) -> str | None:
    """Map any API spelling of a state (`NORDRHEIN_WESTFALEN`, `Nordrhein-Westfalen`) to its name.

    Returns None for values that are not a German state (e.g. `Ausland`, a city, empty).
    """
    if not value:
        return None
    return _BY_FOLDED.get(_fold(value.replace("_", "-")))
