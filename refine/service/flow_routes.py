"""The SeekrFlow files, projects, models, fine-tunes and chat routes of `refine serve`.

What the official SDK (``seekrai`` 0.35.1) calls, answered from a :class:`~refine.service.flow_store.FlowStore`:

* ``PUT /v1/flow/files`` (multipart: ``purpose``, ``files``, ``filename``), ``GET /v1/flow/files``,
  ``GET /v1/flow/files/{id}``, ``GET /v1/flow/files/{id}/content`` (the bytes, with their exact
  ``Content-Length``), ``DELETE /v1/flow/files/{id}``;
* ``POST /v1/flow/projects``, ``GET /v1/flow/projects``, ``GET /v1/flow/projects/{id}``;
* ``GET /v1/flow/models``: the base model(s) this server trains (``supports_lora: true``) and
  every completed fine-tune (its id is the job's);
* ``POST /v1/flow/fine-tune`` (the sync SDK) and ``POST /v1/flow/fine-tunes`` (the async one),
  ``GET /v1/flow/fine-tunes``, ``GET /v1/flow/fine-tunes/{id}``, ``GET .../events``, and
  ``PUT``/``POST .../cancel``;
* ``POST /v1/inference/chat/completions`` (non-streaming): greedy generation by a completed
  fine-tune (``model`` = its id) or a base model.

Every route needs the API key when the server has one, as the attribution route does. A
request the store refuses gets 400 with a JSON ``detail`` (the SDK raises InvalidRequestError
with it), an unknown id 404.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time.
import time
import uuid
from typing import Any, Callable

from .flow_common import NotFound, Refused
from .flow_store import FlowStore

__all__ = ["add_flow_routes"]

MAX_NEW_TOKENS = 512


def _listing(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": data}


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """A job as the service shows it (refine's own bookkeeping left out)."""
    return {k: v for k, v in job.items() if k not in ("settings", "model_bytes")}


def add_flow_routes(app: Any, store: FlowStore, authorize: Callable[..., None]) -> None:
    """Mount the routes on `app`; `authorize` is the attribution route's key check."""
    from fastapi import Body, Depends, HTTPException, Query, Request
    from fastapi.responses import FileResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    guarded = [Depends(authorize)]

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    # --- files ------------------------------------------------------------------------------------
    @app.put("/v1/flow/files", dependencies=guarded)
    async def upload_file(request: Request) -> dict[str, Any]:
        form = await request.form()
        try:
            upload, purpose = form.get("files"), form.get("purpose")
            if upload is None or isinstance(upload, str):
                raise HTTPException(status_code=400, detail="no file: send it as the multipart part 'files'")
            if not isinstance(purpose, str):
                raise HTTPException(status_code=400, detail="no purpose: send the form field 'purpose'")
            name = upload.filename
            named = form.get("filename")   # the SDK also sends the name as a part of its own
            if not name and named is not None:
                name = named if isinstance(named, str) else (await named.read()).decode("utf-8", "replace")
            team = request.headers.get("x-team-id")
            return await run_in_threadpool(store.add_file, name or "", purpose, upload.file, team=team)
        finally:
            await form.close()

    @app.get("/v1/flow/files", dependencies=guarded)
    def list_files(limit: int | None = Query(None, ge=0), offset: int = Query(0, ge=0),
                   sort_by: str = Query("created_at"), sort_order: str = Query("asc"),
                   purpose: str | None = Query(None)) -> dict[str, Any]:
        keys = {"created_at": "created_at", "filename": "filename", "type": "type", "size": "bytes"}
        if sort_by not in keys or sort_order not in ("asc", "desc"):
            raise HTTPException(status_code=400, detail="sort_by: created_at, filename, type or size; "
                                                        "sort_order: asc or desc")
        files = sorted(store.files(purpose), key=lambda f: (f.get(keys[sort_by]) or "", f["id"])
                       if sort_by != "size" else (f["bytes"], f["id"]), reverse=sort_order == "desc")
        files = files[offset:] if limit is None else files[offset: offset + limit]
        return _listing(files)

    @app.get("/v1/flow/files/{file_id}", dependencies=guarded)
    def retrieve_file(file_id: str) -> dict[str, Any]:
        return store.file(file_id)

    @app.get("/v1/flow/files/{file_id}/content", dependencies=guarded)
    def file_content(file_id: str) -> Any:
        meta = store.file(file_id)
        # FileResponse sends the file's size as Content-Length, which the SDK checks.
        return FileResponse(store.file_path(file_id), media_type="application/octet-stream",
                            filename=meta["filename"])

    @app.delete("/v1/flow/files/{file_id}", dependencies=guarded)
    def delete_file(file_id: str) -> dict[str, Any]:
        return store.delete_file(file_id)

    # --- projects ---------------------------------------------------------------------------------
    @app.post("/v1/flow/projects", dependencies=guarded)
    def create_project(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return store.add_project(body.get("name"), body.get("description"),
                                 team=request.headers.get("x-team-id"))

    @app.get("/v1/flow/projects", dependencies=guarded)
    def list_projects(skip: int = Query(0, ge=0), limit: int = Query(100, ge=0)) -> dict[str, Any]:
        return {"data": store.projects()[skip: skip + limit]}

    @app.get("/v1/flow/projects/{project_id}", dependencies=guarded)
    def retrieve_project(project_id: int) -> dict[str, Any]:
        return store.project(project_id)

    # --- models -----------------------------------------------------------------------------------
    @app.get("/v1/flow/models", dependencies=guarded)
    def list_models() -> dict[str, Any]:
        return _listing(store.models())

    # --- fine-tunes -------------------------------------------------------------------------------
    def create_finetune(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return _public(store.create_job(body))

    # The sync SDK posts to the singular route, the async one to the plural.
    app.post("/v1/flow/fine-tune", dependencies=guarded)(create_finetune)
    app.post("/v1/flow/fine-tunes", dependencies=guarded)(create_finetune)

    @app.get("/v1/flow/fine-tunes", dependencies=guarded)
    def list_finetunes() -> dict[str, Any]:
        return _listing([_public(j) for j in store.jobs()])

    @app.get("/v1/flow/fine-tunes/{job_id}", dependencies=guarded)
    def retrieve_finetune(job_id: str) -> dict[str, Any]:
        return _public(store.job(job_id))

    @app.get("/v1/flow/fine-tunes/{job_id}/events", dependencies=guarded)
    def finetune_events(job_id: str) -> dict[str, Any]:
        return _listing(store.events(job_id))

    def cancel_finetune(job_id: str) -> dict[str, Any]:
        return _public(store.cancel(job_id))

    # The sync SDK cancels with PUT, the async one with POST.
    app.put("/v1/flow/fine-tunes/{job_id}/cancel", dependencies=guarded)(cancel_finetune)
    app.post("/v1/flow/fine-tunes/{job_id}/cancel", dependencies=guarded)(cancel_finetune)

    # --- inference --------------------------------------------------------------------------------
    @app.post("/v1/inference/chat/completions", dependencies=guarded)
    def chat_completions(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            raise HTTPException(status_code=400, detail="model is required")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise HTTPException(status_code=400, detail="messages must be a non-empty list of objects")
        if body.get("stream"):
            raise HTTPException(status_code=400, detail="refine serve answers stream=false only")
        if (body.get("n") or 1) != 1:
            raise HTTPException(status_code=400, detail="refine serve answers n=1 only")
        wanted = body.get("max_completion_tokens") or body.get("max_tokens") or MAX_NEW_TOKENS
        if not isinstance(wanted, int) or wanted < 1:
            raise HTTPException(status_code=400, detail="max_tokens must be a positive integer")
        stop = body.get("stop") or []
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise HTTPException(status_code=400, detail="stop must be a list of strings")
        answer = store.chat(model, messages, min(wanted, MAX_NEW_TOKENS), stop)
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "finish_reason": answer["finish_reason"],
                             "message": {"role": "assistant", "content": answer["content"]}}],
                "usage": {"prompt_tokens": answer["prompt_tokens"],
                          "completion_tokens": answer["completion_tokens"],
                          "total_tokens": answer["prompt_tokens"] + answer["completion_tokens"]}}
