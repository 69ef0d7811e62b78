"""The Dagster concurrency pools the assets run in: one name per shared external service.

A pool caps the steps that may use its service at once across every run of the instance (the shipped
`dagster.yaml` files give each pool a limit of 1, `concurrency.pools.default_limit`). An op has at most
one pool, so an asset that reaches two services sits in the pool of the one that must not be shared.
The names live here so that assets, tests and docs cannot drift apart; pool names may contain only
letters, digits, `-` and `_` (Dagster 1.10+).
"""

from __future__ import annotations

# The LLM hosts (and the GPU server when TY_EMBED_BACKEND=ollama): LLM enrichment, the BERUFENET title
# mapping and retry, the embedding assets and the profession catalog build.
OLLAMA_POOL = "ollama"

# The job APIs (Jobsuche and Deutsche Bank): `postings` and `job_descriptions`. Their request pace
# (clients/rate_limit.py) is kept per step; with one step per instance in this pool the configured pace
# is the rate the APIs see, however many runs or backfill runs are in flight. One pool for both sources,
# because one `postings` or `job_descriptions` step fetches every configured source.
JOB_APIS_POOL = "job_apis"
