"""Uploads to the Hugging Face hub: a model (``CrossEncoder.push_to_hub``) and, during training, the
output directory and checkpoints (``push_to_hub=True`` with a ``hub_strategy``).

Every call goes through ``huggingface_hub.HfApi`` (``create_repo``, ``upload_folder``,
``create_branch``, ``file_exists``), the only network boundary.

Example:
    >>> url = push_model(model, "me/my-reranker", create_pr=True)  # doctest: +SKIP
    >>> url  # the pull request  # doctest: +SKIP
    'https://huggingface.co/me/my-reranker/discussions/1'
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HUB_STRATEGIES = ("end", "every_save", "checkpoint", "all_checkpoints")


def _api(token: str | None) -> Any:
    import huggingface_hub

    return huggingface_hub.HfApi(token=token)


def _readme_on_hub(api: Any, repo_id: str, revision: str | None) -> bool:
    """Whether the repository already has a README.md (True when that cannot be checked: keep it safe)."""
    try:
        return bool(api.file_exists(repo_id, "README.md", revision=revision))
    except Exception as exc:  # a transient hub error must not overwrite a card we could not see
        logger.warning("Could not check for an existing README.md on %r (%s: %s); keeping the hub's model card.",
                       repo_id, type(exc).__name__, exc)
        return True


def push_model(
    model: Any,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    safe_serialization: bool = True,
    commit_message: str | None = None,
    local_model_path: str | None = None,
    exist_ok: bool = False,
    replace_model_card: bool = False,
    train_datasets: list[str] | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Upload `model` (or the folder `local_model_path`) to `repo_id`; the commit URL, or the PR URL with
    ``create_pr=True``. The model card is written unless the repository has one and
    ``replace_model_card=False``. Semantics of sentence-transformers 6.2's ``push_to_hub``."""
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"repo_id must be a non-empty string like 'user/model', found {repo_id!r}")
    if local_model_path is not None and not Path(local_model_path).is_dir():
        raise ValueError(f"local_model_path={local_model_path!r}: no such directory")
    api = _api(token)
    repo_url = api.create_repo(repo_id=repo_id, private=private, repo_type=None, exist_ok=exist_ok or create_pr)
    repo_id = getattr(repo_url, "repo_id", None) or repo_id  # the hub may add the user's namespace
    model.model_card_data.set_model_id(repo_id)
    if revision is not None:
        api.create_branch(repo_id=repo_id, branch=revision, exist_ok=True)
    commit_message = commit_message or f"Add new {type(model).__name__} model"
    description = None
    if create_pr:
        description = (f"Hello!\n\nThis pull request has been automatically generated to add "
                       f"{type(model).__name__} compatibility.\n\n## Full Model Architecture:\n```\n{model}\n```\n")
    upload = {"repo_id": repo_id, "commit_message": commit_message, "commit_description": description,
              "create_pr": create_pr, "revision": revision}
    if local_model_path:
        info = api.upload_folder(folder_path=local_model_path, **upload)
    else:
        write_card = replace_model_card or not _readme_on_hub(api, repo_id, revision)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, safe_serialization=safe_serialization, model_name=repo_id,
                                  create_model_card=write_card, train_datasets=train_datasets)
            info = api.upload_folder(folder_path=tmp, **upload)
    if create_pr:
        logger.info("A pull request has been created at %s", info.pr_url)
        return str(info.pr_url)
    return str(getattr(info, "commit_url", info))


class HubPusher:
    """Training-time uploads for ``push_to_hub=True`` (transformers' ``hub_strategy`` semantics).

    - ``end``: the final model, card and training files once, at the end of training;
    - ``every_save``: also the model files at every checkpoint save (commit "Training in progress, ...");
    - ``checkpoint``: like every_save, plus the latest checkpoint under ``last-checkpoint/`` (resumable);
    - ``all_checkpoints``: like every_save, plus every checkpoint under its own ``checkpoint-<step>/``.

    Example:
        >>> pusher = HubPusher(args)  # doctest: +SKIP
        >>> pusher.push_checkpoint("out/checkpoint-500", step=500)  # doctest: +SKIP
    """

    def __init__(self, args: Any) -> None:
        self.strategy = str(args.hub_strategy)
        self.token = args.hub_token
        self.private = args.hub_private_repo
        self.revision = getattr(args, "hub_revision", None)
        self.repo_id = args.hub_model_id or Path(args.output_dir).absolute().name
        self.created = False

    def create_repo(self) -> str:
        """Create the repository (once); returns its id with the namespace the hub gave it."""
        if not self.created:
            url = _api(self.token).create_repo(repo_id=self.repo_id, private=self.private, exist_ok=True)
            self.repo_id = getattr(url, "repo_id", None) or self.repo_id
            self.created = True
        return self.repo_id

    def push_checkpoint(self, checkpoint_dir: str, step: int, epoch: float, by_epoch: bool) -> None:
        """Upload a just-saved checkpoint's model files (and the checkpoint itself for checkpoint strategies)."""
        if self.strategy == "end":
            return
        api = _api(self.token)
        repo_id = self.create_repo()
        message = f"Training in progress, epoch {int(epoch)}" if by_epoch else f"Training in progress, step {step}"
        api.upload_folder(repo_id=repo_id, folder_path=checkpoint_dir, commit_message=message, revision=self.revision,
                          allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "README.md"],
                          ignore_patterns=["optimizer.pt", "scheduler.pt", "rng_state*", "scaler.pt"])
        if self.strategy in ("checkpoint", "all_checkpoints"):
            path_in_repo = "last-checkpoint" if self.strategy == "checkpoint" else Path(checkpoint_dir).name
            api.upload_folder(repo_id=repo_id, folder_path=checkpoint_dir, path_in_repo=path_in_repo,
                              commit_message=message + ", checkpoint", revision=self.revision)

    def push_final(self, output_dir: str, commit_message: str | None = None) -> str:
        """Upload the final output directory (model, card, trainer state; no checkpoints); the commit URL."""
        repo_id = self.create_repo()
        info = _api(self.token).upload_folder(repo_id=repo_id, folder_path=output_dir,
                                              commit_message=commit_message or "End of training",
                                              revision=self.revision,
                                              ignore_patterns=["checkpoint-*", "checkpoint-*/**", "runs/**", ".tmp-*",
                                                               "eval/**", "_*"])
        return str(getattr(info, "commit_url", info))


class HubPushCallback:
    """A ``TrainerCallback`` that uploads each checkpoint when it is saved (rank 0 only).

    The loop passes the saved checkpoint's local directory as ``checkpoint_dir`` to ``on_save``.
    """

    def __init__(self, pusher: HubPusher) -> None:
        self.pusher = pusher

    def on_save(self, args: Any, state: Any, control: Any, checkpoint_dir: str | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and checkpoint_dir and "://" not in str(checkpoint_dir):
            self.pusher.push_checkpoint(str(checkpoint_dir), state.global_step, state.epoch,
                                        by_epoch=str(args.save_strategy) == "epoch")
