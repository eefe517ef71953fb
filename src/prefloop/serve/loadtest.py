"""Load generator: N concurrent annotators judging M items each against a running server.

Used by the concurrency and crash tests and by hand for throughput numbers::

    python -m prefloop.serve --db sqlite:///bench.db --port 8765 --init   # prints a token
    python -m prefloop.serve.loadtest http://127.0.0.1:8765 TOKEN --annotators 8 --judgments 50

Requests are retried with back-off when the server cannot be reached; every transport error
is counted, and at the end the stored judgments are checked against what was sent. The exit
status is 1 when anything went wrong: an error, or a sent judgment not accounted for.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Retry:
    """How often a request is tried while the server is unreachable, and the first pause
    (doubled after every failure)."""

    attempts: int = 6
    backoff_s: float = 0.05


@dataclass(frozen=True)
class InDoubt:
    """A submission sent but never acknowledged: the server went away while it was in flight."""

    token: str
    item_id: int
    raw_label: dict


@dataclass
class LoadResult:
    """Filled while the load runs, so a caller may watch it (or crash the server mid-way).

    ``transport_errors`` counts every connection failure (by type in ``transport_error_kinds``),
    retried or not; ``unexpected`` holds error responses and failures of the load test itself.
    """

    acknowledged: list[dict] = field(default_factory=list)
    next_latencies: list[float] = field(default_factory=list)
    transport_errors: int = 0
    transport_error_kinds: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    in_doubt: list[InDoubt] = field(default_factory=list)
    elapsed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def p95_next_ms(self) -> float:
        ordered = sorted(self.next_latencies)
        return 1000 * ordered[int(0.95 * (len(ordered) - 1))] if ordered else float("nan")

    def count_transport_error(self, err: httpx.TransportError) -> None:
        with self.lock:
            self.transport_errors += 1
            self.transport_error_kinds[type(err).__name__] += 1

    def add_unexpected(self, what: str) -> None:
        with self.lock:
            self.unexpected.append(what)


@dataclass
class LoadProject:
    project_id: int
    admin_token: str
    annotator_tokens: list[str]


def create_load_project(
    http: httpx.Client, server_token: str, annotators: int, items: int, redundancy: int
) -> LoadProject:
    """A pairwise project with ``items`` two-response items and ``annotators`` members."""
    auth = {"Authorization": f"Bearer {server_token}"}
    body = {"name": "load", "task": "pairwise", "redundancy": redundancy}
    project = http.post("/api/v1/projects", json=body, headers=auth).raise_for_status().json()
    admin = {"Authorization": f"Bearer {project['admin_token']}"}
    base = f"/api/v1/projects/{project['id']}"
    for start in range(0, items, 500):
        batch = [
            {"prompt": f"prompt {i}", "responses": [f"response {i}a", f"response {i}b"]}
            for i in range(start, min(items, start + 500))
        ]
        http.post(f"{base}/items", json={"items": batch}, headers=admin).raise_for_status()
    tokens = []
    for k in range(annotators):
        name = {"name": f"load-{project['id']}-{k}"}
        a = http.post("/api/v1/annotators", json=name, headers=auth).raise_for_status().json()
        member = {"annotator_id": a["id"]}
        http.post(f"{base}/members", json=member, headers=admin).raise_for_status()
        tokens.append(a["token"])
    return LoadProject(project["id"], project["admin_token"], tokens)


class _GaveUp(Exception):
    """Every try of a request failed to reach the server (each failure is counted)."""


def _post(
    http: httpx.Client, url: str, result: LoadResult, retry: Retry, **kwargs
) -> httpx.Response:
    """POST, tried again after transport errors and 503s (database busy); other errors raise."""
    for attempt in range(retry.attempts):
        if attempt:
            time.sleep(retry.backoff_s * 2 ** (attempt - 1))
        try:
            response = http.post(url, **kwargs)
        except httpx.TransportError as err:
            result.count_transport_error(err)
            continue
        if response.status_code != 503:
            return response.raise_for_status()
        result.add_unexpected(f"503 {response.text}")
    raise _GaveUp


def _annotate(
    base_url: str, project_id: int, token: str, count: int, result: LoadResult, retry: Retry
) -> None:
    rng = random.Random(token)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
        for _ in range(count):
            start = time.perf_counter()
            try:
                r = _post(http, f"/api/v1/projects/{project_id}/next", result, retry)
            except _GaveUp:
                return  # the server is gone (the crash test kills it on purpose)
            with result.lock:
                result.next_latencies.append(time.perf_counter() - start)
            if r.status_code == 204:
                return
            view = r.json()
            label = {"choice": rng.choice(["left", "right", "tie", "both_bad"])}
            url = f"/api/v1/assignments/{view['assignment_id']}/submit"
            try:  # sending the same answer again is safe: a stored one comes back as duplicate
                judgment = _post(http, url, result, retry, json=label).json()
            except _GaveUp:
                with result.lock:
                    result.in_doubt.append(InDoubt(token, view["item_id"], label))
                return
            with result.lock:
                result.acknowledged.append(judgment)


def _annotator(
    base_url: str, project_id: int, token: str, count: int, result: LoadResult, retry: Retry
) -> None:
    """One annotator's thread: whatever stops it early is recorded in the result."""
    try:
        _annotate(base_url, project_id, token, count, result, retry)
    except httpx.HTTPStatusError as err:
        result.add_unexpected(f"{err.response.status_code} {err.response.text}")
    except Exception as err:  # noqa: BLE001 - a bug must show in the result, not die in a thread
        result.add_unexpected(f"{type(err).__name__}: {err}")


def run_load(
    base_url: str,
    project: LoadProject,
    per_annotator: int,
    result: LoadResult | None = None,
    retry: Retry = Retry(),
) -> LoadResult:
    """Every annotator token gets a thread that asks for the next item and judges it, repeatedly.

    An annotator whose requests stay unreachable through ``retry`` stops; all else goes on.
    """
    result = result or LoadResult()
    start = time.perf_counter()
    with ThreadPoolExecutor(len(project.annotator_tokens)) as pool:
        for token in project.annotator_tokens:
            pool.submit(
                _annotator, base_url, project.project_id, token, per_annotator, result, retry
            )
    result.elapsed = time.perf_counter() - start
    return result


@dataclass
class Reconciliation:
    """What the database holds compared with what the load test sent."""

    stored: int
    lost: list[int]  # acknowledged judgment ids missing, or stored with another label
    in_doubt_stored: int  # unacknowledged submissions that did land
    in_doubt_missing: int  # unacknowledged submissions that did not: unaccounted for
    duplicated: int  # (item, annotator) pairs with more than one judgment
    over_redundancy: int  # items judged by more than R annotators

    @property
    def unaccounted(self) -> int:
        return len(self.lost) + self.in_doubt_missing

    @property
    def ok(self) -> bool:
        return not (self.unaccounted or self.duplicated or self.over_redundancy)


def stored_judgments(http: httpx.Client, project: LoadProject) -> list[dict]:
    """All of the project's judgments, page by page."""
    headers = {"Authorization": f"Bearer {project.admin_token}"}
    url = f"/api/v1/projects/{project.project_id}/judgments"
    found: list[dict] = []
    while True:
        params = {"after": found[-1]["id"] if found else 0, "limit": 1000}
        page = http.get(url, params=params, headers=headers).raise_for_status().json()
        if not page:
            return found
        found += page


def reconcile(
    http: httpx.Client, project: LoadProject, result: LoadResult, redundancy: int
) -> Reconciliation:
    """Check every sent judgment against the database (needs the server up again)."""
    stored = stored_judgments(http, project)
    labels = {j["id"]: j["raw_label"] for j in stored}
    lost = [a["id"] for a in result.acknowledged if labels.get(a["id"]) != a["raw_label"]]
    by_pair = Counter((j["item_id"], j["judge_id"]) for j in stored)
    landed = 0
    for doubt in result.in_doubt:
        me = http.get("/api/v1/me", headers={"Authorization": f"Bearer {doubt.token}"})
        landed += by_pair[(doubt.item_id, me.raise_for_status().json()["annotator_id"])] > 0
    per_item = Counter(j["item_id"] for j in stored)
    return Reconciliation(
        stored=len(stored),
        lost=lost,
        in_doubt_stored=landed,
        in_doubt_missing=len(result.in_doubt) - landed,
        duplicated=sum(n > 1 for n in by_pair.values()),
        over_redundancy=sum(n > redundancy for n in per_item.values()),
    )


def report(result: LoadResult, check: Reconciliation | None, annotators: int) -> str:
    n = len(result.acknowledged)
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(result.transport_error_kinds.items()))
    lines = [
        f"{n} judgments by {annotators} annotators in {result.elapsed:.2f}s: "
        f"{n / result.elapsed:.1f} judgments/s; next-item p95 {result.p95_next_ms():.1f} ms "
        f"(over {len(result.next_latencies)} calls)",
        f"transport errors: {result.transport_errors}" + (f" ({kinds})" if kinds else ""),
        f"unexpected responses: {len(result.unexpected)}",
        *(f"  {u[:300]}" for u in result.unexpected[:20]),
        f"sent but never acknowledged: {len(result.in_doubt)}",
    ]
    if check is None:
        lines.append("not checked against the database: the server could not be reached")
    else:
        lines.append(
            f"database: {check.stored} judgments; acknowledged but lost: {len(check.lost)}; "
            f"unacknowledged that landed: {check.in_doubt_stored}, that did not: "
            f"{check.in_doubt_missing}; duplicated: {check.duplicated}; "
            f"items over R: {check.over_redundancy}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the load; 0 only if nothing failed and every sent judgment is accounted for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("server_token")
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--judgments", type=int, default=50, help="per annotator")
    parser.add_argument("--redundancy", type=int, default=2)
    args = parser.parse_args(argv)
    with httpx.Client(base_url=args.url, timeout=120) as http:
        try:
            items = args.annotators * args.judgments  # twice the slots needed: nobody runs dry
            project = create_load_project(
                http, args.server_token, args.annotators, items, args.redundancy
            )
        except httpx.HTTPError as err:
            print(f"cannot set up the load project at {args.url}: {err}", file=sys.stderr)
            return 1
        result = run_load(args.url, project, args.judgments)
        try:
            check = reconcile(http, project, result, args.redundancy)
        except httpx.HTTPError:
            check = None
    print(report(result, check, args.annotators))
    clean = not (result.transport_errors or result.unexpected or result.in_doubt)
    return 0 if clean and check is not None and check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
