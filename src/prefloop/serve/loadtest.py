"""Load generator: N concurrent annotators judging M items each against a running server.

Used by the concurrency and crash tests and by hand for throughput numbers::

    python -m prefloop.serve --db sqlite:///bench.db --port 8765 --init   # prints a token
    python -m prefloop.serve.loadtest http://127.0.0.1:8765 TOKEN --annotators 8 --judgments 50
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    """Filled while the load runs, so a caller may watch it (or crash the server mid-way)."""

    acknowledged: list[dict] = field(default_factory=list)
    next_latencies: list[float] = field(default_factory=list)
    transport_errors: int = 0
    unexpected: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def p95_next_ms(self) -> float:
        ordered = sorted(self.next_latencies)
        return 1000 * ordered[int(0.95 * (len(ordered) - 1))] if ordered else float("nan")


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


def _annotate(base_url: str, project_id: int, token: str, count: int, result: LoadResult) -> None:
    rng = random.Random(token)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
        done = 0
        while done < count:
            try:
                start = time.perf_counter()
                r = http.post(f"/api/v1/projects/{project_id}/next")
                with result.lock:
                    result.next_latencies.append(time.perf_counter() - start)
                if r.status_code == 204:
                    return
                r.raise_for_status()
                label = {"choice": rng.choice(["left", "right", "tie", "both_bad"])}
                assignment = r.json()["assignment_id"]
                s = http.post(f"/api/v1/assignments/{assignment}/submit", json=label)
                s.raise_for_status()
            except httpx.TransportError:
                with result.lock:
                    result.transport_errors += 1
                return  # the server went away (the crash test kills it on purpose)
            except httpx.HTTPStatusError as err:
                with result.lock:
                    result.unexpected.append(f"{err.response.status_code} {err.response.text}")
                return
            with result.lock:
                result.acknowledged.append(s.json())
            done += 1


def run_load(
    base_url: str, project: LoadProject, per_annotator: int, result: LoadResult | None = None
) -> LoadResult:
    """Every annotator token gets a thread that asks for the next item and judges it, repeatedly."""
    result = result or LoadResult()
    start = time.perf_counter()
    with ThreadPoolExecutor(len(project.annotator_tokens)) as pool:
        for token in project.annotator_tokens:
            pool.submit(_annotate, base_url, project.project_id, token, per_annotator, result)
    result.elapsed = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("server_token")
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--judgments", type=int, default=50, help="per annotator")
    parser.add_argument("--redundancy", type=int, default=2)
    args = parser.parse_args()
    with httpx.Client(base_url=args.url, timeout=120) as http:
        items = args.annotators * args.judgments  # twice the slots needed: nobody runs dry
        project = create_load_project(
            http, args.server_token, args.annotators, items, args.redundancy
        )
    result = run_load(args.url, project, args.judgments)
    n = len(result.acknowledged)
    print(
        f"{n} judgments by {args.annotators} annotators in {result.elapsed:.2f}s: "
        f"{n / result.elapsed:.1f} judgments/s; next-item p95 {result.p95_next_ms():.1f} ms "
        f"(over {len(result.next_latencies)} calls); errors: {len(result.unexpected)}"
    )


if __name__ == "__main__":
    main()
