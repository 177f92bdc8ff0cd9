"""`refine serve`: the SeekrFlow attribution API in front of any local backend.

Routes:

* ``GET /v1/flow/explain/models/{model_id}/influential-finetuning-data`` — query parameters
  ``question`` (required), ``system_prompt``, ``answer``; the SeekrFlow response schema;
* ``GET /health``; the OpenAPI schema at ``/openapi.json`` (docs at ``/docs``).

With an API key configured, the attribution route requires it in the ``Authorization`` header,
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
from typing import Any, Callable

from .attribution.base import AttributionBackend
from .errors import ConfigError
from .evalset import EvalItem
from .settings import CollectSettings

__all__ = ["check_bind", "create_app", "serve"]

ROUTE = "/v1/flow/explain/models/{model_id}/influential-finetuning-data"


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


def create_app(backend: AttributionBackend, *, model_id: str, api_key: str | None = None,
               pairs: int | None = None) -> Any:
    """A FastAPI app serving `backend`, which must already be prepared on the training set."""
    served_model = model_id
    if hasattr(backend, "persist_queries"):
        backend.persist_queries = False
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
        return {"status": "ok", "model_id": served_model, "backend": backend.name, "pairs": pairs}

    @app.get(ROUTE, response_model=Response, dependencies=[Depends(authorize)])
    def influential_finetuning_data(
        model_id: str,
        question: str = Query(..., min_length=1, description="The question asked of the model."),
        system_prompt: str | None = Query(None),
        answer: str | None = Query(None, description="The model's answer (required here: a local "
                                                     "backend does not generate answers)."),
    ) -> dict[str, Any]:
        if model_id != served_model:
            raise HTTPException(status_code=404, detail=f"unknown model {model_id!r}; this "
                                                        f"server serves {served_model!r}")
        if not question.strip():
            raise HTTPException(status_code=400, detail="question is empty")
        if answer is None and backend.needs_answer:
            raise HTTPException(status_code=400, detail=f"answer is required: the {backend.name!r} "
                                                        "backend does not generate answers")
        item = EvalItem(id="request", line=0, question=question, answer=answer,
                        system_prompt=system_prompt, verdict="good")
        with lock:
            record = backend.attribute([item])[0]
        if record.status != "done":
            raise HTTPException(status_code=500, detail=record.error or "attribution failed")
        return record.to_seekrflow()

    return app


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
          progress: bool = True, on_ready: Callable[[str], None] | None = None) -> None:
    """Load the training sources, prepare the backend, and serve until interrupted (blocking).

    Of the collect settings, the backend, its options, `top_k` and `train_format` apply: the
    server attributes as `refine collect` would. `on_ready(url)` is called with the address
    actually bound (port 0 picks a free one) just before requests are accepted. To serve from
    another ASGI server, build the app with :func:`create_app`.
    """
    settings = settings or CollectSettings()
    check_bind(host, api_key)
    from ._progress import Progress
    from .attribution.base import make_backend
    from .training import load_training

    training = load_training(train, layout=settings.train_format)
    instance = make_backend(settings.backend, settings.backend_options, top_k=settings.top_k)
    with Progress(progress).session() as bars:
        instance.prepare(training, bars.callback)
    app = create_app(instance, model_id=model_id, api_key=api_key, pairs=len(training.pairs))
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
