"""The offline `sample` source: invented postings in the real wire formats, shipped in `data/sample/`.

It lets the Quickstart run the whole pipeline with no network. The files span five consecutive days;
their dates are shifted so that the newest sample day is yesterday (Europe/Berlin), which puts the
sample data in the partitions a new user looks at first.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from ty_pipeline.data_files import sample_dir
from ty_pipeline.domain.deutsche_bank_format import JobHtml, normalize_db_item, parse_jobhtml
from ty_pipeline.domain.jobsuche_format import DetailContent, item_refnr, normalize_search_item, parse_details
from ty_pipeline.domain.posting_record import Origin, PostingRecord, Source, parse_iso_date
from ty_pipeline.fetching.result import SourceFetch

DEFAULT_SAMPLE_DIR = sample_dir()


def _shift(value: Any, days: int) -> Any:
    parsed = parse_iso_date(value)
    return (parsed + timedelta(days=days)).isoformat() if parsed else value


@dataclass
class SampleSource:
    directory: Path
    today: date

    def _load(self, name: str) -> Any:
        path = self.directory / name
        if not path.exists():
            raise FileNotFoundError(f"sample source file missing: {path}")
        return json.loads(path.read_text(encoding="utf-8"))

    @cached_property
    def _aa_items(self) -> list[dict[str, Any]]:
        return list(self._load("jobsuche_search_v6.json").get("ergebnisliste") or [])

    @cached_property
    def _db_items(self) -> list[dict[str, Any]]:
        return list(self._load("deutsche_bank_search.json")["SearchResult"].get("SearchResultItems") or [])

    @cached_property
    def shift_days(self) -> int:
        dates = [parse_iso_date((i.get("veroeffentlichungszeitraum") or {}).get("von")) for i in self._aa_items]
        dates += [parse_iso_date((i.get("MatchedObjectDescriptor") or {}).get("PublicationStartDate"))
                  for i in self._db_items]
        newest = max(d for d in dates if d is not None)
        return ((self.today - timedelta(days=1)) - newest).days

    def sample_dates(self) -> list[date]:
        return sorted({r.published_date for r in self.records() if r.published_date})

    def records(self) -> list[PostingRecord]:
        out: list[PostingRecord] = []
        for item in self._aa_items:
            shifted = copy.deepcopy(item)
            period = shifted.get("veroeffentlichungszeitraum") or {}
            if "von" in period:
                period["von"] = _shift(period["von"], self.shift_days)
            if "datumErsteVeroeffentlichung" in shifted:
                shifted["datumErsteVeroeffentlichung"] = _shift(shifted["datumErsteVeroeffentlichung"], self.shift_days)
            out.append(normalize_search_item(shifted, origin=Origin.SAMPLE))
        for item in self._db_items:
            shifted = copy.deepcopy(item)
            descriptor = shifted.get("MatchedObjectDescriptor") or {}
            if "PublicationStartDate" in descriptor:
                descriptor["PublicationStartDate"] = _shift(descriptor["PublicationStartDate"], self.shift_days)
            out.append(normalize_db_item(shifted, origin=Origin.SAMPLE))
        return out

    def fetch(self, partition_date: date) -> list[SourceFetch]:
        by_source = {s: SourceFetch(source=str(s), complete=True) for s in Source}
        for record in self.records():
            fetch = by_source[record.source]
            fetch.fetched += 1
            fetch.reported_total += 1
            if record.published_date == partition_date:
                fetch.records.append(record)
            else:
                fetch.seen_elsewhere.append((record.source, record.external_id))
        return list(by_source.values())

    @cached_property
    def _aa_details(self) -> dict[str, Any]:
        details: dict[str, Any] = self._load("jobsuche_details.json")
        return details

    @cached_property
    def _db_html(self) -> dict[str, Any]:
        pages: dict[str, Any] = self._load("deutsche_bank_jobhtml.json")
        return pages

    def aa_details(self, refnr: str) -> DetailContent:
        payload = self._aa_details.get(refnr)
        if payload is None:
            return DetailContent(None, None, not_found=True)
        return parse_details(payload)

    def db_jobhtml(self, position_id: str) -> JobHtml | None:
        payload = self._db_html.get(position_id)
        return parse_jobhtml(payload) if payload is not None else None

    def refnrs(self) -> list[str]:
        return [r for r in (item_refnr(i) for i in self._aa_items) if r]
