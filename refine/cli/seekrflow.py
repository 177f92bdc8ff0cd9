"""`refine upload`, `finetune` and `serve`: the refined set to SeekrFlow (or a local stand-in) and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from . import IGNORED, main
from ..errors import ConfigError
from ..settings import CollectSettings, FinetuneSettings
from .collect import backend_choice
from .options import quiet, settings_options


def _seekrflow_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Where the SeekrFlow API is and who asks it (the key itself only ever from the environment)."""
    for option in reversed((
        click.option("--base-url", default=None,
                     help="The API's base URL (default: $SEEKR_BASE_URL, else https://flow.seekr.com; "
                          "a `refine serve` address works too)."),
        click.option("--api-key-env", default="SEEKR_API_KEY", show_default=True, metavar="VAR",
                     help="The environment variable holding the API key (not needed for a loopback server)."),
        click.option("--team-id", default=None, help="Sent as x-team-id (default: $SEEKR_TEAM_ID)."),
        click.option("--timeout", default=120.0, show_default=True, type=float, help="Seconds per request."),
        click.option("--max-retries", default=5, show_default=True, type=int,
                     help="Retries of a request the service did not act on (408, 429, no connection; "
                          "reads also on 5xx)."),
    )):
        f = option(f)
    return f


@main.command("upload")
@click.argument("source", type=click.Path(exists=True))
@click.option("--purpose", default="fine-tune", show_default=True,
              type=click.Choice(["fine-tune", "preference-fine-tune", "reinforcement-fine-tune", "pre-train"]),
              help="What the file is for (as the SDK's files.upload).")
@_seekrflow_options
@quiet
def upload_command(source: str, purpose: str, base_url: str | None, api_key_env: str,
                   team_id: str | None, timeout: float, max_retries: int, quiet: bool) -> None:
    """Upload the dataset a run emitted (SOURCE a run directory) or one file to SeekrFlow.

    A run's file ids are recorded in RUN/upload.json (with the emit they came from), where
    `refine finetune --run RUN` finds them.
    """
    from ..stages.handoff import upload

    result = upload(source, purpose=purpose, base_url=base_url, api_key_env=api_key_env,
                    team_id=team_id, timeout=timeout, max_retries=max_retries, progress=not quiet)
    for item in result.files:
        click.echo(f"uploaded {item.path} ({item.bytes} bytes) -> {item.file_id}")
    if result.record is not None:
        click.echo(f"file ids recorded in {result.record}; next: refine finetune --run {source} "
                   f"--model BASE_MODEL" + (f" --base-url {result.base_url.rstrip('/')}" if base_url else ""))
    else:
        ids = " ".join(f"--file-id {i}" for i in result.file_ids)
        click.echo(f"next: refine finetune {ids} --model BASE_MODEL"
                   + (f" --base-url {result.base_url.rstrip('/')}" if base_url else ""))


@main.command("finetune")
@click.option("--run", "run", type=click.Path(file_okay=False),
              help="A run directory: train on what `refine upload RUN` uploaded (with --local: on "
                   "the dataset it emitted).")
@click.option("--file-id", "file_id", multiple=True, metavar="FILE_ID",
              help="An uploaded training file's id. Repeatable.")
@click.option("--train", type=click.Path(dir_okay=False, exists=True),
              help="--local: the training file (instead of --run).")
@settings_options(FinetuneSettings, flags={"base_model": "--model"})
@click.option("--project-id", type=int, default=None,
              help="The SeekrFlow project to run in (default: a new one named after the run).")
@click.option("--experiment-name", default=None, help="A suffix for the output model's name.")
@click.option("--accel-type", default="H100", show_default=True,
              type=click.Choice(["GAUDI2", "GAUDI3", "A100", "A10", "H100", "MI300X"]),
              help="Accelerator type to train on.")
@click.option("--n-accel", default=1, show_default=True, type=int, help="Accelerators per node.")
@click.option("--n-node", default=1, show_default=True, type=int, help="Nodes.")
@click.option("--local", is_flag=True, help="Fine-tune here (TRL/peft) instead of on SeekrFlow.")
@click.option("--out", type=click.Path(file_okay=False),
              help="--local: the model directory to write [RUN/model].")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the job until it completes, fails or is cancelled.")
@click.option("--poll-interval", default=10.0, show_default=True, type=float,
              help="Seconds between looks at a running job.")
@_seekrflow_options
@quiet
def finetune_command(run: str | None, file_id: tuple[str, ...], train: str | None,
                     settings: FinetuneSettings, project_id: int | None, experiment_name: str | None,
                     accel_type: str, n_accel: int, n_node: int, local: bool, out: str | None,
                     wait: bool, poll_interval: float, base_url: str | None, api_key_env: str,
                     team_id: str | None, timeout: float, max_retries: int, quiet: bool) -> None:
    """Fine-tune a base model on the refined dataset: on SeekrFlow (after `refine upload`), or
    here with --local.

    Follows the job with its epochs and loss and prints the new model and what to run next.
    A failed or cancelled job, a base model the service does not know or a file it rejects
    end with one error (exit 2).
    """
    from ..stages.handoff import finetune

    def started(job: dict[str, Any]) -> None:
        click.echo(f"started fine-tune {job['id']} of {settings.base_model} (status {job.get('status')})")

    result = finetune(settings, run=run, file_id=file_id, train=train, local=local, out=out,
                      project_id=project_id, experiment_name=experiment_name, accel_type=accel_type,
                      n_accel=n_accel, n_node=n_node, base_url=base_url, api_key_env=api_key_env,
                      team_id=team_id, wait=wait, poll_interval=poll_interval, timeout=timeout,
                      max_retries=max_retries, progress=not quiet, on_start=started)
    _report_finetune(result, run)


def _report_finetune(result: Any, run: str | None) -> None:
    if result.local is not None:
        model = result.local
        loss = model.record.get("final_loss")
        kind = f"a LoRA adapter on {result.base_model}" if model.adapter else "a full model"
        click.echo(f"fine-tuned here: {model.path} ({kind}"
                   + (f", final loss {loss:.4g}" if isinstance(loss, (int, float)) else "") + ")")
        flags = (f"--model {result.base_model} --adapter {model.path}" if model.adapter
                 else f"--model {model.path}")
        click.echo(f"next: refine collect --backend gradient {flags} --train {result.training_files[0]} "
                   "--eval EVAL --out RUN2   (then `refine outcome`)")
        return
    if result.status != "completed":
        click.echo(f"fine-tune {result.job_id} is {result.status} at {result.base_url}; look again "
                   f"with the SDK: client.fine_tuning.retrieve({result.job_id!r})")
        return
    losses = [e["loss"] for e in result.events if isinstance(e.get("loss"), (int, float))]
    click.echo(f"fine-tune {result.job_id} completed: model {result.model} (base {result.base_model}, "
               f"project {result.project_id}" + (f", final loss {losses[-1]:.4g}" if losses else "") + ")"
               + (f"; recorded in {result.record}" if result.record else ""))
    if not result.inference_available:
        click.echo(f"next: deploy it (client.deployments.create(model_type='Fine-tuned Run', "
                   f"model_id={result.job_id!r}, ...)), then:")
    click.echo(f"next: ask it: client.chat.completions.create(model={result.model!r}, messages=[...]) "
               f"with SeekrFlow(base_url={result.base_url.rstrip('/')!r})")
    click.echo(f"      attribute its answers: refine collect --backend seekrflow --model-id {result.model} "
               f"--base-url {result.base_url.rstrip('/')} --train TRAIN --eval EVAL --out RUN2")


@main.command("serve")
@click.option("--train", "train", multiple=True, metavar="SOURCE",
              help="Training source(s) the server attributes to (as for collect). Repeatable. "
                   "Without it: no attribution route, only the files and fine-tuning API.")
@settings_options(CollectSettings, skip=("backend_options", *IGNORED["serve"]),
                  flags={"train_format": "--format"}, types={"backend": backend_choice()})
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A backend option (`refine backends --options NAME` lists a backend's), read as "
                   "YAML. Repeatable.")
@click.option("--model-id", default="local", show_default=True,
              help="The model id the route answers for.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --api-key-env.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to bind; 0 picks a free one.")
@click.option("--api-key-env", default=None, metavar="VAR",
              help="Require the key in $VAR on every route, sent as `Authorization: KEY` "
                   "(the SeekrFlow SDK's form) or `Authorization: Bearer KEY`.")
@click.option("--store", default=None, type=click.Path(file_okay=False),
              help="Where uploaded files, projects, fine-tunes and their models are kept "
                   "[./refine-store, made on first use].")
@click.option("--base-model", "base_model", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A local model directory fine-tune requests may name (by its folder's name). "
                   "Repeatable.")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda", "mps"]), help="Where fine-tunes train.")
def serve_command(train: tuple[str, ...], settings: CollectSettings, options: tuple[str, ...],
                  model_id: str, host: str, port: int, api_key_env: str | None, store: str | None,
                  base_model: tuple[str, ...], device: str) -> None:
    """Serve the SeekrFlow attribution API over a local backend, and SeekrFlow's files,
    fine-tuning and chat API over local fine-tunes of --base-model."""
    import dataclasses
    import os

    from ..config import parse_key_values
    from ..service.server import serve

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigError(f"environment variable {api_key_env} is not set", key="--api-key-env")

    def ready(url: str) -> None:
        bases = ", ".join(Path(b).name for b in base_model) or "none"
        if not train:
            click.echo(f"serving model fine-tunes of {bases} on {url} (files, fine-tunes and chat "
                       "under /v1; no attribution without --train; Ctrl-C to stop)")
            return
        click.echo(f"serving model {model_id!r} ({settings.backend} backend) on {url} "
                   f"(route: {url}/v1/flow/explain/models/{model_id}/influential-finetuning-data; "
                   f"fine-tunes of {bases}; Ctrl-C to stop)")

    settings = dataclasses.replace(settings, backend_options=parse_key_values(options, "--option"))
    serve(list(train), settings, model_id=model_id, host=host, port=port, api_key=api_key,
          store=store, base_model=list(base_model), device=device, on_ready=ready)
