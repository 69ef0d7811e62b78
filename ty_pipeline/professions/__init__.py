"""Mapping posting titles to professions, outside Dagster: statuses, thresholds, matching, the stage pipeline.

The assets in `ty_pipeline/assets/berufenet_*.py` and `profession_similarity.py` are thin glue around this
package; the benchmark in `bench/bench_berufenet.py` runs the same pipeline on an in-memory catalog.
"""
