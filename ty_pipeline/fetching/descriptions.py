"""Fetch one posting's description from its source and classify the outcome."""

from __future__ import annotations

from ty_pipeline.clients.deutsche_bank import DeutscheBankClient
from ty_pipeline.clients.http_retry import SourceError
from ty_pipeline.clients.jobsuche import JobsucheClient
from ty_pipeline.domain.description_status import DescriptionStatus, status_after_failure, status_for_text
from ty_pipeline.domain.html_text import clean_description, html_to_text
from ty_pipeline.domain.jobsuche_format import DetailContent, MalformedResponse
from ty_pipeline.domain.posting_record import Origin, Source
from ty_pipeline.fetching.sample import SampleSource
from ty_pipeline.warehouse.descriptions_store import DescriptionOutcome, PendingDescription


def _from_aa_detail(content: DetailContent, posting: PendingDescription, http_status: int) -> DescriptionOutcome:
    if content.not_found:
        return DescriptionOutcome(DescriptionStatus.NOT_FOUND, http_status=http_status,
                                  error="Jobsuche: STELLENANGEBOT_NICHT_GEFUNDEN")
    if content.description:
        text = clean_description(content.description)
        if text:
            return DescriptionOutcome(status_for_text(text), description=text, partner_url=content.partner_url,
                                      http_status=http_status)
    partner = content.partner_url or posting.partner_url
    if partner:
        # The ad's text lives on a partner board: say so instead of storing a marker as "description".
        return DescriptionOutcome(DescriptionStatus.EXTERNAL_PARTNER, partner_url=partner, http_status=http_status)
    return DescriptionOutcome(status_after_failure(posting.attempts), http_status=http_status,
                              error="detail record has no description and no partner URL")


def _from_db_html(html: str | None, posting: PendingDescription, http_status: int) -> DescriptionOutcome:
    if not html or not html.strip():
        return DescriptionOutcome(DescriptionStatus.NOT_FOUND, http_status=http_status,
                                  error="Deutsche Bank: jobhtml is empty or missing (ad removed)")
    text = html_to_text(html)
    if not text:
        return DescriptionOutcome(status_after_failure(posting.attempts), http_status=http_status,
                                  error="jobhtml contained no text")
    return DescriptionOutcome(status_for_text(text), description=text, http_status=http_status)


def fetch_description(
    posting: PendingDescription,
    *,
    jobsuche: JobsucheClient | None,
    deutsche_bank: DeutscheBankClient | None,
    sample: SampleSource | None,
) -> DescriptionOutcome:
    """Never raises for source trouble: every outcome, failures included, is a value to be saved."""
    try:
        if posting.origin == str(Origin.SAMPLE):
            if sample is None:
                raise SourceError("sample posting but no sample source configured")
            if posting.source == str(Source.ARBEITSAGENTUR):
                return _from_aa_detail(sample.aa_details(posting.external_id), posting, 200)
            html = sample.db_jobhtml(posting.external_id)
            return _from_db_html(html.html if html else None, posting, 200 if html else 404)
        if posting.source == str(Source.ARBEITSAGENTUR):
            if jobsuche is None:
                raise SourceError("no Jobsuche client configured")
            detail = jobsuche.details(posting.external_id)
            assert detail.content is not None
            return _from_aa_detail(detail.content, posting, detail.status)
        if posting.source == str(Source.DEUTSCHE_BANK):
            if deutsche_bank is None:
                raise SourceError("no Deutsche Bank client configured")
            status, content = deutsche_bank.jobhtml(posting.external_id)
            return _from_db_html(content.html if content else None, posting, status)
        raise SourceError(f"unknown source {posting.source!r}")
    except (SourceError, MalformedResponse) as exc:
        return DescriptionOutcome(
            status_after_failure(posting.attempts),
            http_status=getattr(exc, "status", None),
            error=str(exc)[:500],
        )
