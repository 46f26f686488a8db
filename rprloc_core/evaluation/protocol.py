"""Who is support and who is query, and what a method is asked to find.

One-shot: one labelled support image (drawn from the validation split with a seeded generator;
the tables report several supports) and the test patients as queries. The landmarks of an organ
are its six extreme points (or two diagonal corners) in the support's mm frame.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.data.preprocess import PreprocessedCase
from rprloc_core.geometry.landmarks import EXTREME_POINT_NAMES, landmarks


@dataclass(frozen=True)
class Protocol:
    """The supports and queries every method of a profile is evaluated on."""
    supports: tuple
    queries: tuple
    organs: tuple = HAN_ORGANS

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(s, q) for s in self.supports for q in self.queries]


def one_shot_protocol(settings, organs=HAN_ORGANS) -> Protocol:
    """The profile's supports (`rprloc.inference.n_supports`, seeded) and queries (the test
    patients, or the first `n_queries`)."""
    inference = settings.rprloc.inference
    supports = choose_supports(settings, organs, n=inference.n_supports, seed=settings.seed)
    queries = query_cases(settings, organs, limit=inference.n_queries)
    return Protocol(tuple(supports), tuple(queries), tuple(organs))


def validation_protocol(settings, organs=HAN_ORGANS) -> Protocol:
    """For choosing settings, never on the test queries: `rprloc.inference.n_supports` training
    patients with every organ as supports (seeded), every validation patient with one of the organs
    as a query."""
    n_supports = settings.rprloc.inference.n_supports
    table = dataset.case_table(settings)
    pool = table[(table.split == "train") & table.organs.map(lambda o: all(x in o for x in organs))]
    ids = sorted(pool.case_id, key=lambda c: (len(c), c))
    rng = np.random.default_rng([settings.seed, 2])
    supports = [ids[i] for i in sorted(rng.choice(len(ids), size=n_supports, replace=False))]
    queries = table[(table.split == "validation") & table.organs.map(lambda o: any(x in o for x in organs))]
    return Protocol(tuple(supports), tuple(queries.case_id), tuple(organs))


def support_pool(settings, organs=HAN_ORGANS) -> list[str]:
    """The validation cases that have every organ: those a support is drawn from."""
    table = dataset.case_table(settings)
    pool = table[(table.split == "validation") & table.organs.map(lambda o: all(x in o for x in organs))]
    return sorted(pool.case_id, key=lambda c: (len(c), c))


def choose_supports(settings, organs=HAN_ORGANS, n: int = 1, seed: int = 0, exclude=()) -> list[str]:
    """n validation cases that have every organ (and are not in `exclude`), drawn with a seeded
    generator (the paper used one random support; we report the spread over several)."""
    ids = [c for c in support_pool(settings, organs) if c not in set(exclude)]
    if len(ids) < n:
        raise ValueError(f"only {len(ids)} validation cases have all of {', '.join(organs)}; asked for {n}")
    rng = np.random.default_rng(seed)
    return [ids[i] for i in sorted(rng.choice(len(ids), size=n, replace=False))]


def query_cases(settings, organs=HAN_ORGANS, limit: int | None = None) -> list[str]:
    """Test cases that have at least one of the organs (each organ is scored where it exists)."""
    table = dataset.case_table(settings)
    rows = table[(table.split == "test") & table.organs.map(lambda o: any(x in o for x in organs))]
    ids = rows.case_id.tolist()
    return ids[:limit] if limit else ids


def organ_landmarks_mm(case: PreprocessedCase, organs, strategy: str = "extreme", rule: str = "median") -> dict:
    """organ -> (P, 3) landmark positions in the case's mm frame, for the organs the case has."""
    return {o: case.idx_to_mm(landmarks(case.labels[o], strategy, rule, name=f"{case.case_id}/{o}"))
            for o in organs if o in case.labels}


def case_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by the run seed and the case names: the same query and support always
    get the same random starts, whatever order they are evaluated in."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def landmark_names(organs=HAN_ORGANS) -> list[str]:
    """'<organ> <point>' for the six extreme points of each organ, in the project's order (the
    landmarks of the landmark methods, PIN and CC2D)."""
    return [f"{organ} {point}" for organ in organs for point in EXTREME_POINT_NAMES]


def true_landmarks(settings, query_id: str) -> dict[str, np.ndarray]:
    """landmark name -> its true position (3,) mm in the query, for the organs it has."""
    points = organ_landmarks_mm(dataset.load_case(settings, query_id), HAN_ORGANS, "extreme")
    return {f"{organ} {p}": points[organ][i] for organ in points for i, p in enumerate(EXTREME_POINT_NAMES)}
