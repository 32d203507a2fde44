"""Model card data and hub uploads, against sentence-transformers 6.2.

The hub is a local stand-in: ``huggingface_hub.HfApi``'s network methods are replaced (create_repo,
create_branch, file_exists, upload_folder); everything above them (saving, the card, the arguments
passed) is the real code path. Uploaded folders are copied into a local directory per repository.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import CommitInfo, RepoUrl

from raycross import CrossEncoder
from raycross.model_card import USER_FIELDS, CrossEncoderModelCardData, read_front_matter

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LocalHub:
    """Records every call; ``upload_folder`` copies the folder under ``root/<repo_id>/<path_in_repo>``."""

    def __init__(self, root: Path, readme_exists: bool = False) -> None:
        self.root, self.readme_exists, self.calls = root, readme_exists, []

    def install(self, monkeypatch) -> LocalHub:
        hub = self

        def create_repo(api, repo_id, private=None, repo_type=None, exist_ok=False, **kwargs):
            hub.calls.append(("create_repo", {"repo_id": repo_id, "private": private, "exist_ok": exist_ok,
                                              "token": api.token}))
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_branch(api, repo_id, branch, exist_ok=False, **kwargs):
            hub.calls.append(("create_branch", {"repo_id": repo_id, "branch": branch}))

        def file_exists(api, repo_id, filename, revision=None, **kwargs):
            hub.calls.append(("file_exists", {"repo_id": repo_id, "filename": filename}))
            return hub.readme_exists and filename == "README.md"

        def upload_folder(api, repo_id, folder_path, path_in_repo=None, commit_message=None,
                          commit_description=None, create_pr=False, revision=None, allow_patterns=None,
                          ignore_patterns=None, **kwargs):
            from huggingface_hub.utils import filter_repo_objects  # the hub client's own pattern rules

            target = hub.root / repo_id / (path_in_repo or "")
            every = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
            files = list(filter_repo_objects(every, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
            for name in files:
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder_path) / name, target / name)
            hub.calls.append(("upload_folder", {"repo_id": repo_id, "files": files, "path_in_repo": path_in_repo,
                                                "commit_message": commit_message, "create_pr": create_pr,
                                                "commit_description": commit_description, "revision": revision,
                                                "ignore_patterns": ignore_patterns}))
            n = len([c for c in hub.calls if c[0] == "upload_folder"])
            return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{n:040d}",
                              commit_message=commit_message or "", commit_description=commit_description or "",
                              oid=f"{n:040d}", pr_url=f"https://huggingface.co/{repo_id}/discussions/{n}" if create_pr else None)

        for name, fn in (("create_repo", create_repo), ("create_branch", create_branch),
                         ("file_exists", file_exists), ("upload_folder", upload_folder)):
            monkeypatch.setattr(huggingface_hub.HfApi, name, fn)
        return self

    def uploads(self) -> list[dict]:
        return [kwargs for name, kwargs in self.calls if name == "upload_folder"]


def test_card_data_user_fields_match_sentence_transformers():
    st_card = pytest.importorskip("sentence_transformers.cross_encoder.model_card")
    theirs = {f.name for f in dataclasses.fields(st_card.CrossEncoderModelCardData) if f.init}
    assert set(USER_FIELDS) == theirs
    ours, st = CrossEncoderModelCardData(), st_card.CrossEncoderModelCardData()
    assert ours.tags == st.tags and ours.library_name == st.library_name


def test_save_writes_card_reused_across_saves_and_reloads(tiny_model_path, tmp_path):
    card = CrossEncoderModelCardData(language="en", license="apache-2.0", model_name="Tiny reranker",
                                     train_datasets=[{"name": "WordNet", "id": "me/wordnet"}])
    model = CrossEncoder(str(tiny_model_path), device="cpu", model_card_data=card)
    model.save_pretrained(tmp_path / "a")
    text = (tmp_path / "a" / "README.md").read_text()
    front = read_front_matter(text)
    assert front["language"] == "en" and front["license"] == "apache-2.0" and front["datasets"] == ["me/wordnet"]
    assert front["base_model"] == str(tiny_model_path) and front["pipeline_tag"] == "text-ranking"
    assert "# Tiny reranker" in text and "sentence-transformers" in front["tags"]
    model.model_card_data.add_tags("extra-tag")  # the same object on the next save
    model.save_pretrained(tmp_path / "b")
    front_b = read_front_matter((tmp_path / "b" / "README.md").read_text())
    assert front_b["license"] == "apache-2.0" and "extra-tag" in front_b["tags"]
    reloaded = CrossEncoder(str(tmp_path / "b"), device="cpu")
    assert reloaded.model_card_data.license == "apache-2.0" and reloaded.model_card_data.language == ["en"]
    assert reloaded.model_card_data.base_model == str(tiny_model_path)
    reloaded.save_pretrained(tmp_path / "c")  # unchanged and untrained: the card is kept as it was
    assert (tmp_path / "c" / "README.md").read_text() == (tmp_path / "b" / "README.md").read_text()
    with pytest.raises(ValueError, match="unknown keys \\['licence'\\]"):
        CrossEncoder(str(tiny_model_path), device="cpu", model_card_data={"licence": "mit"})


def test_evaluator_metrics_go_into_the_card(tiny_model):
    from raycross.evaluation import CrossEncoderRerankingEvaluator

    evaluator = CrossEncoderRerankingEvaluator([{"query": "a man", "positive": ["a dog"], "negative": ["the cat"]}],
                                               name="dev")
    metrics = evaluator(tiny_model)
    (entry,) = tiny_model.model_card_data.eval_results
    assert entry["metrics"] == metrics and entry["primary_metric"] == "dev_ndcg@10"
    index = tiny_model.model_card_data.to_dict()["model-index"][0]["results"][0]
    assert {m["name"] for m in index["metrics"]} == set(metrics)


def test_push_to_hub_pr_url_card_and_args_like_st(tiny_model_path, tmp_path, monkeypatch):
    hub = LocalHub(tmp_path / "hub").install(monkeypatch)
    model = CrossEncoder(str(tiny_model_path), device="cpu", model_card_data={"license": "mit"})
    url = model.push_to_hub("me/tiny", token="t0k", create_pr=True, train_datasets=["me/pairs"])
    assert url == "https://huggingface.co/me/tiny/discussions/1"
    (upload,) = hub.uploads()
    assert upload["create_pr"] is True and upload["commit_message"] == "Add new CrossEncoder model"
    assert "pull request has been automatically generated" in upload["commit_description"]
    assert {"README.md", "config.json", "model.safetensors", "config_sentence_transformers.json"} <= set(upload["files"])
    readme = (tmp_path / "hub" / "me/tiny" / "README.md").read_text()
    assert 'CrossEncoder("me/tiny")' in readme and read_front_matter(readme)["datasets"] == ["me/pairs"]
    assert read_front_matter(readme)["license"] == "mit"
    create = dict(hub.calls)["create_repo"]
    assert create["exist_ok"] is True and create["token"] == "t0k"  # create_pr implies exist_ok, as in 6.2

    # sentence-transformers 6.2 through the same stand-in: same kind of URL and upload arguments
    st = pytest.importorskip("sentence_transformers")
    import sentence_transformers.base.model as st_base

    monkeypatch.setattr(st_base, "load_file_path", lambda *a, **k: None)  # its README probe (no README yet)
    st_hub = LocalHub(tmp_path / "st-hub").install(monkeypatch)
    st_url = st.CrossEncoder(str(tiny_model_path), device="cpu").push_to_hub("me/tiny", token="t0k", create_pr=True)
    assert st_url == url
    (st_upload,) = st_hub.uploads()
    for key in ("create_pr", "commit_message", "revision", "path_in_repo"):
        assert st_upload[key] == upload[key], key
    assert "README.md" in st_upload["files"]


def test_push_to_hub_keeps_or_replaces_hub_card_and_local_folder(tiny_model_path, tmp_path, monkeypatch):
    hub = LocalHub(tmp_path / "hub", readme_exists=True).install(monkeypatch)
    model = CrossEncoder(str(tiny_model_path), device="cpu")
    url = model.push_to_hub("me/tiny", revision="dev")
    assert url.startswith("https://huggingface.co/me/tiny/commit/")
    assert ("create_branch", {"repo_id": "me/tiny", "branch": "dev"}) in hub.calls
    assert "README.md" not in hub.uploads()[-1]["files"] and hub.uploads()[-1]["revision"] == "dev"
    model.push_to_hub("me/tiny", replace_model_card=True)
    assert "README.md" in hub.uploads()[-1]["files"]
    local = tmp_path / "local"
    local.mkdir()
    (local / "weights.bin").write_text("x")
    model.push_to_hub("me/tiny", local_model_path=str(local), commit_message="folder")
    assert hub.uploads()[-1]["files"] == ["weights.bin"] and hub.uploads()[-1]["commit_message"] == "folder"
    with pytest.raises(ValueError, match="local_model_path"):
        model.push_to_hub("me/tiny", local_model_path=str(tmp_path / "missing"))


@pytest.mark.parametrize("strategy, checkpoint_paths", [
    ("end", []),
    ("every_save", []),
    ("checkpoint", ["last-checkpoint", "last-checkpoint"]),
    ("all_checkpoints", ["checkpoint-2", "checkpoint-4"]),
])
def test_trainer_hub_strategies(tiny_model_path, tmp_path, monkeypatch, strategy, checkpoint_paths):
    from raycross import CrossEncoderTrainer, CrossEncoderTrainingArguments

    hub = LocalHub(tmp_path / "hub").install(monkeypatch)
    model = CrossEncoder(str(tiny_model_path), device="cpu", model_card_data={"license": "mit"})
    data = {"a": ["a man", "a dog", "the cat", "a car"] * 2, "b": ["a woman", "a cat", "a dog", "red"] * 2,
            "label": [1.0, 0.0, 1.0, 0.0] * 2}
    args = CrossEncoderTrainingArguments(
        str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=4, save_strategy="steps", save_steps=2,
        push_to_hub=True, hub_model_id="me/trained", hub_strategy=strategy, hub_private_repo=True, hub_token="t0k",
        prefetch_batches=0)
    CrossEncoderTrainer(model, args, train_dataset=data).train()
    uploads = hub.uploads()
    final = uploads[-1]
    assert final["commit_message"] == "End of training" and "README.md" in final["files"]
    assert not any(f.startswith("checkpoint-") for f in final["files"])
    progress = [u for u in uploads[:-1] if u["path_in_repo"] is None]
    assert [u["commit_message"] for u in progress] == (
        [] if strategy == "end" else ["Training in progress, step 2", "Training in progress, step 4"])
    assert [u["path_in_repo"] for u in uploads[:-1] if u["path_in_repo"]] == checkpoint_paths
    assert all(c[1]["private"] is True for c in hub.calls if c[0] == "create_repo")
    front = read_front_matter((tmp_path / "hub" / "me/trained" / "README.md").read_text())
    assert front["license"] == "mit" and "generated_from_trainer" in front["tags"]
    assert "t0k" not in (tmp_path / "out" / "training_args.json").read_text()
