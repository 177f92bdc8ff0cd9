"""`refine serve`: the SeekrFlow attribution API in front of any local backend.

Routes:

* ``GET /v1/flow/explain/models/{model_id}/influential-finetuning-data`` — query parameters
  ``question`` (required), ``system_prompt``, ``answer``; the SeekrFlow response schema;
* ``GET /health``; the OpenAPI schema at ``/openapi.json`` (docs at ``/docs``);
* with a store (:mod:`refine.service.flow_routes`): SeekrFlow's files, projects, models, fine-tunes and
  chat completions, fine-tuning the ``--base-model`` directories locally.

With an API key configured, every route but ``/health`` requires it in the ``Authorization`` header,
either bare (``Authorization: <key>``, as the official SeekrFlow SDK sends it) or as
``Authorization: Bearer <key>``.
Bad requests get a 4xx with a JSON ``detail``. The server binds to 127.0.0.1 unless told
otherwise, and refuses a non-loopback host without an API key.
"""


# No `from __future__ import annotations` here: FastAPI reads the route signatures and the
# response models defined inside create_app at run time, and cannot resolve string annotations
# that name function-local classes.
import hmac
import ipaddress
import socket
import threading
from typing import Any, Callable, Sequence

from ..attribution.base import AttributionBackend
from ..errors import ConfigError
from ..formats.evalset import EvalItem
from ..settings import CollectSettings

__all__ = ["check_bind", "create_app", "serve"]

ROUTE = "/v1/flow/explain/models/{model_id}/influential-finetuning-data"
DEFAULT_STORE = "refine-store"


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not api_key:
        raise ConfigError(f"refusing to listen on {host} without an API key: set one with "
                          "--api-key-env VAR (or bind to 127.0.0.1)", key="host")


def key_matches(header: str, api_key: str) -> bool:
    """Whether an Authorization header carries `api_key`: bare (the SDK's form) or as Bearer."""
    given = header.strip()
    scheme, _, rest = given.partition(" ")
    if scheme.lower() == "bearer":
        given = rest.strip()
    # Constant time whatever the form, so a wrong key says nothing about the right one.
    return hmac.compare_digest(given.encode(), api_key.encode())


def create_app(backend: AttributionBackend | None, *, model_id: str, api_key: str | None = None,
               pairs: int | None = None, store: Any = None,
               job_backend: Callable[[str], tuple[AttributionBackend, dict[str, str]] | None] | None = None
               ) -> Any:
    """A FastAPI app serving `backend`, which must already be prepared on the training set
    (None: no attribution model), and the SeekrFlow fine-tuning routes over `store` (a
    :class:`~refine.service.flow_store.FlowStore`) when one is given. `job_backend(model_id)` gives,
    for a completed fine-tune, a backend prepared on its training files and the map from
    refine's file ids to the uploaded ones (None: no such fine-tune)."""
    served_model = model_id
    if backend is not None:
        backend.serve_mode()
    try:
        from fastapi import Depends, FastAPI, HTTPException, Query, Request
        from pydantic import BaseModel
    except ImportError:
        raise ConfigError("`refine serve` needs FastAPI and uvicorn: pip install 'refine[serve]'",
                          key="serve") from None

    class Result(BaseModel):
        id: str
        influence_level: str
        file_id: str | None
        messages: str

    class Response(BaseModel):
        results: list[Result]
        answer: str | None
        version: str | None

    lock = threading.Lock()   # backends are not required to be thread-safe
    app = FastAPI(title="refine attribution server",
                  description="SeekrFlow-compatible training-data attribution over a local backend.",
                  version="v0")

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        if not key_matches(request.headers.get("authorization", ""), api_key):
            raise HTTPException(status_code=401, detail="missing or wrong API key",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model_id": served_model if backend is not None else None,
                "backend": backend.name if backend is not None else None, "pairs": pairs}

    @app.get(ROUTE, response_model=Response, dependencies=[Depends(authorize)])
    def influential_finetuning_data(
        model_id: str,
        question: str = Query(..., min_length=1, description="The question asked of the model."),
        system_prompt: str | None = Query(None),
        answer: str | None = Query(None, description="The model's answer (required here: a local "
                                                     "backend does not generate answers)."),
    ) -> dict[str, Any]:
        chosen, file_ids = backend, {}
        if backend is None or model_id != served_model:
            found = job_backend(model_id) if job_backend is not None else None
            if found is None and backend is None:
                raise HTTPException(status_code=404, detail=f"unknown model {model_id!r}; this server "
                                                            "attributes for no model (start it with --train)")
            if found is None:
                raise HTTPException(status_code=404, detail=f"unknown model {model_id!r}; this "
                                                            f"server serves {served_model!r}")
            chosen, file_ids = found
        if not question.strip():
            raise HTTPException(status_code=400, detail="question is empty")
        if answer is None and chosen.needs_answer:
            raise HTTPException(status_code=400, detail=f"answer is required: the {chosen.name!r} "
                                                        "backend does not generate answers")
        item = EvalItem(id="request", line=0, question=question, answer=answer,
                        system_prompt=system_prompt, verdict="good")
        with lock:
            record = chosen.attribute([item])[0]
        if record.status != "done":
            raise HTTPException(status_code=500, detail=record.error or "attribution failed")
        body = record.to_seekrflow()
        for result in body["results"]:   # a fine-tune's pairs name the files as uploaded
            result["file_id"] = file_ids.get(result["file_id"], result["file_id"])
        return body

    if store is not None:
        from .flow_routes import add_flow_routes

        add_flow_routes(app, store, authorize)
    return app


def _job_backends(flow: Any, settings: CollectSettings) -> Callable[[str], Any]:
    """Attribution for the fine-tunes `flow` completes: a backend of `settings` prepared on a
    job's training files on the first request for it, kept for the next ones."""
    from ..attribution.base import make_backend
    from ..formats.training import _derived_file_id, load_training

    ready: dict[str, tuple[AttributionBackend, dict[str, str]]] = {}
    lock = threading.Lock()

    def for_job(job_id: str) -> tuple[AttributionBackend, dict[str, str]] | None:
        sources = flow.training_sources(job_id)
        if sources is None:
            return None
        with lock:
            if job_id not in ready:
                training = load_training([str(path) for path, _ in sources], layout=settings.train_format)
                instance = make_backend(settings.backend, settings.backend_options, top_k=settings.top_k)
                instance.serve_mode()
                instance.prepare(training, lambda description, total: (lambda n: None))
                ids = {_derived_file_id(f.sha256): file_id for f, (_, file_id) in zip(training.files, sources)}
                ready[job_id] = (instance, ids)
            return ready[job_id]
    return for_job


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port), or a ConfigError saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", key="port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(train: list[str], settings: CollectSettings | None = None, *, model_id: str = "local",
          host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          store: str | None = None, base_model: Sequence[str] = (), device: str = "auto",
          progress: bool = True, on_ready: Callable[[str], None] | None = None) -> None:
    """Load the training sources, prepare the backend, and serve until interrupted (blocking).

    Of the collect settings, the backend, its options, `top_k` and `train_format` apply: the
    server attributes as `refine collect` would. No `train`: no attribution route. `on_ready(url)`
    is called with the address actually bound (port 0 picks a free one) just before requests
    are accepted. To serve from another ASGI server, build the app with :func:`create_app`.

    The SeekrFlow files and fine-tuning routes keep what they are sent under `store` (default:
    ``refine-store`` in the working directory, made on the first upload) and fine-tune the
    local model directories `base_model` (each listed by its folder's name) on `device`.
    """
    settings = settings or CollectSettings()
    check_bind(host, api_key)
    from ..core._progress import Progress
    from ..attribution.base import make_backend
    from ..formats.training import load_training

    from .flow_store import make_store

    flow = make_store(store or DEFAULT_STORE, list(base_model), device=device)
    instance, pairs = None, None
    if train:
        training = load_training(train, layout=settings.train_format)
        instance = make_backend(settings.backend, settings.backend_options, top_k=settings.top_k)
        with Progress(progress).session() as bars:
            instance.prepare(training, bars.callback)
        pairs = len(training.pairs)
    app = create_app(instance, model_id=model_id, api_key=api_key, pairs=pairs, store=flow,
                     job_backend=_job_backends(flow, settings))
    import uvicorn

    sock = _listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    if on_ready is not None:
        on_ready(f"http://{shown}:{bound_port}")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
