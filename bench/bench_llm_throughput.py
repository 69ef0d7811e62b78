"""Benchmark of LLM throughput: today's three LLM assets vs the replaced chain (a script, not a test).

Both arms run against the same loopback fake Ollama with a token-proportional latency model
(`ty_pipeline_tests/fakes/llm_timing.py`): one host with `--slots` parallel slots (default 4), prefill
`--prefill-tps` (2,000) and decode `--decode-tps` (40) tokens/s per slot, optional prefix cache, all
durations multiplied by `--time-scale` (0.05: a modelled 8 s call takes 400 ms) so a run takes about a
minute. Figures are reported in modelled time.

* today: the real `posting_summaries`, `skill_keywords` and `ihl_scores` assets, materialized by
  Dagster one after another (as the `ollama` pool allows today) with their default run config
  (`workers=2`), over N postings of one partition in a SQLite warehouse. Calls per posting on the
  happy path: extract + 2 graders (in parallel) + skills + analyst + skeptic + HR expert = 7.
* replaced chain: a faithful sequential re-implementation of the legacy chain (docs/domain_rules.md
  §3.2, §4, §5): one `/api/generate` call at a time, free-text prompts, per posting extract -> grader B
  -> grader C -> format -> skills (the hybrid one-call extraction) -> IHL analyst -> skeptic -> HR
  expert: 8 calls on the happy path (graders pass, so no improve/regrade). Its graders did run in
  parallel in the original; this arm runs them one after the other as asked of the baseline ("one call
  at a time"), which costs it about one grader call (~3 % of its time) per posting.

The scripted model answers with realistic lengths, built from the posting (summary fields ~250 output
tokens, a passing grade ~10, skills ~150, each IHL role ~130-200; the legacy chain's free-text summary
~300, grade ~110, reformatted summary ~300, skills with reasoning ~400). Those lengths set decode time,
which dominates: change `ANSWER_*` below to try other assumptions.

Wall time is converted to modelled time as covered/scale + uncovered: while at least one call is in
flight the wall clock runs at model speed; gaps with no call in flight (Dagster step hand-over,
warehouse writes between postings, the client's own work) are real time and are not scaled up. The
window runs from the first to the last answer call of the arm (Dagster's start-up and the preflight
are left out). Saturation = modelled busy slot-seconds / (slots x modelled wall).

Usage: `python bench/bench_llm_throughput.py [--postings 40] [--slots 4] [--prefill-tps 2000]
[--decode-tps 40] [--time-scale 0.05] [--workers 2] [--prefix-cache 0] [--legacy-postings N]`.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from ty_pipeline.assets.ihl import ihl_scores  # noqa: E402
from ty_pipeline.assets.skills import skill_keywords  # noqa: E402
from ty_pipeline.assets.summaries import posting_summaries  # noqa: E402
from ty_pipeline.domain.description_status import DescriptionStatus  # noqa: E402
from ty_pipeline.domain.llm_hashing import location_text, posting_text  # noqa: E402
from ty_pipeline.domain.llm_selection import SUCCESS_STATUSES  # noqa: E402
from ty_pipeline.domain.posting_record import PostingRecord, Source  # noqa: E402
from ty_pipeline.resources.llm_scope import LlmScopeResource  # noqa: E402
from ty_pipeline.resources.ollama import OllamaResource  # noqa: E402
from ty_pipeline.resources.warehouse import WarehouseResource  # noqa: E402
from ty_pipeline.warehouse.descriptions_store import (  # noqa: E402
    DescriptionOutcome,
    PendingDescription,
    save_description,
)
from ty_pipeline.warehouse.engine import dispose_engine, ensure_schema, get_engine  # noqa: E402
from ty_pipeline.warehouse.llm_results_store import saved_rows  # noqa: E402
from ty_pipeline.warehouse.postings_store import upsert_postings  # noqa: E402
from ty_pipeline.warehouse.schema import ihl_scores as ihl_table  # noqa: E402
from ty_pipeline.warehouse.schema import posting_summaries as summaries_table  # noqa: E402
from ty_pipeline.warehouse.schema import postings  # noqa: E402
from ty_pipeline.warehouse.schema import skill_keywords as skills_table  # noqa: E402
from ty_pipeline_tests.fakes.http_base import Request  # noqa: E402
from ty_pipeline_tests.fakes.llm_timing import LlmTiming  # noqa: E402
from ty_pipeline_tests.fakes.ollama_server import DEFAULT_MODELS, FakeOllama  # noqa: E402
from ty_pipeline_tests.paths import FIXTURES_DIR  # noqa: E402

DAY = date(2026, 11, 18)
NOW = datetime(2026, 11, 18, 22, 0)
QWEN_LEGACY = "qwen2.5:7b"
MISTRAL = "mistral:latest"
GEMMA2 = "gemma2:latest"
MODELS = (*DEFAULT_MODELS, QWEN_LEGACY, MISTRAL, GEMMA2)
TODAY_CALLS = 7
LEGACY_CALLS = 8

# Target answer sizes in characters (4 characters = 1 token in the fake's tokenizer).
ANSWER_BULLET = 110  # one responsibility / requirement sentence
ANSWER_SKILLS = 14  # skill names in the skills answer
ANSWER_REASONING = 320  # an IHL role's reasoning text
LEGACY_GRADE = 440  # "[PASS]" plus the grader's explanation
LEGACY_SKILL_REASONING = 120  # per skill, in the hybrid extraction's JSON


# -- postings -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPosting:
    external_id: str
    title: str
    city: str | None
    state: str | None
    description: str


def bench_postings(n: int) -> list[BenchPosting]:
    """N postings from the 21 real Deutsche Bank fixtures; each copy gets its own reference line at the
    start of the text, so no two postings share a memoization hash or a long prompt prefix."""
    fixtures = sorted((FIXTURES_DIR / "deutsche_bank_postings").glob("job*.json"))
    out = []
    for i in range(n):
        fx = json.loads(fixtures[i % len(fixtures)].read_text("utf-8"))
        content = fx["job_content"]
        loc = content["location"]
        ref = f"R{1000 + i:05d}"
        out.append(BenchPosting(
            external_id=f"{fx['job_metadata']['job_id']}-{ref}",
            title=f"{html.unescape(content['title'])} ({ref})",
            city=loc.get("city"), state=loc.get("state") or None,
            description=f"Ausschreibung {ref}.\n{content['description']}",
        ))
    return out


def load_warehouse(url: str, items: list[BenchPosting]) -> None:
    engine = get_engine(url)
    ensure_schema(engine)
    records = [
        PostingRecord(source=Source.DEUTSCHE_BANK, external_id=p.external_id, title=p.title, employer="Deutsche Bank",
                      city=p.city, state=p.state, country="Deutschland", published_date=DAY, raw={"id": p.external_id})
        for p in items
    ]
    upsert_postings(engine, records, partition_date=DAY, now=NOW)
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.select(postings.c.external_id, postings.c.posting_id)).all())
    for p in items:
        pending = PendingDescription(ids[p.external_id], "deutsche_bank", p.external_id, "api", None, 0)
        save_description(engine, pending, DescriptionOutcome(status=DescriptionStatus.OK, description=p.description), NOW)


def legacy_text(p: BenchPosting) -> str:
    return posting_text(title=p.title, employer="Deutsche Bank", location=location_text(p.city, p.state, "Deutschland"),
                        description=p.description, max_description_chars=12000).text


# -- the scripted model ---------------------------------------------------------------------------------


def sentences(posting: str) -> list[str]:
    """Distinct sentences of the posting's description, trimmed to bullet size."""
    body = posting.split("Description:", 1)[-1]
    parts = [re.sub(r"\s+", " ", s).strip(" -•*\t") for s in re.split(r"(?<=[.!?])\s+|\n+", body)]
    seen: dict[str, None] = {}
    for s in parts:
        if len(s) >= 25 and s.casefold() not in {k.casefold() for k in seen}:
            seen[s[:ANSWER_BULLET].rsplit(" ", 1)[0] if len(s) > ANSWER_BULLET else s] = None
    found = list(seen)
    return found + FILLER_BULLETS[: max(0, 12 - len(found))]


# For very short postings: distinct sentences, so the answer does not look like a loop to the validators.
FILLER_BULLETS = [
    "Coordinate daily work with colleagues in the branch",
    "Prepare reports for the management team",
    "Advise clients on products and services",
    "Keep records complete and up to date",
    "Support projects across several departments",
    "Take part in internal training and certification",
    "Maintain contact with external partners",
    "Check documents against regulatory requirements",
    "Plan appointments and follow-up calls",
    "Contribute ideas to improve internal processes",
    "Represent the bank at local events",
    "Handle enquiries by phone and email",
]


def facts(posting: str) -> dict[str, str]:
    found = {}
    for line in posting.splitlines()[:4]:
        label, sep, value = line.partition(": ")
        if sep:
            found[label] = value
    return found


def skill_names(posting: str) -> list[str]:
    words = re.findall(r"\b[A-ZÄÖÜ][\wäöüß+#-]{3,}\b", posting.split("Description:", 1)[-1])
    names = list(dict.fromkeys(words))[: ANSWER_SKILLS]
    return names or ["Kommunikation"]


def summary_fields(posting: str) -> dict[str, Any]:
    f, s = facts(posting), sentences(posting)
    return {"role": f.get("Title", "Role"), "company": f.get("Employer", "Deutsche Bank"),
            "location": f.get("Location", "Frankfurt"), "job_id": None,
            "responsibilities": s[0:4], "requirements": s[4:8], "details": s[8:10]}


def ihl_answers(posting: str) -> dict[str, dict[str, Any]]:
    s = sentences(posting)
    reason = (" ".join(s[1:4]))[:ANSWER_REASONING]
    flag = {"flag": "Very specific combination of requirements", "evidence": s[4][:80], "severity": "LOW"}
    return {
        "AnalystOutput": {"analyst_verdict": "GENUINE", "suggested_ihl_score": 3, "red_flags": [flag],
                          "reasoning": f"Ordinary requirements for the role. {reason}"},
        "SkepticOutput": {"skeptic_verdict": "GENUINE", "suggested_ihl_score": 2,
                          "counter_arguments": [{"analyst_flag": flag["flag"], "counter_evidence": s[5][:100],
                                                 "severity_downgrade": "Common for this kind of role in banking."}],
                          "reasoning": f"Clear duties and a named team suggest a real opening. {reason}"},
        "HRExpertOutput": {"ihl_score": 2, "verdict": "GENUINE", "confidence": "MEDIUM", "red_flags": [flag],
                           "candidate_pool_estimate": "LARGE (1000+)", "recommendation": "APPLY",
                           "reasoning": f"Both sides agree the requirements are ordinary for the role. {reason}"},
    }


def section(text: str, tag: str) -> str:
    start, end = f"<{tag}>\n", f"\n</{tag}>"
    return text.split(start, 1)[1].split(end, 1)[0] if start in text else text


def today_answer(body: dict[str, Any]) -> dict[str, Any]:
    # Wherever the prompt layout puts the posting (first message since the prefix-cache layout).
    shown = "\n".join(m["content"] for m in body["messages"])
    posting = section(shown, "posting")
    kind = body["format"]["title"]
    if kind == "SummaryFields":
        return summary_fields(posting)
    if kind == "Grade":
        return {"verdict": "PASS", "reasons": []}
    if kind == "SkillList":
        return {"skills": [{"name": n, "importance": "important" if i > 3 else "essential"}
                           for i, n in enumerate(skill_names(posting))]}
    return ihl_answers(posting)[kind]


# The replaced chain's prompts (intent restated from docs/domain_rules.md §3.2, §4.2, §5; the posting and
# earlier outputs follow the instructions, as in the original templates).
LEGACY_PROMPTS = {
    "extract": "Summarise the job posting below into this template. Extract only what the posting states; "
    "add nothing.\nRole:\nCompany:\nLocation:\nJob ID:\nKey Responsibilities: 3 to 5 bullets\nRequirements: 3 to 5 "
    "bullets\nDetails:\n\nPOSTING:\n{posting}",
    "grade": "Compare the summary with the original posting. Check accuracy (nothing invented), completeness "
    "and compliance with the template. Start your answer with [PASS] or [FAIL], then give your reasoning.\n\n"
    "ORIGINAL POSTING:\n{posting}\n\nSUMMARY:\n{summary}",
    "format": "Standardise the format of this job summary: remove code fences, keep exactly the seven headers "
    "Role, Company, Location, Job ID, Key Responsibilities, Requirements, Details in this order, merge any "
    "other section into them, use '- ' bullets, no nesting, no blank lines, plain text only.\n\n{summary}",
    "skills": "Extract every skill from this job summary. Answer with a bare JSON array of objects with the keys "
    "skill, importance (essential, critical, important, preferred), weight (10-100), proficiency (expert, "
    "advanced, intermediate, beginner), years_required (0 if not stated) and reasoning.\n\n{summary}",
    "analyst": "You are an analyst. Look for real red flags that this posting is pre-wired for an internal or "
    "pre-selected candidate: oddly exact years on niche stacks, internal systems, CV-like specificity, an "
    "impossibly narrow pool, contradictions. Ordinary stacks and titles are not red flags. Answer JSON with "
    "analyst_verdict, suggested_ihl_score, red_flags and reasoning.\n\nPOSTING:\n{posting}",
    "skeptic": "You are the devil's advocate. Argue that this job is genuine: industry norms, a company that "
    "knows what it wants, signs of a real opening. Answer JSON with skeptic_verdict, suggested_ihl_score, "
    "counter_arguments and reasoning.\n\nPOSTING:\n{posting}\n\nANALYST:\n{analyst}",
    "hr_expert": "You are an HR expert with 20 years of experience. Weigh the analyst and the skeptic fairly "
    "and give the final Internal Hire Likelihood. Answer JSON with ihl_score (0-10), verdict, confidence, "
    "red_flags, candidate_pool_estimate, recommendation and reasoning.\n\nPOSTING:\n{posting}\n\nANALYST:\n"
    "{analyst}\n\nSKEPTIC:\n{skeptic}",
}
LEGACY_HEADS = {step: template.split("{", 1)[0][:60] for step, template in LEGACY_PROMPTS.items()}


def legacy_summary(posting: str) -> str:
    f, s = facts(posting), sentences(posting)
    lines = [f"**Role:** {f.get('Title')}", f"**Company:** {f.get('Employer')}", f"**Location:** {f.get('Location')}",
             "**Job ID:** not stated", "**Key Responsibilities:**", *[f"- {x}" for x in s[0:5]],
             "**Requirements:**", *[f"- {x}" for x in s[5:10]], "**Details:**", *[f"- {x}" for x in s[10:12]]]
    return "\n".join(lines)


def legacy_answer(body: dict[str, Any]) -> str:
    prompt = body["prompt"]
    step = next(s for s, head in LEGACY_HEADS.items() if prompt.startswith(head))
    # The posting follows "POSTING:"; the format and skills steps see only the summary, after the instructions.
    posting = prompt.split("POSTING:\n", 1)[-1].split("\n\nSUMMARY:", 1)[0].split("\n\nANALYST:", 1)[0]
    summary = prompt.split("\n\n", 1)[-1]
    if step == "extract":
        return legacy_summary(posting)
    if step == "format":
        return summary.replace("**", "")
    if step == "grade":
        return ("[PASS]\nThe summary states only facts of the posting; role, company and location match, the "
                "responsibilities and requirements are taken from the text and the template is followed. "
                + " ".join(sentences(posting)[:3]))[:LEGACY_GRADE]
    if step == "skills":
        return json.dumps([{"skill": n, "importance": "important", "weight": 60, "proficiency": "intermediate",
                            "years_required": 0, "reasoning": ("Named in the summary as " + n + ". " +
                                                               "The role needs it day to day. " * 4)[:LEGACY_SKILL_REASONING]}
                           for n in skill_names(summary)[:10]], ensure_ascii=False)
    role = {"analyst": "AnalystOutput", "skeptic": "SkepticOutput", "hr_expert": "HRExpertOutput"}[step]
    return json.dumps(ihl_answers(posting)[role], ensure_ascii=False)


def responder(model: str, body: dict[str, Any]) -> Any:
    return today_answer(body) if isinstance(body.get("format"), dict) else legacy_answer(body)


# -- the replaced chain ---------------------------------------------------------------------------------


class LegacyChain:
    """One posting after the other, one call at a time, free text over `/api/generate` (as after ADR-013:
    HTTP, temperature 0, seed 42, no `format`)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.session = requests.Session()
        self.calls = 0

    def generate(self, model: str, step: str, **values: str) -> str:
        body = {"model": model, "prompt": LEGACY_PROMPTS[step].format(**values), "stream": False,
                "options": {"temperature": 0, "seed": 42}}
        resp = self.session.post(f"{self.host}/api/generate", json=body, timeout=600)
        resp.raise_for_status()
        self.calls += 1
        return resp.json()["response"]

    def run(self, posting: str) -> dict[str, Any]:
        summary = self.generate(QWEN_LEGACY, "extract", posting=posting)
        verdict_b = self.generate(MISTRAL, "grade", posting=posting, summary=summary)
        verdict_c = self.generate(QWEN_LEGACY, "grade", posting=posting, summary=summary)
        if not verdict_c.startswith("[PASS]"):
            raise RuntimeError("the benchmark scripts passing grades; the improve loop is not modelled")
        formatted = self.generate(QWEN_LEGACY, "format", summary=summary)
        skills = self.generate(QWEN_LEGACY, "skills", summary=formatted)
        analyst = self.generate(QWEN_LEGACY, "analyst", posting=posting)
        skeptic = self.generate(MISTRAL, "skeptic", posting=posting, analyst=analyst)
        expert = self.generate(QWEN_LEGACY, "hr_expert", posting=posting, analyst=analyst, skeptic=skeptic)
        return {"summary": formatted, "grades": [verdict_b, verdict_c], "skills": skills, "ihl": expert}


# -- measuring ------------------------------------------------------------------------------------------


@dataclass
class ArmResult:
    name: str
    postings: int
    calls: int
    wall_real_s: float
    uncovered_real_s: float
    modelled_wall_s: float
    busy_s: float
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    slots: int

    @property
    def calls_per_posting(self) -> float:
        return self.calls / self.postings

    @property
    def saturation(self) -> float:
        return self.busy_s / (self.slots * self.modelled_wall_s)

    @property
    def postings_per_hour(self) -> float:
        return self.postings / self.modelled_wall_s * 3600


def modelled_window(answer_calls: list[Request], scale: float) -> tuple[float, float, float, float]:
    """(start, end, uncovered real s, modelled s) of the calls' window: time with a call in flight counts
    at model speed (divided by the scale), time without one as it is (see the module docstring)."""
    spans = sorted((r.started, r.ended) for r in answer_calls if r.ended is not None)
    start, end = spans[0][0], max(e for _, e in spans)
    covered, cur_start, cur_end = 0.0, spans[0][0], spans[0][1]
    for s, e in spans[1:]:
        if s > cur_end:
            covered += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    covered += cur_end - cur_start
    wall = end - start
    return start, end, wall - covered, covered / scale + (wall - covered)


def measure(name: str, postings: int, answer_calls: list[Request], timing: LlmTiming) -> ArmResult:
    start, end, uncovered, modelled = modelled_window(answer_calls, timing.time_scale)
    totals = timing.totals()
    return ArmResult(
        name=name, postings=postings, calls=len(answer_calls), wall_real_s=end - start, uncovered_real_s=uncovered,
        modelled_wall_s=modelled, busy_s=totals.busy_s, prompt_tokens=totals.prompt_tokens,
        cached_tokens=totals.cached_tokens, output_tokens=totals.output_tokens, slots=timing.slots,
    )


ASSET_OF_SCHEMA = {"SummaryFields": "posting_summaries", "Grade": "posting_summaries", "SkillList": "skill_keywords",
                   "AnalystOutput": "ihl_scores", "SkepticOutput": "ihl_scores", "HRExpertOutput": "ihl_scores"}


def per_asset(calls: list[Request], timing: LlmTiming, postings: int) -> list[str]:
    """Calls per posting and saturation of each asset over its own window (the assets run one after the
    other, so the windows do not overlap)."""
    lines = []
    for asset in dict.fromkeys(ASSET_OF_SCHEMA.values()):
        mine = [r for r in calls if ASSET_OF_SCHEMA.get(r.json()["format"]["title"]) == asset and r.ended is not None]
        if not mine:
            continue
        start, end, _, modelled = modelled_window(mine, timing.time_scale)
        busy = sum(c.busy_s for c in timing.calls if start <= c.started_real <= end)
        lines.append(f"  {asset}: {len(mine) / postings:.2f} calls/posting, saturation "
                     f"{busy / (timing.slots * modelled):.2f}, {modelled / postings:.1f} modelled s/posting")
    return lines


def run_today(fake: FakeOllama, timing: LlmTiming, items: list[BenchPosting], workers: int) -> ArmResult:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite"
        load_warehouse(url, items)
        resources = {
            "warehouse": WarehouseResource(url=url),
            # Today's resource; the read timeout is raised only because calls queue behind full slots.
            "ollama": OllamaResource(host=fake.base_url, read_timeout_s=600.0),
            "llm_scope": LlmScopeResource(max_postings=0),
        }
        config = {"ops": {name: {"config": {"workers": workers}}
                          for name in ("posting_summaries", "skill_keywords", "ihl_scores")},
                  "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        fake.requests.clear()
        timing.reset()
        result = dg.materialize([posting_summaries, skill_keywords, ihl_scores], partition_key=DAY.isoformat(),
                                resources=resources, run_config=config, raise_on_error=False)
        if not result.success:
            raise SystemExit(f"today's assets failed: {[e.event_specific_data for e in result.all_events if e.is_failure]}")
        engine = get_engine(url)
        for table in (summaries_table, skills_table, ihl_table):
            statuses = [r["status"] for r in saved_rows(engine, table, DAY)]
            if len(statuses) != len(items) or set(statuses) - SUCCESS_STATUSES:
                raise SystemExit(f"{table.name}: not every posting succeeded: {sorted(set(statuses))}")
        dispose_engine(url)
        calls = fake.calls("/api/chat")
        print("today, per asset:", *per_asset(calls, timing, len(items)), sep="\n")
        return measure("today's three assets", len(items), calls, timing)


def run_legacy(fake: FakeOllama, timing: LlmTiming, items: list[BenchPosting]) -> ArmResult:
    fake.requests.clear()
    timing.reset()
    chain = LegacyChain(fake.base_url)
    for p in items:
        chain.run(legacy_text(p))
    return measure("replaced chain, sequential", len(items), fake.calls("/api/generate"), timing)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--postings", type=int, default=40)
    parser.add_argument("--legacy-postings", type=int, default=None,
                        help="default: --postings / 4 (one call at a time: its rate is steady from the first posting)")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--prefill-tps", type=float, default=2000.0)
    parser.add_argument("--decode-tps", type=float, default=40.0)
    parser.add_argument("--time-scale", type=float, default=0.05,
                        help="real s per modelled s; smaller runs faster but counts real overheads more")
    parser.add_argument("--workers", type=int, default=2, help="the assets' `workers` run config (today: 2)")
    parser.add_argument("--prefix-cache", type=int, default=0, help="prompts remembered by the fake (0 = off)")
    args = parser.parse_args(argv)
    logging.getLogger("dagster").setLevel(logging.WARNING)

    timing = LlmTiming(slots=args.slots, prefill_tps=args.prefill_tps, decode_tps=args.decode_tps,
                       time_scale=args.time_scale, prefix_cache_entries=args.prefix_cache)
    items = bench_postings(args.postings)
    legacy_n = args.legacy_postings or max(1, args.postings // 4)
    print(f"1 host x {args.slots} slots, prefill {args.prefill_tps:,.0f} tok/s, decode {args.decode_tps:,.0f} tok/s "
          f"per slot, prefix cache {args.prefix_cache or 'off'}, time scale {args.time_scale}; "
          f"{args.postings} postings today, {legacy_n} through the replaced chain")
    started = time.monotonic()
    with FakeOllama(models=MODELS, responder=responder, timing=timing) as fake:
        today = run_today(fake, timing, items, args.workers)
        legacy = run_legacy(fake, timing, bench_postings(legacy_n))
    print(f"(benchmark took {time.monotonic() - started:.0f} s of real time)\n")

    header = ("| arm | postings | calls/posting | saturation | postings/hour | modelled s/posting | prompt tok/posting "
              "| cached | output tok/posting | idle gaps (real s) |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for arm in (today, legacy):
        print(f"| {arm.name} | {arm.postings} | {arm.calls_per_posting:.2f} | {arm.saturation:.2f} | "
              f"{arm.postings_per_hour:,.0f} | {arm.modelled_wall_s / arm.postings:.1f} | "
              f"{arm.prompt_tokens / arm.postings:,.0f} | {arm.cached_tokens / arm.postings:,.0f} | "
              f"{arm.output_tokens / arm.postings:,.0f} | {arm.uncovered_real_s:.2f} |")
    print(f"\nratio today / replaced chain (postings/hour): {today.postings_per_hour / legacy.postings_per_hour:.2f}x")
    print(f"slot-seconds per posting: today {today.busy_s / today.postings:.1f}, "
          f"replaced chain {legacy.busy_s / legacy.postings:.1f}")
    print(f"ceiling at saturation 1.0 with today's calls: {3600 * args.slots / (today.busy_s / today.postings):,.0f} "
          "postings/hour")


if __name__ == "__main__":
    main()
