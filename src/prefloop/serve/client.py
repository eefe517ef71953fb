"""A Python client for ``prefloop serve``: what a training loop or an admin script needs.

::

    from prefloop.serve import Client

    with Client("http://127.0.0.1:8000", server_token) as admin:
        project = admin.create_project("helpfulness", task="pairwise", redundancy=3)
        ana = admin.create_annotator("ana")
    with Client("http://127.0.0.1:8000", project.admin_token) as loop:
        loop.add_member(project.id, ana.id)
        loop.add_items(project.id, [{"external_id": "step7-0", "prompt": "Explain DNS.",
                                     "responses": ["...", "..."]}])
        cursor = 0
        for judgment in loop.new_judgments(project.id, after=cursor):
            cursor = judgment.id
        records = loop.export_records(project.id)      # prefloop records, ready to train on

Answers are the server's own pydantic schemas. An error answer raises :class:`ServeHTTPError`
with the status and the server's message. A request that cannot reach the server is tried
again with exponential back-off (bounded); requests that change state are only resent when
the server cannot have seen them (the connection was never made) or said it stored nothing
(503), so nothing is applied twice.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, model_validator

from prefloop.data.io import load_records
from prefloop.data.records import FeedbackRecord
from prefloop.serve.schemas import (
    MAX_BATCH,
    AnnotatorCreated,
    AnnotatorOut,
    ItemIn,
    ItemOut,
    ItemsCreated,
    JudgeIn,
    JudgmentOut,
    Label,
    ProjectCreated,
    ProjectOut,
)

#: Methods whose requests may be repeated without changing the outcome.
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})


class ServeError(Exception):
    """Anything that went wrong talking to the server."""


class ServeHTTPError(ServeError):
    """The server answered with an error: ``status`` and its ``detail`` message."""

    def __init__(self, method: str, path: str, status: int, detail: Any) -> None:
        self.method, self.path, self.status, self.detail = method, path, status, detail
        super().__init__(f"{method} {path}: {status} {_describe(detail)}")


class ServeConnectionError(ServeError):
    """The server could not be reached (after every allowed try)."""


def _describe(detail: Any) -> str:
    """The server's ``detail``: a message, or validation errors as ``field: message``."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}"
            if isinstance(e, dict)
            else str(e)
            for e in detail
        )
    return str(detail)


class CoderPairKappa(BaseModel):
    coders: list[int]
    kappa: float | None
    units: int


class AgreementStats(BaseModel):
    """Over units judged by two or more judges; statistics that are undefined are None."""

    units: int
    coders: int
    metric: str
    krippendorff_alpha: float | None
    fleiss_kappa: float | None
    cohen_kappa_mean: float | None
    cohen_kappa: list[CoderPairKappa]


class Agreement(BaseModel):
    """A project's agreement: ``overall`` (pairwise, ranking), per aspect (rating), or none
    (critique, with the server's ``detail``)."""

    task: str
    overall: AgreementStats | None = None
    aspects: dict[str, AgreementStats] | None = None
    detail: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, body: Any) -> Any:
        """The API puts pairwise and ranking statistics beside ``task``; nest them."""
        if isinstance(body, dict) and "metric" in body:
            return {"task": body["task"], "overall": {k: v for k, v in body.items() if k != "task"}}
        return body


class Client:
    """A connection to one server with one token (server admin or project admin).

    ``retries`` bounds the extra tries of a request that could not reach the server (or got a
    503 "database busy"); the pause before try ``n`` is ``backoff_s * 2 ** (n - 1)`` seconds.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff_s: float = 0.25,
    ) -> None:
        self.retries, self.backoff_s = retries, backoff_s
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        failure: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as err:  # never reached the server
                failure = err
                continue
            except httpx.TransportError as err:
                if method not in IDEMPOTENT:  # it may have been applied: do not send it again
                    raise ServeConnectionError(f"{method} {path}: {err!r}") from err
                failure = err
                continue
            if response.status_code == 503 and attempt < self.retries:  # nothing was stored
                failure = ServeHTTPError(method, path, 503, _detail(response))
                continue
            if response.is_error:
                raise ServeHTTPError(method, path, response.status_code, _detail(response))
            return response
        raise ServeConnectionError(
            f"{method} {path}: no answer after {self.retries + 1} tries ({failure!r})"
        ) from failure

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # -- who am I --------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """The token's role and the project or annotator it is bound to."""
        return self._json("GET", "/me")

    # -- projects --------------------------------------------------------------------------

    def create_project(self, name: str, task: str = "pairwise", **options: Any) -> ProjectCreated:
        """Create a project (server admin). ``options``: guideline, guideline_version,
        redundancy, rule, warmup, aspects, scale_min, scale_max, webhook_url. The answer holds
        the project's admin token and webhook secret, shown this once."""
        body = {"name": name, "task": task, **options}
        return ProjectCreated.model_validate(self._json("POST", "/projects", json=body))

    def projects(self) -> list[ProjectOut]:
        return [ProjectOut.model_validate(p) for p in self._json("GET", "/projects")]

    def project(self, project_id: int) -> ProjectOut:
        return ProjectOut.model_validate(self._json("GET", f"/projects/{project_id}"))

    def update_project(self, project_id: int, **changes: Any) -> ProjectOut:
        """Change guideline (and version), rule, warm-up or webhook URL."""
        answer = self._json("PATCH", f"/projects/{project_id}", json=changes)
        return ProjectOut.model_validate(answer)

    # -- annotators ------------------------------------------------------------------------

    def create_annotator(self, name: str) -> AnnotatorCreated:
        """Create an annotator (server admin); its token is in the answer, shown this once."""
        answer = self._json("POST", "/annotators", json={"name": name})
        return AnnotatorCreated.model_validate(answer)

    def annotators(self) -> list[AnnotatorOut]:
        return [AnnotatorOut.model_validate(a) for a in self._json("GET", "/annotators")]

    def add_member(self, project_id: int, annotator_id: int) -> None:
        """Assign an annotator to the project (idempotent)."""
        body = {"annotator_id": annotator_id}
        self._request("POST", f"/projects/{project_id}/members", json=body)

    def members(self, project_id: int) -> list[AnnotatorOut]:
        answer = self._json("GET", f"/projects/{project_id}/members")
        return [AnnotatorOut.model_validate(a) for a in answer]

    # -- items -----------------------------------------------------------------------------

    def add_items(self, project_id: int, items: Iterable[ItemIn | dict[str, Any]]) -> ItemsCreated:
        """Add items, in batches of the API's maximum. Items whose ``external_id`` the project
        already has are not added again (their ids come back), so re-posting is safe, also
        after an error part-way through the batches."""
        specs = [i if isinstance(i, ItemIn) else ItemIn.model_validate(i) for i in items]
        ids, created = [], 0
        for start in range(0, len(specs), MAX_BATCH):
            batch = [
                s.model_dump(mode="json", exclude_none=True)
                for s in specs[start : start + MAX_BATCH]
            ]
            answer = self._json("POST", f"/projects/{project_id}/items", json={"items": batch})
            ids += answer["ids"]
            created += answer["created"]
        return ItemsCreated(ids=ids, created=created)

    def item(self, project_id: int, item_id: int) -> ItemOut:
        """An item with its sources, rewards and judgment count."""
        return ItemOut.model_validate(self._json("GET", f"/projects/{project_id}/items/{item_id}"))

    def set_rewards(self, project_id: int, item_id: int, rewards: list[list[float]]) -> ItemOut:
        """Replace an item's ensemble rewards ``[models][responses]`` (disagreement rule)."""
        path = f"/projects/{project_id}/items/{item_id}/rewards"
        return ItemOut.model_validate(self._json("PUT", path, json=rewards))

    # -- judgments -------------------------------------------------------------------------

    def judgments(self, project_id: int, after: int = 0, limit: int = 100) -> list[JudgmentOut]:
        """One page of submitted judgments with id > ``after``, oldest first."""
        params = {"after": after, "limit": limit}
        answer = self._json("GET", f"/projects/{project_id}/judgments", params=params)
        return [JudgmentOut.model_validate(j) for j in answer]

    def new_judgments(self, project_id: int, after: int = 0) -> Iterator[JudgmentOut]:
        """Every judgment with id > ``after``, page by page: poll with the last id seen."""
        while page := self.judgments(project_id, after=after, limit=1000):
            yield from page
            after = page[-1].id

    def add_ai_judgment(
        self,
        project_id: int,
        item_id: int,
        judge: JudgeIn | dict[str, str],
        label: Label | dict[str, Any],
        order: list[int] | None = None,
    ) -> JudgmentOut:
        """An AI judge's answer; ``order`` is the response indices as the judge saw them."""
        body = {
            "item_id": item_id,
            "judge": JudgeIn.model_validate(judge).model_dump(),
            "label": Label.model_validate(label).model_dump(exclude_none=True),
            **({"order": order} if order is not None else {}),
        }
        answer = self._json("POST", f"/projects/{project_id}/ai-judgments", json=body)
        return JudgmentOut.model_validate(answer)

    def export(
        self,
        project_id: int,
        form: str = "prefloop",
        pairs: bool = False,
        judges: str = "all",
        include_ties: bool = False,
    ) -> bytes:
        """The export as the server sends it: JSON lines of ``form`` (the bytes of the file)."""
        params = {"form": form, "pairs": pairs, "judges": judges, "include_ties": include_ties}
        return self._request("GET", f"/projects/{project_id}/export", params=params).content

    def export_records(
        self,
        project_id: int,
        form: str = "prefloop",
        pairs: bool = False,
        judges: str = "all",
        include_ties: bool = False,
    ) -> list[FeedbackRecord]:
        """The project's judgments as prefloop records (read with ``load_records``, so exactly
        what training on the exported file would see; provenance is in ``metadata``)."""
        body = self.export(project_id, form, pairs, judges, include_ties)
        with tempfile.TemporaryDirectory(prefix="prefloop-export-") as folder:
            path = Path(folder) / "export.jsonl"
            path.write_bytes(body)
            return load_records(path)

    def agreement(self, project_id: int, judges: str = "human") -> Agreement:
        """Krippendorff's alpha, Fleiss' kappa and Cohen's kappa of ``judges`` (human/ai/all)."""
        answer = self._json("GET", f"/projects/{project_id}/agreement", params={"judges": judges})
        return Agreement.model_validate(answer)


def _detail(response: httpx.Response) -> Any:
    """The ``detail`` of an error answer (FastAPI's form), else its body as text."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return body.get("detail", body) if isinstance(body, dict) else body
