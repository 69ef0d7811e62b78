"""HTTP clients and text encoders: Dagster-free; the resources in `ty_pipeline.resources` build them."""
