"""Benchmark of LLM throughput: the `llm_enrichment` step vs the replaced chain (a script, not a test).

Every arm runs against loopback fake servers with a token-proportional latency model
(`ty_pipeline_tests/fakes/llm_timing.py`): each host has `slots` parallel slots, prefill `--prefill-tps`
(2,000) and decode `--decode-tps` (40) tokens/s per slot, an optional prefix cache, all durations
multiplied by a time scale (a modelled 8 s call takes 8 x scale real seconds). Figures are reported in
modelled time. The fakes run in this process; the step runs in a child process (`--child`), as Dagster
would run it, so the servers' and the client's Python do not share a GIL.

* today: the real `llm_enrichment` multi-asset (summaries, skills, IHL as lanes over one host pool)
  materialized by Dagster over N postings of one partition in a SQLite warehouse, on each host layout of
  `--layouts` (default `1x4,1x32,2x32`: hosts x slots) and each backend of `--backends` (`ollama`: the
  fake Ollama's `/api/chat`; `openai`: the fake OpenAI-compatible `/v1/chat/completions`). Calls per
  posting on the happy path: extract + 2 graders + skills + analyst + skeptic + HR expert = 7.
* replaced chain: a faithful sequential re-implementation of the legacy chain (docs/domain_rules.md
  §3.2, §4, §5): one `/api/generate` call at a time, free-text prompts, per posting extract -> grader B
  -> grader C -> format -> skills -> IHL analyst -> skeptic -> HR expert: 8 calls on the happy path.
* kill: 2 hosts x 32, the first dies (drops every connection) after half its expected calls; every
  posting must still be saved at its first attempt (nothing charged, nothing deferred) and the run
  finishes on the other host.
* prefix: the 1x32 layout again with a prefix cache on the fake (`4 x slots` remembered prompts): the
  share of prompt tokens the server did not have to prefill.
* memory: `--rss-postings` (default 5,000) postings through 2x32 slots with no latency; the child's peak
  RSS (`ru_maxrss`).

The scripted model answers with realistic lengths, built from the posting (summary fields ~250 output
tokens, a passing grade ~10, skills ~150, each IHL role ~130-200; the legacy chain's free-text summary
~300, grade ~110, reformatted summary ~300, skills with reasoning ~400). Those lengths set decode time,
which dominates: change `ANSWER_*` below to try other assumptions.

Saturation = busy slot-seconds / (slots x window). "steady" is measured from the first call to the start
of the last call (the drain after the queue is empty is left out); "all" over the whole window. Wall
time is converted to modelled time as covered/scale + uncovered: while at least one call is in flight
the clock runs at model speed; gaps with no call in flight are real time and are not scaled up.

Usage: `python bench/bench_llm_throughput.py [--postings 240] [--layouts 1x4,1x32,2x32]
[--backends ollama,openai] [--legacy-postings 12] [--rss-postings 5000] [--skip kill,prefix,rss]`.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import resource
import subprocess
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

from ty_pipeline.domain.description_status import DescriptionStatus  # noqa: E402
from ty_pipeline.domain.llm_hashing import location_text, posting_text  # noqa: E402
from ty_pipeline.domain.llm_selection import SUCCESS_STATUSES  # noqa: E402
from ty_pipeline.domain.posting_record import PostingRecord, Source  # noqa: E402
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
from ty_pipeline_tests.fakes.http_base import LoopbackServer, Request  # noqa: E402
from ty_pipeline_tests.fakes.llm_timing import LlmTiming  # noqa: E402
from ty_pipeline_tests.fakes.ollama_server import DEFAULT_MODELS, FakeOllama  # noqa: E402
from ty_pipeline_tests.fakes.openai_server import FakeOpenAI, request_schema  # noqa: E402
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
    kind = (request_schema(body) or {}).get("title")
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
    return today_answer(body) if request_schema(body) is not None else legacy_answer(body)


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

CHAT_PATHS = ("/api/chat", "/v1/chat/completions")


@dataclass
class Server:
    fake: LoopbackServer
    timing: LlmTiming


@dataclass
class ArmResult:
    name: str
    postings: int
    calls: int
    slots: int
    wall_real_s: float
    uncovered_real_s: float
    modelled_wall_s: float
    busy_s: float
    steady_saturation: float
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    rss_mb: float | None = None

    @property
    def calls_per_posting(self) -> float:
        return self.calls / self.postings

    @property
    def saturation(self) -> float:
        return self.busy_s / (self.slots * self.modelled_wall_s)

    @property
    def postings_per_hour(self) -> float:
        return self.postings / self.modelled_wall_s * 3600

    @property
    def slot_s_per_posting(self) -> float:
        return self.busy_s / self.postings


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
    modelled = covered / scale + (wall - covered) if scale > 0 else wall  # scale 0: no modelled latency
    return start, end, wall - covered, modelled


def steady_saturation(servers: list[Server]) -> float:
    """Busy slot time over [first call, start of the last call], from the servers' own slot intervals."""
    calls = [c for s in servers for c in s.timing.calls]
    t0 = min(c.started_real for c in calls)
    t1 = max(c.started_real for c in calls)
    if t1 <= t0:
        return 0.0
    busy = sum(max(0.0, min(c.ended_real, t1) - max(c.started_real, t0)) for c in calls)
    return busy / (sum(s.timing.slots for s in servers) * (t1 - t0))


def answer_calls(servers: list[Server], paths: tuple[str, ...] = CHAT_PATHS) -> list[Request]:
    return [r for s in servers for r in s.fake.requests if r.path in paths and r.ended is not None]


def measure(name: str, postings: int, servers: list[Server], paths: tuple[str, ...] = CHAT_PATHS) -> ArmResult:
    scale = servers[0].timing.time_scale
    start, end, uncovered, modelled = modelled_window(answer_calls(servers, paths), scale)
    totals = [s.timing.totals() for s in servers]  # calls the servers answered (a dropped one is not)
    return ArmResult(
        name=name, postings=postings, calls=sum(t.calls for t in totals), slots=sum(s.timing.slots for s in servers),
        wall_real_s=end - start, uncovered_real_s=uncovered, modelled_wall_s=modelled,
        busy_s=sum(t.busy_s for t in totals), steady_saturation=steady_saturation(servers),
        prompt_tokens=sum(t.prompt_tokens for t in totals), cached_tokens=sum(t.cached_tokens for t in totals),
        output_tokens=sum(t.output_tokens for t in totals),
    )


# -- running the step in a child process ------------------------------------------------------------------


def child(spec_path: str) -> None:
    """`--child SPEC`: materialize `llm_enrichment` for DAY as the spec says; write the outcome as JSON."""
    import dagster as dg

    from ty_pipeline.assets.llm_enrichment import llm_enrichment
    from ty_pipeline.resources.llm_scope import LlmScopeResource
    from ty_pipeline.resources.ollama import OllamaResource
    from ty_pipeline.resources.warehouse import WarehouseResource

    spec = json.loads(Path(spec_path).read_text("utf-8"))
    llm: dict[str, Any] = {"host": spec["hosts"].split(",")[0].split("=")[0], "hosts": spec["hosts"],
                           "read_timeout_s": 600.0}
    if spec["backend"] != "ollama":
        llm["backend"] = spec["backend"]
    resources = {
        "warehouse": WarehouseResource(url=spec["url"]),
        "ollama": OllamaResource(**llm),
        "llm_scope": LlmScopeResource(sources="deutsche_bank", max_postings=0),
    }
    run_config = {"ops": {"llm_enrichment": {"config": {}}}, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = dg.materialize([llm_enrichment], partition_key=DAY.isoformat(), resources=resources,
                            run_config=run_config, raise_on_error=False)
    metadata = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        metadata[mat.asset_key.path[-1]] = {k: v.value for k, v in mat.metadata.items() if k != "llm_hosts"}
    out = {
        "success": result.success,
        "errors": [str(e.event_specific_data)[:500] for e in result.all_events if e.is_failure],
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "metadata": metadata,
    }
    Path(spec["out"]).write_text(json.dumps(out, default=str), "utf-8")


def run_step(url: str, hosts: str, backend: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({"url": url, "hosts": hosts, "backend": backend, "out": str(out)}), "utf-8")
        env = {**os.environ, "DAGSTER_HOME": tmp, "HF_HUB_OFFLINE": "1"}
        env.pop("TY_LLM_HOSTS", None)
        done = subprocess.run([sys.executable, __file__, "--child", str(spec)], env=env, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise SystemExit(f"the child run failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text("utf-8"))


def check_saved(url: str, n: int, *, first_attempt: bool = False) -> None:
    engine = get_engine(url)
    for table in (summaries_table, skills_table, ihl_table):
        rows = saved_rows(engine, table, DAY)
        statuses = {r["status"] for r in rows}
        if len(rows) != n or statuses - SUCCESS_STATUSES:
            raise SystemExit(f"{table.name}: {len(rows)} of {n} saved, statuses {sorted(statuses)}")
        if first_attempt and {r["attempts"] for r in rows} != {1}:
            raise SystemExit(f"{table.name}: some posting was charged more than one attempt")
    dispose_engine(url)


def start_servers(backend: str, hosts: int, slots: int, timing_args: dict[str, Any]) -> list[Server]:
    servers = []
    for _ in range(hosts):
        timing = LlmTiming(slots=slots, **timing_args)
        fake: LoopbackServer
        if backend == "openai":
            fake = FakeOpenAI(models=MODELS, responder=responder, timing=timing)
        else:
            fake = FakeOllama(models=MODELS, responder=responder, timing=timing)
        fake.start()
        servers.append(Server(fake, timing))
    return servers


def host_list(servers: list[Server]) -> str:
    return ",".join(f"{s.fake.base_url}={s.timing.slots}" for s in servers)


def run_today(backend: str, hosts: int, slots: int, items: list[BenchPosting], timing_args: dict[str, Any],
              *, kill_first_after: int | None = None, name: str | None = None) -> tuple[ArmResult, dict[str, Any]]:
    servers = start_servers(backend, hosts, slots, timing_args)
    try:
        if kill_first_after is not None:
            servers[0].fake.stop_after(kill_first_after)
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.sqlite"
            load_warehouse(url, items)
            for s in servers:
                s.fake.requests.clear()
                s.timing.reset()
            outcome = run_step(url, host_list(servers), backend)
            if not outcome["success"]:
                raise SystemExit(f"the step failed: {outcome['errors']}")
            check_saved(url, len(items), first_attempt=kill_first_after is not None)
        arm = measure(name or f"{backend} {hosts}x{slots}", len(items), servers)
        arm.rss_mb = outcome["rss_mb"]
        return arm, outcome
    finally:
        for s in servers:
            s.fake.stop()


def run_legacy(items: list[BenchPosting], timing_args: dict[str, Any]) -> ArmResult:
    (server,) = start_servers("ollama", 1, 1, timing_args)
    try:
        chain = LegacyChain(server.fake.base_url)
        for p in items:
            chain.run(legacy_text(p))
        return measure("replaced chain, sequential", len(items), [server], ("/api/generate",))
    finally:
        server.fake.stop()


def auto_scale(total_slots: int) -> float:
    """Real seconds per modelled second: slower for many slots, so the loopback client and servers (one
    machine, Python) are never the bottleneck the modelled GPU would not have."""
    return max(0.05, total_slots / 200)


HEADER = ("| arm | postings | calls/posting | saturation steady (all) | postings/hour | x replaced chain | "
          "slot-s/posting | prompt tok/posting | cached | peak RSS MiB |")


def row(arm: ArmResult, legacy: ArmResult) -> str:
    ratio = arm.postings_per_hour / legacy.postings_per_hour
    rss = f"{arm.rss_mb:,.0f}" if arm.rss_mb else "-"
    return (f"| {arm.name} | {arm.postings} | {arm.calls_per_posting:.2f} | {arm.steady_saturation:.2f} "
            f"({arm.saturation:.2f}) | {arm.postings_per_hour:,.0f} | {ratio:.1f}x | {arm.slot_s_per_posting:.1f} | "
            f"{arm.prompt_tokens / arm.postings:,.0f} | {arm.cached_tokens / max(arm.prompt_tokens, 1):.0%} | {rss} |")


def table(arms: list[ArmResult], legacy: ArmResult) -> None:
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for arm in [*arms, legacy]:
        print(row(arm, legacy))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--postings", type=int, default=240)
    parser.add_argument("--layouts", default="1x4,1x32,2x32", help="hosts x slots, comma separated")
    parser.add_argument("--backends", default="ollama,openai")
    parser.add_argument("--legacy-postings", type=int, default=12)
    parser.add_argument("--rss-postings", type=int, default=5000)
    parser.add_argument("--prefill-tps", type=float, default=2000.0)
    parser.add_argument("--decode-tps", type=float, default=40.0)
    parser.add_argument("--skip", default="", help="comma list of: kill, prefix, rss, legacy")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    skip = set(filter(None, args.skip.split(",")))
    rates = {"prefill_tps": args.prefill_tps, "decode_tps": args.decode_tps}
    layouts = [tuple(int(x) for x in layout.split("x")) for layout in args.layouts.split(",") if layout]
    backends = args.backends.split(",")
    items = bench_postings(args.postings)
    started = time.monotonic()
    print(f"prefill {args.prefill_tps:,.0f} tok/s, decode {args.decode_tps:,.0f} tok/s per slot; {args.postings} "
          f"postings per arm, {args.legacy_postings} through the replaced chain")

    legacy = run_legacy(bench_postings(args.legacy_postings), {**rates, "time_scale": 0.05})
    arms: dict[tuple[str, int, int], ArmResult] = {}
    for backend in backends:
        for hosts, slots in layouts:
            scale = auto_scale(hosts * slots)
            arm, _ = run_today(backend, hosts, slots, items, {**rates, "time_scale": scale})
            arms[(backend, hosts, slots)] = arm
            print(f"  {arm.name}: done at time scale {scale} ({time.monotonic() - started:.0f} s so far)\n  {row(arm, legacy)}",
                  flush=True)
    extra: list[ArmResult] = []
    if "prefix" not in skip:
        hosts, slots = (1, 32)
        arm, _ = run_today(backends[0], hosts, slots, items, {**rates, "time_scale": auto_scale(32),
                                                               "prefix_cache_entries": 4 * slots},
                           name=f"{backends[0]} 1x32, prefix cache")
        extra.append(arm)
        print(f"  {row(arm, legacy)}", flush=True)
    if "kill" not in skip:
        expected_first = 7 * len(items) // 2
        arm, outcome = run_today(backends[0], 2, 32, items, {**rates, "time_scale": auto_scale(64)},
                                 kill_first_after=expected_first // 2, name=f"{backends[0]} 2x32, host 1 killed halfway")
        meta = outcome["metadata"]["ihl_scores"]
        print(f"  kill: every posting saved at attempt 1; server_errors {meta['server_errors']}, pending "
              f"{meta['pending']}")
        extra.append(arm)
        print(f"  {row(arm, legacy)}", flush=True)
    if "rss" not in skip and args.rss_postings:
        fast = {"prefill_tps": 1e9, "decode_tps": 1e6, "time_scale": 0.0}
        arm, _ = run_today(backends[0], 2, 32, bench_postings(args.rss_postings), fast,
                           name=f"{backends[0]} 2x32, {args.rss_postings} postings, no latency")
        extra.append(arm)
    print(f"(benchmark took {time.monotonic() - started:.0f} s of real time)\n")

    table([*arms.values(), *extra], legacy)
    for backend in backends:
        one, two = arms.get((backend, 1, 32)), arms.get((backend, 2, 32))
        if one and two:
            print(f"\n{backend}: 2 hosts x 32 deliver {two.postings_per_hour / one.postings_per_hour:.2f}x one host x 32")
    print(f"\nslot-seconds per posting: replaced chain {legacy.slot_s_per_posting:.1f}; the ceiling of the ratio to "
          f"the replaced chain is saturation x slots x {legacy.slot_s_per_posting:.1f} / (today's slot-s per posting)")


if __name__ == "__main__":
    main()
