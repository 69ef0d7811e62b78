"""LLM enrichment outside Dagster: what to (re)compute, the per-posting pipelines, the worker pool.

The assets in `ty_pipeline/assets/{summaries,skills,ihl}.py` are thin glue around this package, so the
logic can be tested and reused without a Dagster context.
"""
