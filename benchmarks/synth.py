"""Realistic synthetic study records for benchmarks (never for the knowledge base itself).

Each record has an abstract of about 250 words drawn from the bundled records' own prose with
its real word frequencies (a Zipf-like vocabulary of ~2,000 words), the real vocabularies,
two to four outcomes with arm-level data, sources and verification lists,
so that parsing and validation cost what real records cost. Every record is
marked synthetic in its title and notes.

    python -m benchmarks.synth 10000 --out benchmarks/out/synth-10000
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from kb.vocab import load_vocabulary

def _prose_words() -> tuple[list[str], list[int]]:
    """Words of the bundled records' prose, with their frequencies: a Zipf-like vocabulary, so that
    common words are common and most are rare, as in real abstracts."""
    import collections
    import re

    import yaml

    counts: collections.Counter = collections.Counter()
    for path in (Path(__file__).resolve().parent.parent / "studies").glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        texts = [data.get(k) or "" for k in ("title", "key_finding", "population", "primary_outcome", "notes")]
        texts += data.get("results") or []
        texts += [o.get("result") or "" for o in data.get("outcomes") or []]
        counts.update(w.lower() for t in texts for w in re.findall(r"[A-Za-z][A-Za-z\-]+", t))
    return list(counts), list(counts.values())


WORDS = (
    "ketamine infusion depression treatment resistant patients randomized placebo midazolam saline response remission "
    "symptoms scale baseline hours days week weeks follow-up dissociation blood pressure nausea adverse events "
    "suicidal ideation rapid antidepressant effect durable relapse maintenance repeated dose mg kg intravenous "
    "participants trial outcome primary secondary significant reduction improvement clinical sample analysis "
    "meta-analysis heterogeneity confidence interval risk ratio standardized mean difference anxiety PTSD bipolar "
    "chronic pain neuropathic fibromyalgia CRPS esketamine racemic comparator ECT safety tolerability"
).split()
SURNAMES = ("Smith Garcia Chen Okafor Novak Rossi Tanaka Kowalski Haddad Silva Murphy Jensen Ivanova Kim Patel "
            "Dubois Costa Nguyen Schmidt Larsen Ahmed Moreau Fischer Ortiz").split()


_VOCAB: tuple[list[str], list[int]] | None = None


def vocabulary() -> tuple[list[str], list[int]]:
    global _VOCAB
    if _VOCAB is None:
        words, weights = _prose_words()
        _VOCAB = (words, weights) if len(words) > 500 else (list(WORDS), [1] * len(WORDS))
    return _VOCAB


def _sentence(rng: random.Random, n: int) -> str:
    words, weights = vocabulary()
    return " ".join(rng.choices(words, weights, k=n)).capitalize() + "."


def q(text: str) -> str:
    """A YAML single-quoted scalar (any word stays text: no, null, true...)."""
    return "'" + text.replace("'", "''") + "'"


def _abstract(rng: random.Random) -> str:
    parts = []
    for head in ("Background", "Methods", "Results", "Conclusions"):
        parts.append(f"{head}: " + " ".join(_sentence(rng, rng.randint(12, 22)) for _ in range(rng.randint(2, 4))))
    return "\n".join(parts)


def record(i: int, rng: random.Random, vocab) -> tuple[str, str]:
    surname = rng.choice(SURNAMES)
    year = rng.randint(1995, 2025)
    rid = f"{surname.lower()}-{year}-{i:06d}"
    rid = f"{surname.lower()}{i:06d}-{year}"
    design = rng.choice(["rct", "rct", "crossover-rct", "open-label", "cohort", "meta-analysis"])
    conds = rng.sample(vocab.terms("condition")[:7], rng.randint(1, 2))
    n_rand = rng.randint(20, 400)
    outcomes = []
    terms = [t for t in vocab.terms("outcome") if not vocab.replaced_by("outcome", t)]  # no deprecated term
    # instruments that score the same way, so that any two can pool (kb refuses instruments that disagree)
    instruments = [t for t in vocab.terms("instrument") if vocab.meaning("instrument", t).get("better") != "higher"]
    for _ in range(rng.randint(2, 4)):
        kind = rng.choice(["binary", "binary", "continuous"])
        half = n_rand // 2
        if kind == "binary":
            arms = (f"    - {{label: ketamine, events: {rng.randint(0, half)}, total: {half}}}\n"
                    f"    - {{label: control, events: {rng.randint(0, half)}, total: {half}}}\n")
        else:
            arms = (f"    - {{label: ketamine, mean: {rng.uniform(-20, 0):.1f}, sd: {rng.uniform(4, 12):.1f}, n: {half}}}\n"
                    f"    - {{label: control, mean: {rng.uniform(-12, 0):.1f}, sd: {rng.uniform(4, 12):.1f}, n: {half}}}\n")
        outcomes.append(
            f"- outcome: {rng.choice(terms)}\n"
            f"  instrument: {rng.choice(instruments)}\n"
            + "  timepoint: {}\n  timepoint_days: {}\n".format(*rng.choice(
                [('24 h', 1), ('day 7', 7), ('week 4', 28), ('240 min', 0.167)])) +
            f"  definition: {q(_sentence(rng, 6))}\n"
            f"  data:\n    type: {kind}\n    arms:\n{arms}"
            f"  counts: {rng.choice(['stated', 'derived'])}\n"
            f"  derivation: back-calculated from reported percentages\n"
            f"  source: Table {rng.randint(1, 4)}\n"
        )
    authors = ", ".join(f"{rng.choice(SURNAMES)} {rng.choice('ABCDEFGH')}{rng.choice('JKLMN')}" for _ in range(rng.randint(3, 8)))
    text = f"""\
id: {rid}
title: {q(f"Synthetic benchmark record {i}: {_sentence(rng, 10)[:-1]}")}
authors: [{surname} A, {authors}]
year: {year}
journal: Journal of Synthetic Benchmarks
volume: '{rng.randint(1, 200)}'
issue: '{rng.randint(1, 12)}'
pages: {rng.randint(1, 900)}-{rng.randint(901, 999)}
doi: 10.5555/synthetic.{i}
pmid: '{90000000 + i}'
registrations: [NCT{80000000 + i:08d}]
abstract: |
  {_abstract(rng).replace(chr(10), chr(10) + '  ')}
keywords: [{', '.join(q(w) for w in rng.choices(*vocabulary(), k=5))}]
design: {design}
blinding: {rng.choice(vocab.terms('blinding'))}
n_randomized: {n_rand}
population: {q(_sentence(rng, 12))}
conditions: [{', '.join(conds)}]
topics: [{', '.join(rng.sample(vocab.terms('topic'), 2))}]
intervention:
  drug: {rng.choice(vocab.terms('drug'))}
  route: {rng.choice(['iv', 'iv', 'iv', 'intranasal', 'oral'])}
  dose_mg_per_kg: {rng.choice([0.1, 0.2, 0.5, 0.5, 0.5, 1.0])}
  infusion_minutes: 40
  infusions: {rng.randint(1, 8)}
comparator:
  type: {rng.choice(vocab.terms('comparator'))}
primary_outcome: {q(_sentence(rng, 8))}
outcomes:
{''.join(outcomes)}results:
- {q(_sentence(rng, 18))}
- {q(_sentence(rng, 14))}
adverse_events:
  summary: {q(_sentence(rng, 14))}
  events: [dissociation, blood-pressure]
durability:
  summary: {q(_sentence(rng, 12))}
key_finding: {q(_sentence(rng, 20))}
sources:
- https://example.org/synthetic/{i}
verified_fields: [title, authors, year]
notes: synthetic record generated by benchmarks/synth.py; not a real study
status: extracted
added: 2026-01-01
"""
    return rid, text


def generate(n: int, out: Path, seed: int = 42) -> Path:
    """Write ``n`` records to ``out/studies`` (reusing an existing complete set)."""
    studies = out / "studies"
    marker = out / f".complete-{n}-{seed}"
    if marker.exists():
        return out
    studies.mkdir(parents=True, exist_ok=True)
    vocab = load_vocabulary()
    rng = random.Random(seed)
    for i in range(n):
        rid, text = record(i, rng, vocab)
        (studies / f"{rid}.yaml").write_text(text, encoding="utf-8")
    marker.write_text("")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    print(generate(args.n, args.out, args.seed))
