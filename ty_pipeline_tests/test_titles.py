"""Title cleaning (docs/domain_rules.md §6.2): every rule, and the titles that must survive untouched.

The replaced system's cleaning regexes had ten bugs that produced 15,651 false `no_match` rows, most of
them by eating real words. So besides the removal rules this file pins down what must *not* change:
meaningful slashes, compound hyphens, subjects after "in", specialisations after " - ", and the
official catalog names themselves.
"""

from __future__ import annotations

import pytest

from ty_pipeline.domain.kldb_catalog import load_kldb_catalog
from ty_pipeline.domain.titles import clean_job_title, title_key
from ty_pipeline_tests.paths import KLDB_CSV

CLEANED = [
    # gender markers, all spellings
    ("Softwareentwickler (m/w/d)", "Softwareentwickler"),
    ("Kassierer (w/m/d)", "Kassierer"),
    ("Senior Software Engineer (f/m/x)", "Senior Software Engineer"),
    ("Backend Developer (m/f/d)", "Backend Developer"),
    ("Pflegehelfer (d/m/w)", "Pflegehelfer"),
    ("Koch (m|w|d)", "Koch"),
    ("Koch (m, w, d)", "Koch"),
    ("Koch [M/W/D]", "Koch"),
    ("Koch (mwd)", "Koch"),
    ("Sachbearbeiter - m/w/d", "Sachbearbeiter"),
    ("Staplerfahrer m/w/d", "Staplerfahrer"),
    ("Projektmanager (all genders)", "Projektmanager"),
    ("Projektmanager (gn)", "Projektmanager"),
    ("Mitarbeiter*in Kundenservice", "Mitarbeiter Kundenservice"),
    ("Lehrer:in", "Lehrer"),
    ("Mitarbeiter:innen Empfang", "Mitarbeiter Empfang"),
    ("Mitarbeiter·in Empfang", "Mitarbeiter Empfang"),
    ("Erzieher/in", "Erzieher"),
    ("Kinderkrankenpflegehelfer/-in", "Kinderkrankenpflegehelfer"),
    ("Verkäufer-in", "Verkäufer"),
    ("LehrerIn", "Lehrer"),
    ("Lehrer(in)", "Lehrer"),
    ("Angestellte*r", "Angestellter"),
    ("Kaufmännische/r Angestellte/r", "Kaufmännischer Angestellter"),
    ("Steuerfachangestellte:r", "Steuerfachangestellter"),
    ("Pflegefachmann/-frau", "Pflegefachmann"),
    ("Kauffrau/-mann für Büromanagement", "Kauffrau für Büromanagement"),
    ("Zahnarzt/-ärztin", "Zahnarzt"),
    ("Ärzt*in", "Arzt"),
    ("Anwält*in für Arbeitsrecht", "Anwalt für Arbeitsrecht"),
    ("Koch*Köchin (m/w/d)", "Koch/Köchin"),
    ("Ackergehilf(e/in)", "Ackergehilfe"),
    # locations
    ("Pflegefachkraft (w/m/d) in Baierbrunn", "Pflegefachkraft"),
    ("Elektriker in Frankfurt am Main", "Elektriker"),
    ("Account Manager (f/m/d) in Munich", "Account Manager"),
    ("Erzieher (m/w/d) in Frankfurt-Höchst", "Erzieher"),
    ("Fahrer - München", "Fahrer"),
    ("Kassierer (d/m/w) - Stadt", "Kassierer"),
    ("Reinigungskraft (m/w/d) - Minijob - Neustadt", "Reinigungskraft"),
    ("Friseur (m/w/d) (Stuttgart)", "Friseur"),
    ("Sachbearbeiter (m/w/d) Kreditoren, Neu-Ulm", "Sachbearbeiter Kreditoren"),
    ("Busfahrer (m/w/d) - Standort Hamburg", "Busfahrer"),
    ("Key Account Manager (m/w/d) - Raum Köln", "Key Account Manager"),
    ("Hausmeister (m/w/d) 80331 München", "Hausmeister"),
    ("Verkäufer Berlin", "Verkäufer"),
    ("Monteur (m/w/d) - bundesweit", "Monteur"),
    ("Product Owner (w/m/d) - 100% Remote", "Product Owner"),
    # employers
    ("Verkäufer bei Lidl", "Verkäufer"),
    ("Reinigungskraft für unser Team in Berlin", "Reinigungskraft"),
    ("Sozialpädagoge (m/w/d) für unsere Wohngruppe", "Sozialpädagoge"),
    ("Steuerfachangestellte (m/w/d) - Müller & Partner GmbH", "Steuerfachangestellte"),
    ("Data Scientist at Zalando", "Data Scientist"),
    ("Koch/Köchin (m/w/d) für unser Restaurant", "Koch/Köchin"),
    # salary, hours, contract
    ("Lagerhelfer ab 14 €/Std.", "Lagerhelfer"),
    ("Verkäufer (m/w/d) 2.500 - 3.000 € brutto", "Verkäufer"),
    ("Buchhalter bis zu 55.000 EUR", "Buchhalter"),
    ("Pflegefachkraft (m/w/d) bis zu 4.200 € + Zulagen", "Pflegefachkraft"),
    ("Customer Success Manager (m/w/d) - 60.000 - 75.000 € p.a.", "Customer Success Manager"),
    ("Staplerfahrer (m/w/d) 14,50 € / Std.", "Staplerfahrer"),
    ("Mitarbeiter (m/w/d) 538 €-Basis", "Mitarbeiter"),
    ("Reinigungskraft (m/w/d) auf 520-Euro-Basis", "Reinigungskraft"),
    ("Kellner 20 Std./Woche", "Kellner"),
    ("Verkäufer (m/w/d) - Teilzeit 20-30 Std./Woche", "Verkäufer"),
    ("Sachbearbeiter*in Buchhaltung (in Teilzeit, 30 Std./Woche)", "Sachbearbeiter Buchhaltung"),
    ("Pflegehelfer (m/w/d) 80-100%", "Pflegehelfer"),
    ("Kommissionierer in Teilzeit", "Kommissionierer"),
    ("Verkäufer (m/w/d) in Voll- oder Teilzeit", "Verkäufer"),
    ("Altenpfleger Vollzeit/Teilzeit", "Altenpfleger"),
    ("Minijob Reinigungskraft", "Reinigungskraft"),
    ("Servicekraft (m/w/d) auf Minijob-Basis", "Servicekraft"),
    ("Physiotherapeut (m/w/d) Festanstellung, unbefristet", "Physiotherapeut"),
    ("Helfer (m/w/d) 2-Schicht-System", "Helfer"),
    # job codes
    ("Koch - 12345", "Koch"),
    ("Kassierer (123)", "Kassierer"),
    ("Maurer (m/w/d) #12345", "Maurer"),
    ("IT-Administrator (m/w/d) Ref.-Nr. 2024-17", "IT-Administrator"),
    ("Elektroniker für Betriebstechnik (m/w/d) Job-ID 4711", "Elektroniker für Betriebstechnik"),
    ("Projektleiter (m/w/d) Job-Nr. 12345-AB", "Projektleiter"),
    ("Ausbildung zum Koch 2026", "Ausbildung zum Koch"),
    # start dates and marketing words
    ("Koch ab sofort gesucht", "Koch"),
    ("Erzieher ab August 2026", "Erzieher"),
    ("Koch (m/w/d) ab 01.04.2026", "Koch"),
    ("Kommissionierer (m/w/d) zum nächstmöglichen Zeitpunkt", "Kommissionierer"),
    ("Dringend: LKW-Fahrer gesucht!", "LKW-Fahrer"),
    ("Küchenhilfe (m/w/d) gesucht!!!", "Küchenhilfe"),
    ("Wir suchen Dich als Koch (m/w/d)", "Koch"),
    # pipes, brackets, whitespace and combinations
    ("Softwareentwickler | Java | Remote", "Softwareentwickler"),
    ("Software Engineer (all genders) | Remote", "Software Engineer"),
    ("| Koch | Berlin", "Koch"),
    ("Mechatroniker () ", "Mechatroniker"),
    ("Koch (m/w/d) (Vollzeit)", "Koch"),
    ("Koch (m/w/d) - ab 3.200 € - Berlin", "Koch"),
    ("Elektroniker (m/w/d) | ab 18 € | Neu-Ulm", "Elektroniker"),
    ("Servicemitarbeiter (m/w/d) in Vollzeit in Hamburg-Altona", "Servicemitarbeiter"),
    ("Lagermitarbeiter (m/w/d) - 40 Std. - ab 13,50 €", "Lagermitarbeiter"),
    ("  Koch\u00a0 (m/w/d)\t", "Koch"),
    ("Koch &amp; Jungkoch (m/w/d)", "Koch & Jungkoch"),
    ("Verkäufer (m/w/d", "Verkäufer"),
]

UNCHANGED = [
    "Koch/Köchin",
    "Maler/Lackierer",
    "Tischler / Schreiner",
    "Bürokauffrau / Bürokaufmann",
    "Kfz-Mechatroniker",
    "Gesundheits- und Krankenpfleger",
    "Elektroniker - Energie- und Gebäudetechnik",
    "Fachkraft - Möbel-, Küchen- und Umzugsservice",
    "Tierwirt - Rinderhaltung",
    "Entwickler - Backend",
    "Kaufmann im Einzelhandel",
    "Fachkraft für Lagerlogistik",
    "Kaufmann für Büromanagement",
    "Ingenieur in Elektrotechnik",
    "Lehrer in Mathematik",
    "Werkstudent in Marketing",
    "Mitarbeiter in Produktion",
    "Tierarzthelfer in Kleintierpraxen",
    "Lehrer (Deutsch/Englisch)",
    "Zahnmedizinische Fachangestellte (ZFA)",
    "IT Support (1st Level)",
    "Check-in Agent",
    "LinkedIn Manager",
    "SAP S/4HANA Berater",
    "SAP-Berater FI/CO",
    "Fahrer C/CE",
    "Berater Microsoft 365",
    "Industriemechaniker 24h-Service",
    "C++ Entwickler",
    "Entwickler C#",
    ".NET Developer",
    "d.h. Koch",
    "Data Scientist",
    "Head of Sales",
    "Hebamme",
    "Fachkraft für Schutz und Sicherheit",
    "Pflegeheim - Pflegehelfer",
]


@pytest.mark.parametrize(("title", "expected"), CLEANED)
def test_clean_job_title_removes_noise(title: str, expected: str) -> None:
    assert clean_job_title(title) == expected


@pytest.mark.parametrize("title", UNCHANGED)
def test_clean_job_title_keeps_real_job_text(title: str) -> None:
    assert clean_job_title(title) == title


@pytest.mark.parametrize("title", [t for t, _ in CLEANED] + UNCHANGED)
def test_cleaning_is_idempotent(title: str) -> None:
    once = clean_job_title(title)
    assert clean_job_title(once) == once


@pytest.mark.parametrize("title", ["", "(m/w/d)", "  ", "| |", "(123)"])
def test_titles_without_a_job_clean_to_empty(title: str) -> None:
    assert clean_job_title(title) == ""


def test_extra_place_suffix_heuristic_does_not_eat_workplaces() -> None:
    # A "- <Town-shaped word>" tail is dropped, an institution ending in -heim/-dorf is not.
    assert clean_job_title("Erzieher - Bietigheim") == "Erzieher"
    assert clean_job_title("Erzieher - Kinderdorf") == "Erzieher - Kinderdorf"
    assert clean_job_title("Pflegehelfer - Seniorenheim") == "Pflegehelfer - Seniorenheim"


def test_places_known_for_the_posting_are_removed_too() -> None:
    # "Taufkirchen" is neither a large city nor shaped like one the heuristic knows.
    assert clean_job_title("Kassierer (m/w/d) - Taufkirchen") == "Kassierer - Taufkirchen"
    assert clean_job_title("Kassierer (m/w/d) - Taufkirchen", places=["Taufkirchen"]) == "Kassierer"
    assert clean_job_title("Koch (Taufkirchen)", places=["taufkirchen "]) == "Koch"
    assert clean_job_title("Koch - Rinderhaltung", places=["Taufkirchen"]) == "Koch - Rinderhaltung"


def test_official_names_without_gender_markers_survive_cleaning() -> None:
    """Catalog names are the best sample of real job wording: cleaning must leave them alone."""
    catalog = load_kldb_catalog(KLDB_CSV)
    plain = [p.name for p in catalog.professions if "/" not in p.name and "(" not in p.name]
    assert len(plain) > 500
    changed = [(n, clean_job_title(n)) for n in plain if clean_job_title(n) != n]
    assert changed == []


@pytest.mark.parametrize(
    ("variants", "key"),
    [
        (["Köchin", "KÖCHIN", "Ko\u0308chin", "Koechin", " köchin "], "koechin"),
        (["Straßenbauer", "STRASSENBAUER", "Strassenbauer"], "strassenbauer"),
        (["Kfz-Mechatroniker", "Kfz Mechatroniker", "KFZ - Mechatroniker"], "kfz mechatroniker"),
        (["Koch/Köchin", "Koch / Köchin", "koch /köchin"], "koch/koechin"),
        (["Tierwirt - Rinderhaltung", "Tierwirt Rinderhaltung", "Tierwirt – Rinderhaltung"], "tierwirt rinderhaltung"),
        (["Café-Mitarbeiter", "Cafe Mitarbeiter", "„Café“-Mitarbeiter"], "cafe mitarbeiter"),
        (["Erdöl-, Erdgasgewinnung", "Erdöl , Erdgasgewinnung"], "erdoel, erdgasgewinnung"),
        (["Techniker (staatl. gepr. )", "Techniker ( staatl. gepr.)"], "techniker (staatl. gepr.)"),
    ],
)
def test_title_key_unifies_spellings(variants: list[str], key: str) -> None:
    assert {title_key(v) for v in variants} == {key}


def test_title_key_keeps_distinct_words_distinct() -> None:
    assert title_key("Koch") != title_key("Köchin")
    assert title_key("Maler/Lackierer") != title_key("Maler Lackierer")
    assert title_key("Dipl.-Ing.") == "dipl. ing."
    assert title_key("C++ Entwickler") == "c++ entwickler"
