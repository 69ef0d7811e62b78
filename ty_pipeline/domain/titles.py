"""Job-title cleaning before a title is looked up in the profession catalog.

Posting titles carry much more than the job: gender markers, locations, employers, salaries, hours,
contract types, start dates, reference numbers and marketing words. The replaced system stripped these
with regexes whose ten bugs produced 15,651 false `no_match` rows (docs/domain_rules.md §6.2), so every rule
here is narrow on purpose: it only removes text it can recognise, keeps meaningful slashes
("Koch/Köchin", "Maler/Lackierer") and never splits compound words.

`clean_job_title` returns display text; `title_key` turns any text into the key used for exact lookups.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from ty_pipeline.domain.text_clean import strip_unstorable

# ---------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------

# One letter or word standing for a gender inside markers such as (m/w/d), (f|m|x), (w, m, divers).
_GENDER_TOKEN = r"(?:m|w|d|f|x|i|h|div(?:ers|erse)?|männlich|weiblich|male|female|diverse|non-?binary)"
_GENDER_SEQ = rf"{_GENDER_TOKEN}(?:(?:\s*[/,|.\\]\s*|\s+){_GENDER_TOKEN}){{1,3}}\.?"
# Without brackets only slash/pipe separators count, so "d.h." or "i.d.R." survive.
_GENDER_SEQ_BARE = rf"{_GENDER_TOKEN}(?:\s*[/|]\s*{_GENDER_TOKEN}){{1,3}}"

# Large German (and a few Austrian/Swiss) cities and the states: a trailing "- <name>" or "(<name>)" is
# only removed when it is one of these, because "- <word>" is just as often a specialisation
# ("Tierwirt/in - Rinderhaltung", "Entwickler - Backend"). "in <Name>" needs no list (see below).
_PLACES = frozenset(
    name.casefold()
    for name in (
        "Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Frankfurt am Main", "Stuttgart", "Düsseldorf",
        "Leipzig", "Dortmund", "Essen", "Bremen", "Dresden", "Hannover", "Nürnberg", "Duisburg", "Bochum",
        "Wuppertal", "Bielefeld", "Bonn", "Münster", "Mannheim", "Karlsruhe", "Augsburg", "Wiesbaden",
        "Mönchengladbach", "Gelsenkirchen", "Aachen", "Braunschweig", "Kiel", "Chemnitz", "Halle",
        "Halle (Saale)", "Magdeburg", "Freiburg", "Freiburg im Breisgau", "Krefeld", "Mainz", "Lübeck",
        "Erfurt", "Oberhausen", "Rostock", "Kassel", "Hagen", "Potsdam", "Saarbrücken", "Hamm",
        "Ludwigshafen", "Oldenburg", "Mülheim an der Ruhr", "Osnabrück", "Leverkusen", "Darmstadt",
        "Heidelberg", "Solingen", "Herne", "Regensburg", "Neuss", "Paderborn", "Ingolstadt", "Offenbach",
        "Offenbach am Main", "Fürth", "Würzburg", "Ulm", "Heilbronn", "Pforzheim", "Wolfsburg", "Göttingen",
        "Bottrop", "Reutlingen", "Koblenz", "Bremerhaven", "Recklinghausen", "Erlangen", "Bergisch Gladbach",
        "Remscheid", "Jena", "Trier", "Salzgitter", "Moers", "Siegen", "Hildesheim", "Cottbus", "Gütersloh",
        "Kaiserslautern", "Witten", "Hanau", "Schwerin", "Gera", "Esslingen", "Ludwigsburg", "Iserlohn",
        "Düren", "Tübingen", "Zwickau", "Flensburg", "Gießen", "Ratingen", "Lünen", "Villingen-Schwenningen",
        "Konstanz", "Marl", "Worms", "Velbert", "Minden", "Dessau", "Dessau-Roßlau", "Neumünster",
        "Norderstedt", "Delmenhorst", "Wilhelmshaven", "Viersen", "Gladbeck", "Dorsten", "Rheine",
        "Detmold", "Troisdorf", "Castrop-Rauxel", "Arnsberg", "Bamberg", "Lüneburg", "Bayreuth", "Bocholt",
        "Celle", "Landshut", "Aschaffenburg", "Dinslaken", "Brandenburg an der Havel", "Fulda", "Lippstadt",
        "Aalen", "Kempten", "Herford", "Kerpen", "Plauen", "Neuwied", "Dormagen", "Sindelfingen",
        "Neubrandenburg", "Rosenheim", "Wetzlar", "Grevenbroich", "Stralsund", "Greifswald", "Weimar",
        "Passau", "Baden-Baden", "Eschborn", "Walldorf", "Böblingen", "Ravensburg", "Friedrichshafen",
        "Garching", "Unterföhring", "Baierbrunn", "Freising", "Erding", "Straubing", "Dingolfing",
        "Unterhaching", "Ismaning", "Germering", "Poing", "Eching", "Neu-Ulm", "Neu-Isenburg", "Wien", "Graz", "Linz", "Salzburg", "Innsbruck", "Zürich",
        "Basel", "Bern", "Luxemburg",
        "Baden-Württemberg", "Bayern", "Brandenburg", "Hessen", "Mecklenburg-Vorpommern", "Niedersachsen",
        "Nordrhein-Westfalen", "NRW", "Rheinland-Pfalz", "Saarland", "Sachsen", "Sachsen-Anhalt",
        "Schleswig-Holstein", "Thüringen", "Deutschland", "Germany", "Österreich", "Schweiz",
        "bundesweit", "deutschlandweit", "europaweit", "weltweit", "Remote", "Homeoffice", "Home-Office",
        "Home Office", "hybrid", "vor Ort", "Stadt", "Innenstadt", "Stadtmitte", "Zentrum", "Umland",
    )
)
# Words introducing a place: "Raum Köln", "Standort Hamburg", "Region Hannover".
_PLACE_LEAD = (
    r"(?:Raum|Großraum|Region|Standort|Standorte|Niederlassung|Filiale|Nähe|nahe|Umgebung|Einsatzort|Arbeitsort|"
    r"Stadt|Landeshauptstadt|Gemeinde|Landkreis|Kreis)"
)
# Typical endings of German place names ("Neustadt", "Rüsselsheim", "Göppingen"): a separated tail such as
# "- Neustadt" or "(Bietigheim)" ending like this is taken as a place even when it is not in `_PLACES`.
_PLACE_ENDING = re.compile(
    r"^[A-ZÄÖÜ][a-zäöüß]+(?:[- ][A-ZÄÖÜ][a-zäöüß]+)*"
    r"(?:stadt|städt|dorf|hausen|ingen|burg|furt|brunn|stedt|leben|rode|hagen|bach|born|brück|"
    r"beck|büttel|itz|witz|heim)$"
)
# "- Pflegeheim", "- Kinderdorf", "- Schullandheim" name a workplace, not a town.
_INSTITUTION_ENDINGS = tuple(
    f"{a}{b}"
    for a in ("pflege", "alten", "kinder", "wohn", "senioren", "jugend", "erziehungs", "ferien", "tier",
              "studenten", "schul", "land", "behinderten", "obdachlosen", "frauen", "mutter")
    for b in ("heim", "dorf", "haus")
)
# Capitalised words after "in" that are not places: the word after "in" is a subject or contract.
_NOT_PLACE_AFTER_IN = frozenset(
    w.casefold()
    for w in (
        "Teilzeit", "Vollzeit", "Festanstellung", "Elternzeit", "Voll-", "Teil-", "Anstellung", "Ausbildung",
        "Weiterbildung", "Kooperation", "Zusammenarbeit", "Leitung", "Führung", "Projekten", "Projekte",
        "Verantwortung", "Schicht", "Schichtarbeit", "Wechselschicht", "Nachtschicht", "Rufbereitschaft",
        "Vertretung", "Elternzeitvertretung", "Kurzarbeit", "Minijob", "Ganztags", "Ganztag",
        "IT", "HR", "EDV", "Vertrieb", "Verkauf", "Einkauf", "Lager", "Küche", "Service", "Kita", "Praxis",
        "Sales", "Finance", "Test", "Büro", "Schule", "Hotel", "Restaurant", "Gastro", "Sport", "Kunst",
        "Mathe", "Geschichte", "Latein", "Labor", "Werkstatt", "Montage", "Nachtdienst", "Frühdienst",
    )
)
# Subject-like endings: "Ingenieur in Elektrotechnik", "Lehrer in Deutsch", "Tierarzthelfer in Tierkliniken"
# keep what follows "in"; the plural workplaces ("…betrieben", "…praxen") are never towns.
_SUBJECT_ENDINGS = (
    "ik", "ung", "ie", "ogie", "wesen", "wirtschaft", "technik", "pflege", "lehre", "kunde", "recht", "management",
    "medizin", "dienst", "wissenschaft", "wissenschaften", "ion", "tät", "heit", "keit", "schaft", "sch", "ing",
    "ics", "ogy", "ungen", "ien", "iken", "praxen", "betrieben", "stätten", "studios", "verein", "vereinen",
    "häusern", "heimen", "schulen", "firmen", "unternehmen", "kanzleien", "büros", "ämtern", "behörden",
    "zentren", "einrichtungen", "abteilungen", "werken", "anlagen",
)
# English compounds ending in "-in"/"In" that are not a feminine suffix.
_NOT_FEMININE_IN = frozenset(
    {"check", "log", "plug", "sign", "walk", "drive", "add", "opt", "built", "lean", "break", "cash",
     "try", "fly", "linked", "roll", "pop", "tie", "lock", "phase", "buy", "drop", "join", "stand", "sit"}
)

_MONTHS = (
    r"(?:Januar|Jan\.?|Februar|Feb\.?|März|Maerz|Mär\.?|April|Apr\.?|Mai|Juni|Jun\.?|Juli|Jul\.?|August|Aug\.?|"
    r"September|Sept?\.?|Oktober|Okt\.?|November|Nov\.?|Dezember|Dez\.?|Frühjahr|Sommer|Herbst|Winter)"
)
_DATE = r"(?:\d{1,2}\.\s?\d{1,2}\.(?:\s?\d{2,4})?|\d{1,2}\.\s?" + _MONTHS + r"|" + _MONTHS + r")(?:\s+\d{4})?"

# ---------------------------------------------------------------------------------------------------
# Precompiled rules (applied in the order of `clean_job_title`)
# ---------------------------------------------------------------------------------------------------

_DASHES = re.compile(r"[\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uFE58\uFE63\uFF0D]")
_STARS = re.compile(r"[\u2217\u204E\uFF0A\u2731]")  # look-alike asterisks used for gender stars
_SPACES = re.compile(r"[\s\u00a0\u2007\u2009\u200a\u202f\u200b\ufeff]+")

# "(m/w/d)", "[w|m|d]", "(m, w, d)", "(M/W/D)*", "(gn)", "(all genders)", "(alle Geschlechter)".
_GENDER_BRACKETED = re.compile(
    rf"[(\[{{]\s*(?:{_GENDER_SEQ}|gn\*?|all\s+genders?|alle\s+geschlechter|geschlechtsneutral|"
    rf"genderneutral|any\s+gender|mwd|wmd|mfd|fmd|dmw|mwx)\s*\*?\s*[)\]}}]\*?",
    re.IGNORECASE,
)
# "- m/w/d", ", w/m/d" or a bare "m/w/d" without brackets (needs ≥2 tokens and slash-like separators).
_GENDER_BARE = re.compile(rf"(?<![\w/])[-,:]?\s*(?:{_GENDER_SEQ_BARE}|mwd)(?![\w/])", re.IGNORECASE)
# Feminine/plural suffixes: "Mitarbeiter*in", "Lehrer:innen", "Erzieher/in", "Koch/-in", "Kolleg_in".
_FEMININE_SUFFIX = re.compile(r"(?<=[a-zäöüß])(?:[*:_·]|/-?)(?:in|innen)(?![a-zäöüß])", re.IGNORECASE)
# "Lehrer(in)", "Lehrer(innen)".
_FEMININE_PAREN = re.compile(r"(?<=[a-zäöüß])\((?:in|innen)\)", re.IGNORECASE)
# Adjective endings: "Angestellte*r", "Kaufmännische/r", "Angestellte(r)". Dropping "/in" leaves the
# masculine reading, so these become masculine too ("Kaufmännischer Angestellter"): a mixed reading
# ("Kaufmännische Angestellter") would match no catalog alias.
_ADJECTIVE_SUFFIX = re.compile(r"(?<=[a-zäöüß])(?:[*:_·/]r|\(r\))(?![a-zäöüß])")
# Catalog-style bracket pairs glued to the stem: "Gehilf(e/in)" -> "Gehilfe", "Beamt(er/in)" -> "Beamter".
_BRACKET_PAIR = re.compile(r"(?<=[a-zäöüß])\(([a-zäöüß]{1,4})/(?:in|innen)\)")
# Binnen-I: "LehrerIn", "MitarbeiterInnen" (not "LinkedIn", "CheckIn").
_BINNEN_I = re.compile(r"\b([A-Za-zÄÖÜäöüß]*?[a-zäöüß])In(?:nen)?\b")
# Hyphenated feminine: "Verkäufer-in", "Verkäufer-innen" (not "Check-in", "Log-in").
_HYPHEN_IN = re.compile(r"\b([A-Za-zÄÖÜäöüß]*?[a-zäöüß])-in(?:nen)?\b")
# "mann/-frau" and "frau/-mann": keep the first form ("Kaufmann/-frau" -> "Kaufmann").
_MANN_FRAU = re.compile(r"(?<=mann)-?\s*/\s*-?\s*frau\b|(?<=frau)-?\s*/\s*-?\s*mann\b", re.IGNORECASE)
# "Zahnarzt/-ärztin", "Sozialpädagoge/-pädagogin": the hyphenated feminine repeats the masculine form.
_SLASH_HYPHEN_FEMININE = re.compile(r"(?<=[a-zäöüß])\s*/\s*-\s*[a-zäöüß]+in(?:nen)?\b")
# "Koch*Köchin" is a gender pair written with a star; normalise it to the catalog's slash.
_STAR_PAIR = re.compile(r"(?<=[a-zäöüß])[*:](?=[A-ZÄÖÜ][a-zäöüß])")
# A word left with a bare umlaut stem after dropping its suffix ("Ärzt*in" -> "Ärzt"): give it back
# its masculine form.
_UMLAUT_STEMS = ((re.compile(r"ärzt\b"), "arzt"), (re.compile(r"\bÄrzt\b"), "Arzt"),
                 (re.compile(r"\bKöch\b"), "Koch"), (re.compile(r"\bBäuer\b"), "Bauer"),
                 (re.compile(r"bäuer\b"), "bauer"), (re.compile(r"\bAnwält\b"), "Anwalt"),
                 (re.compile(r"anwält\b"), "anwalt"))

_PIPE = re.compile(r"\s*[|•·‖¦]\s*")

# Money: "3.500 €", "€ 15,50/Std.", "45.000 - 55.000 EUR brutto p.a.", "bis zu 4000€", "ab 20 Euro".
_CURRENCY = r"(?:€|EUR\b|Euro\b|Eur\b)"
_AMOUNT = r"\d[\d.,]*(?:\s?(?:k|T|Tsd\.?|Mio\.?))?"
_PER = r"(?:\s*(?:/|pro|je|per|die|im|in\s+der|a|an)\s*(?:Std\.?|Stunde|h\b|Monat|Mon\.?|Mo\.?|Jahr|Jhr\.?|p\.?\s?a\.?|Woche|Wo\.?|Tag|month|year|hour|annum))?"
_MONEY = re.compile(
    rf"(?:\b(?:ab|auf|bis\s+zu|bis|von|zwischen|mind\.?|mindestens|up\s+to|from|starting\s+at|Gehalt:?|"
    rf"Stundenlohn:?|Lohn:?|Verdienst:?|Vergütung:?|Salary:?|Einstiegsgehalt:?)\s*)?"
    rf"(?:{_CURRENCY}\s*{_AMOUNT}(?:\s*(?:-|bis|und)\s*{_CURRENCY}?\s*{_AMOUNT})?|"
    rf"{_AMOUNT}(?:\s*{_CURRENCY})?\s*(?:-|bis|und)\s*{_AMOUNT}\s*-?\s*{_CURRENCY}|{_AMOUNT}\s*-?\s*{_CURRENCY})"
    rf"(?:\s*-?\s*(?:Basis|Job|Jobber|Kraft)\b)?"
    rf"{_PER}(?:\s*(?:brutto|netto|gross|Brutto|Netto))?{_PER}(?:\s*(?:p\.?\s?a\.?|/\s*Jahr|im\s+Jahr))?"
    rf"(?:\s*\+\s*\w+)?",
    re.IGNORECASE,
)
# Words that only ever accompany a salary: "+ Prämie", "brutto", "Top-Gehalt", "übertariflich".
_PAY_WORDS = re.compile(
    r"(?:\b(?:bis\s+zu|inkl\.?|zzgl\.?|plus|\+)\s*)?\b(?:Top-?\s?Gehalt|Top-?\s?Bezahlung|attraktive[rs]?\s+"
    r"(?:Gehalt|Vergütung|Bezahlung)|übertarifliche?r?\s*(?:Bezahlung|Vergütung)?|(?:Wechsel|Antritts|Start)prämie|"
    r"Prämie|brutto|netto|TVöD[\w\s./-]*?(?=$|[,;)|])|TV-?L\b[\w\s./-]*?(?=$|[,;)|])|E\s?\d{1,2}\s*TVöD)\b",
    re.IGNORECASE,
)
# "bis zu ..." up to the end of its segment ("bis zu 30 % Bonus", "bis zu 4.000").
_UP_TO = re.compile(r"\bbis\s+zu\b[^,;()|-]*", re.IGNORECASE)
# Hours: "40 Std./Woche", "20-30 Stunden", "(38,5h)", "30 Wochenstunden", "Std. 25".
_HOURS = re.compile(
    r"(?:\b(?:ab|bis|mit|mind\.?|mindestens|max\.?|maximal|ca\.?|circa|zwischen|je)\s+)?"
    r"\b\d{1,2}(?:[.,]\d{1,2})?(?:\s*(?:-|bis|–|/)\s*\d{1,2}(?:[.,]\d{1,2})?)?\s*"
    r"(?:Std\.?|Stunden|Stunde|Wochenstunden|Wochenstd\.?|WStd\.?|h(?![\w-])|hrs?\b|hours?\b)"
    r"(?:\s*(?:/|pro|je|in\s+der|die|per|a)\s*(?:Woche|Wo\.?|Monat|Mon\.?|Tag|week|month))?",
    re.IGNORECASE,
)
# Employment fractions: "80-100%", "(50 %)", "100%".
_PERCENT = re.compile(r"\b\d{1,3}(?:\s*(?:-|–|bis)\s*\d{1,3})?\s*%")
# Shift work: "3-Schicht", "im Schichtdienst", "Wechselschicht".
_SHIFT = re.compile(
    r"(?:\b(?:im|in|mit|für)\s+)?(?:\b\d\s?-?\s?Schicht(?:-?(?:system|betrieb|dienst))?|\bSchichtdienst|\bSchichtarbeit|"
    r"\bSchichtbetrieb|\b(?:Wechsel|Nacht|Früh|Spät|Zwei|Drei|Mehr|Voll)-?[Ss]chicht(?:-?(?:system|betrieb|dienst))?)\b",
    re.IGNORECASE,
)

# Contract types: "Teilzeit", "in Voll- oder Teilzeit", "Vollzeit/Teilzeit", "(TZ)", "Minijob", "Festanstellung".
_CONTRACT = re.compile(
    r"(?:\b(?:in|als|auf|für|zur|mit)\s+)?"
    r"(?:\b(?:Voll|Teil)-?\s*(?:/|oder|und|bzw\.?|&|,)\s*)?"
    r"\b(?:Vollzeit|Teilzeit|Voll-?\s?und\s?Teilzeit|Full[\s-]?time|Part[\s-]?time|Minijob(?:ber(?:in)?)?|"
    r"Mini-Job|Midijob|Midi-Job|Festanstellung|Festeinstellung|unbefristet|befristet|geringfügig(?:e\s+Beschäftigung)?|"
    r"Aushilfsbasis|Vollzeitstelle|Teilzeitstelle|Vollzeitbasis|Teilzeitbasis|Minijobbasis|Minijob-Basis)"
    r"(?:\s*(?:/|oder|und|bzw\.?|&|,)\s*(?:Vollzeit|Teilzeit|Minijob|Full[\s-]?time|Part[\s-]?time|"
    r"unbefristet|befristet|Festanstellung))*"
    r"(?:\s*\((?:TZ|VZ)\))?(?:\s*-?\s*[Bb]asis\b)?",
    re.IGNORECASE,
)
_CONTRACT_ABBR = re.compile(r"(?<![\w/])(?:TZ|VZ)(?:\s*/\s*(?:TZ|VZ))?(?![\w/])")

# Start dates: "ab sofort", "ab 01.04.2026", "zum 1. März", "ab August 2026", "per sofort", "asap",
# "zum nächstmöglichen Zeitpunkt", "Start: Sept. 2026".
_START = re.compile(
    rf"(?:\b(?:ab|zum|per|für|from|starting|Start:?|Beginn:?|Eintritt:?|Einstieg:?|Ausbildungsstart:?|"
    rf"Ausbildungsbeginn:?)\s*(?:dem\s+|den\s+)?(?:sofort(?:iger?)?|asap|{_DATE}|nächstmöglichen?\s+Zeitpunkt|"
    rf"nächstmöglich|(?:Sommer|Herbst|Frühjahr|Winter)?\s*\d{{4}}|immediately|now)\b\.?"
    rf"|\b(?:zum\s+)?nächstmöglichen\s+Zeitpunkt\b|\bsofort\b|\basap\b|\bimmediately\b)",
    re.IGNORECASE,
)
# Marketing words: "gesucht", "dringend", "Wir suchen Dich als", "NEU:", "Top-Job", "Quereinsteiger willkommen".
_SEARCHING = re.compile(
    r"^\s*(?:(?:wir\s+)?(?:suchen|gesucht|dringend\s+gesucht)\s*(?:(?:dich|sie|euch|Verstärkung)\b)?\s*"
    r"(?:als|:|-)?\s*)(?=\S)",
    re.IGNORECASE,
)
_BUZZ = re.compile(
    r"(?:\bdringend\s+gesucht\b|\bgesucht\b|\bdringend\b|^\s*neu\s*[:!]|\(\s*neu\s*\)|"
    r"\bTop-?Job\b|\bTop-Arbeitgeber\b|^\s*(?:Jobangebot|Stellenangebot|Job|Stelle)\s*:|"
    r"\(?(?:auch\s+)?Quereinsteiger(?:/innen|innen|\*innen)?(?:\s+(?:willkommen|möglich|erwünscht))?\)?|"
    r"\(?Quereinstieg(?:\s+möglich)?\)?|\bWerkstudentenjob\b(?=\s*$))"
    r"\s*!*",
    re.IGNORECASE,
)
_EXCLAIM = re.compile(r"!+")

# Reference numbers: "- 12345", "(123)", "#4711", "Ref.-Nr. 2024-17", "[Job-ID 123]", "Kennziffer 12".
_REF_PAREN = re.compile(
    r"[(\[]\s*(?:(?:Ref(?:erenz)?\.?(?:-?\s?Nr\.?)?|Job-?ID|ID|Nr\.?|Kennziffer|Kennz\.?|Code|Req(?:uisition)?\.?)"
    r"\s*[:#.]?\s*)?#?[A-Z]{0,4}[-_]?\d[\d\-_/]*\d[A-Z]?\s*[)\]]",
    re.IGNORECASE,
)
_REF_LABELLED = re.compile(
    r"[-,;]?\s*\b(?:Ref(?:erenz)?\.?(?:-?\s?Nr\.?)?|Job-?ID|Job-?Nr\.?|Stellen-?ID|Stellen-?Nr\.?|"
    r"Ausschreibungs-?Nr\.?|Kennziffer|Kennz\.|Req(?:uisition)?\.?\s?ID)"
    r"\s*[:#.]?\s*[A-Z]{0,4}[-_]?\d[\w\-/]*",
    re.IGNORECASE,
)
_REF_TRAILING = re.compile(
    r"\s*[-#]\s*[A-Z]{0,3}\d{3,}[\d\-/]*\s*$|\s+#?[A-Z]{0,3}\d{4,}[\d\-/]*\s*$|\s*#\s*\d+\s*$|\s+-\s*\d+\s*$"
)
_REF_LEADING = re.compile(r"^\s*(?:#?\d{4,}|[A-Z]{1,3}-?\d{4,})\s*[-:|]\s*")

# Employer suffixes: "bei der Stadtwerke GmbH", "@ ACME", "für unser Team", "at Google".
_COMPANY_MARK = r"(?:GmbH|AG|SE|KG|KGaA|mbH|e\.\s?V\.|eG|UG|GbR|OHG|Inc\.?|Ltd\.?|LLC|Co\.|Gruppe|Group|Holding|Konzern)"
_COMPANY = re.compile(
    r"\s*(?:"
    r"\s(?:bei|beim)\s+(?!Bedarf\b|Eignung\b|Interesse\b|Veranstaltungen\b)\S.*$"
    r"|\s(?:für|fuer)\s+(?:unser(?:e|en|er|es)?|Ihr(?:e|en)?|ihr(?:e|en)?|eine[nm]?|namhafte[ns]?|renommierte[ns]?|"
    r"verschiedene|diverse|mehrere|zahlreiche|führende[ns]?|bekannte[ns]?|internationale[ns]?|"
    r"den\s+Standort|die\s+Filiale|das\s+Team|Kunden|Kundeneinsätze?|Personaldienstleister|Zeitarbeit)\b.*$"
    rf"|\s(?:für|fuer)\s+\S[^,;]*\b{_COMPANY_MARK}(?=[\s,;)]|$).*$"
    r"|\s*@\s*\S.*$"
    r"|\s(?:at)\s+[A-Z][\w&.-]*(?:\s+[A-Z][\w&.-]*){0,3}\s*$"
    r")",
)
_COMPANY_TAIL = re.compile(rf"(?:\s-\s|,\s*)(?:(?!\s-\s)[^,])*?\b{_COMPANY_MARK}(?=[\s,;)]|$)[^,]*$")

# Locations: "in Baierbrunn", "in Frankfurt am Main", "in Berlin/Potsdam", "in 80331 München".
_IN_PLACE = re.compile(
    r"\s(?:in|im\s+Raum|in\s+der\s+Region|im\s+Großraum|im\s+Umkreis\s+von)\s+"
    r"(?P<place>(?:\d{5}\s+)?[A-ZÄÖÜ][\w.'-]*(?:\s+(?:am|an\s+der|im|in\s+der|ob\s+der|a\.\s?d\.|a\.|i\.|v\.d\.)\s+"
    r"[A-ZÄÖÜ][\w.-]*|\s*\([^)]*\)|\s+[A-ZÄÖÜ][\w.-]*)*"
    r"(?:\s*(?:/|,|und|oder|&|\+)\s*(?:\d{5}\s+)?[A-ZÄÖÜ][\w.-]*(?:\s+(?:am|an\s+der|im)\s+[A-ZÄÖÜ][\w.-]*)?)*)"
    r"\s*$"
)
_LEAD_PLACE = re.compile(rf"\s*(?:[-,]\s*|\s)\(?{_PLACE_LEAD}:?\s+[\w .,/()-]+\)?\s*$")
_PAREN_TAIL = re.compile(r"\s*[(\[](?P<tail>[^()\[\]]+)[)\]]\s*$")
_POSTCODE = re.compile(r"\s*[-,]?\s*\b\d{5}\s+[A-ZÄÖÜ][\w.-]*(?:\s+[A-ZÄÖÜ][\w.-]*)?\s*$")

# Cleanup.
_EMPTY_BRACKETS = re.compile(r"[(\[{]\s*[-,/;:*+&.|]*\s*[)\]}]")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:)\]])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[])\s+")
# " - , " left behind by removed words. A separator glued to a word is part of an enumeration
# ("Möbel-, Küchen- und Umzugsservice") and stays.
_REPEATED_SEP = re.compile(r"(?:(?<=\s)|^)([-,;/])(?:\s*[-,;/])+(?=\s|$)")
# Leading/trailing separators. A "." may start a name (".NET") and "+"/"#" may end one ("C++", "C#"),
# so those are only dropped when they stand alone.
_EDGE_JUNK = re.compile(r"^(?:[\s\-,;:/&*|!~_=]|[+#]+(?=\s))+|(?:[\s\-,;:/&*|!~_=(\[]|(?<=\s)[+#]+)+$")
_UNBALANCED_OPEN = re.compile(r"\s*[(\[][^)\]]*$")
_MULTI_SPACE = re.compile(r"\s{2,}")

# Key normalisation.
_KEY_DROP = str.maketrans("", "", "\"'`´‘’‚“”„«»")
# Punctuation that never starts or ends a key (a trailing "." stays: "Dipl.-Ing.").
_KEY_EDGE_CHARS = " ,;:*+&|!#"
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ẞ": "ss"})


# ---------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------


def _normalise_chars(text: str) -> str:
    """Decode entities, compose umlauts, unify dashes, asterisks and whitespace.

    Control characters go first: a title is often looked up or shown as it comes from here.
    """
    text = strip_unstorable(text)
    if "&" in text:
        text = html.unescape(text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
        text = _DASHES.sub("-", text)
        text = _STARS.sub("*", text)
        return _SPACES.sub(" ", text).strip()
    return " ".join(text.split())


def _strip_feminine(match: re.Match[str], keep_if: frozenset[str]) -> str:
    stem = match.group(1)
    return match.group(0) if stem.casefold() in keep_if else stem


def _strip_gender(text: str) -> str:
    text = _GENDER_BRACKETED.sub(" ", text)
    text = _GENDER_BARE.sub(" ", text)
    text = _MANN_FRAU.sub("", text)
    text = _SLASH_HYPHEN_FEMININE.sub("", text)
    text = _STAR_PAIR.sub("/", text)
    before = text
    text = _BRACKET_PAIR.sub(r"\1", text)
    text = _FEMININE_SUFFIX.sub("", text)
    text = _FEMININE_PAREN.sub("", text)
    text = _ADJECTIVE_SUFFIX.sub("r", text)
    text = _BINNEN_I.sub(lambda m: _strip_feminine(m, _NOT_FEMININE_IN), text)
    text = _HYPHEN_IN.sub(lambda m: _strip_feminine(m, _NOT_FEMININE_IN), text)
    if text != before:
        for pattern, repl in _UMLAUT_STEMS:
            text = pattern.sub(repl, text)
    return text


def _first_segment(text: str) -> str:
    """Everything after `|` (or a bullet) is dropped; if the first part is empty, the next one counts."""
    for part in _PIPE.split(text):
        if _EDGE_JUNK.sub("", part):
            return part
    return ""


def _is_place(tail: str, extra: frozenset[str] = frozenset()) -> bool:
    tail = tail.strip().strip("()[]").strip()
    if not tail:
        return False
    # "Berlin/Potsdam", "Hamburg, Bremen", "München oder Remote", "Berlin-Mitte"
    parts = [p for p in re.split(r"\s*(?:/|,|\bund\b|\boder\b|&|\+)\s*", tail) if p]
    known = _PLACES | extra if extra else _PLACES
    return bool(parts) and all(p.casefold() in known or p.split("-")[0].casefold() in known for p in parts)


def _looks_like_place(tail: str, extra: frozenset[str]) -> bool:
    """A separated tail that is a known place or shaped like a German place name."""
    tail = tail.strip().strip("()[]").strip()
    if _is_place(tail, extra):
        return True
    return bool(_PLACE_ENDING.match(tail)) and not tail.casefold().endswith(_INSTITUTION_ENDINGS)


def _strip_in_place(text: str, extra: frozenset[str]) -> str:
    m = _IN_PLACE.search(text)
    if not m:
        return text
    place = m.group("place")
    if not _is_place(place, extra):
        words = [w.strip(".()") for w in re.split(r"[\s/,]+", place) if w.strip(".()")]
        if any(w.casefold() in _NOT_PLACE_AFTER_IN or w.casefold().endswith(_SUBJECT_ENDINGS) for w in words):
            return text
    return text[: m.start()]


def _strip_location(text: str, extra: frozenset[str]) -> str:
    text = _LEAD_PLACE.sub("", text)
    text = _POSTCODE.sub("", text)
    text = _strip_in_place(text, extra)
    for sep in (" - ", ","):
        head, found, tail = text.rpartition(sep)
        if found and head.strip() and _looks_like_place(tail, extra):
            text = head
    m = _PAREN_TAIL.search(text)
    if m and _looks_like_place(m.group("tail"), extra):
        text = text[: m.start()]
    # A bare trailing place: "Verkäufer Berlin", "Koch Frankfurt am Main", "Entwickler Remote".
    words = text.split()
    for k in (4, 3, 2, 1):
        if len(words) > k and _is_place(" ".join(words[-k:]), extra):
            return " ".join(words[:-k])
    return text


def _light_tidy(text: str) -> str:
    """Just enough tidying for the next rule to see the true end of the text."""
    return _EDGE_JUNK.sub("", _MULTI_SPACE.sub(" ", text)).strip()


def _drop_unmatched_close(text: str) -> str:
    """Remove stray ")" characters only; the text before one is usually the job ("Ingenieur FS) - Bau")."""
    depth, out = 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                continue
            depth -= 1
        out.append(ch)
    return "".join(out)


def _tidy(text: str) -> str:
    if "(" in text or "[" in text or "{" in text or ")" in text or "]" in text:
        text = _EMPTY_BRACKETS.sub(" ", text)
        text = _SPACE_AFTER_OPEN.sub(r"\1", text)
        if text.count("(") > text.count(")"):
            text = _UNBALANCED_OPEN.sub("", text)
        if text.count(")") > text.count("("):
            text = _drop_unmatched_close(text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_SEP.sub(r"\1", text)
    return _light_tidy(text)


def _strip_noise(text: str) -> str:
    text = _MONEY.sub(" ", text)
    text = _UP_TO.sub(" ", text)
    text = _PAY_WORDS.sub(" ", text)
    text = _HOURS.sub(" ", text)
    text = _PERCENT.sub(" ", text)
    text = _SHIFT.sub(" ", text)
    text = _CONTRACT.sub(" ", text)
    text = _CONTRACT_ABBR.sub(" ", text)
    text = _START.sub(" ", text)
    text = _SEARCHING.sub("", text)
    text = _BUZZ.sub(" ", text)
    text = _EXCLAIM.sub(" ", text)
    text = _REF_PAREN.sub(" ", text)
    text = _REF_LABELLED.sub(" ", text)
    text = _REF_LEADING.sub("", text)
    return _tidy(text)


def _strip_tail(text: str, extra: frozenset[str]) -> str:
    text = _COMPANY.sub("", text)
    text = _COMPANY_TAIL.sub("", text)
    text = _strip_location(_light_tidy(text), extra)
    return _tidy(_REF_TRAILING.sub("", _light_tidy(text)))


def clean_job_title(title: str, places: Iterable[str] = ()) -> str:
    """The job part of a posting title, as it would be written in a profession catalog.

    "Softwareentwickler (m/w/d) in Vollzeit in München | ab 60.000 €" -> "Softwareentwickler".
    Returns "" when nothing job-like is left (e.g. a title that is only a gender marker).

    `places` adds place names known for this posting (its own city, say) to the built-in list of large
    cities, so a separated tail such as "- Unterschleißheim" is recognised as a location too.
    """
    if not title:
        return ""
    extra = frozenset(p.strip().casefold() for p in places if p and p.strip())
    text = _normalise_chars(title)
    text = _strip_gender(text)
    text = _first_segment(text)
    # Removing one trailing piece can expose another ("Koch in Berlin - Teilzeit - 12345"), so repeat
    # until nothing changes; three rounds cover every title seen so far, five leave headroom.
    for _ in range(5):
        before = text
        text = _strip_noise(text)
        text = _strip_tail(text, extra)
        if text == before:
            break
    return _tidy(text)


@lru_cache(maxsize=65536)
def title_key(title: str) -> str:
    """Lookup key: casefolded, umlauts spelled out, punctuation and spacing normalised.

    "Köchin", "KÖCHIN", "Ko\u0308chin" (decomposed) and "Koechin" share one key, so a catalog name
    and a posting title meet regardless of how they were typed. Cached: the same titles and alias
    spellings recur thousands of times per run.
    """
    text = _normalise_chars(title).casefold()
    if not text.isascii():
        text = text.translate(_UMLAUTS)
        if not text.isascii():
            # Strip remaining accents ("Café" -> "cafe") so typing variants do not split keys.
            text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    text = text.translate(_KEY_DROP)
    if "-" in text:
        # "Kfz-Mechatroniker", "Kfz Mechatroniker" and "Tierwirt - Rinderhaltung" vs "Tierwirt Rinderhaltung"
        # are the same lookup; hyphens carry no meaning a key needs.
        text = text.replace("-", " ")
    text = " ".join(text.split()).replace(" ,", ",").replace("( ", "(").replace(" )", ")")
    if "/" in text:
        text = text.replace(" /", "/").replace("/ ", "/")
    return text.lstrip(_KEY_EDGE_CHARS + ".").rstrip(_KEY_EDGE_CHARS).strip()
