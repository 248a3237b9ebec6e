"""Can this machine read every model and dataset of the plan? (``reproduce-paper --check``)

:func:`plan_repositories` lists them (the model, every ``hf:`` corpus of ``prepare-data``, the evaluation suite's
datasets); :func:`check_access` asks a hub client about each with the user's token. The client is injectable
(:class:`HubClient`; tests use a stand-in); the default wraps ``huggingface_hub.HfApi``. Offline
(``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, or the hub unreachable) nothing is checked, and the result says so.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

OK, DENIED, OFFLINE = "ok", "no access", "not checked"


class AccessDenied(Exception):
    """The hub refused one repository (``why``: what to do about it)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class HubOffline(Exception):
    """The hub cannot be reached (no network, or offline mode)."""


class HubClient(Protocol):
    def check(self, repo_id: str, repo_type: str) -> None:
        """Return if the token can read the repository; raise :class:`AccessDenied` or :class:`HubOffline`."""

    def file_sizes(self, repo_id: str, repo_type: str, pattern: str) -> list[int]:
        """Sizes of the repository's files matching ``pattern`` (fnmatch on the path)."""


@dataclass(frozen=True)
class Repo:
    repo_id: str
    repo_type: str  #: "model" or "dataset"
    used_for: str


def offline_env(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(str(env.get(v, "")).strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


class HfHubClient:
    """:class:`HubClient` over ``huggingface_hub`` (the token of ``HF_TOKEN`` or ``hf auth login``)."""

    def __init__(self) -> None:
        from huggingface_hub import HfApi

        self.api = HfApi()

    def check(self, repo_id: str, repo_type: str) -> None:
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

        try:
            self.api.auth_check(repo_id, repo_type=repo_type)
        except GatedRepoError:
            raise AccessDenied(f"gated: accept its terms on https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}"
                               f"{repo_id} with the account of your token") from None
        except RepositoryNotFoundError:
            raise AccessDenied("not found, or private and your token cannot see it: check the name, then "
                               "`hf auth login` or HF_TOKEN") from None
        except HfHubHTTPError as e:
            raise AccessDenied(f"the hub refused it ({str(e).splitlines()[0]}); check your token (`hf auth login`)") from None
        except Exception as e:  # noqa: BLE001 - httpx/requests raise their own transport errors
            if isinstance(e, OSError) or any(w in type(e).__name__ for w in ("Connect", "Timeout", "Network", "Transport")):
                raise HubOffline(str(e) or type(e).__name__) from None
            raise

    def file_sizes(self, repo_id: str, repo_type: str, pattern: str) -> list[int]:
        folder = pattern.split("*")[0].rpartition("/")[0] or None  # list only the folder the pattern names
        entries = self.api.list_repo_tree(repo_id, path_in_repo=folder, repo_type=repo_type, recursive=True)
        return [int(getattr(e, "size", 0) or 0) for e in entries
                if getattr(e, "size", None) is not None and fnmatch.fnmatch(e.path, pattern)]


def plan_repositories(parsed: Sequence[Any], suite_datasets: Iterable[str]) -> list[Repo]:
    """Every hub repository the plan reads: the model (unless a local folder), the ``hf:`` corpora of
    ``prepare-data``, and the evaluation suite's datasets."""
    from neuronmoe.budget.runs import language_sources

    out: dict[str, Repo] = {}
    model = next((a.model for a in parsed if getattr(a, "model", None)), None)
    if model and not Path(model).exists() and "/" in model:
        out[model] = Repo(model, "model", "the base model")
    prep = next((a for a in parsed if a.command == "prepare-data"), None)
    specs = [str(r) for r in ([prep.source] if prep is not None and prep.source else [])]
    for name in language_sources(parsed).values():
        if any(f"hf:{name}" in s for s in specs) and name not in out:
            out[name] = Repo(name, "dataset", "prepare-data")
    for name in suite_datasets:
        out.setdefault(name, Repo(name, "dataset", "evaluation (paper suite)"))
    return list(out.values())


def check_access(repos: Sequence[Repo], client: HubClient | None = None,
                 environ: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """One record per repository: ``status`` ok / no access (with ``what_to_do``) / not checked (offline)."""
    if offline_env(environ):
        return [{"repo": r.repo_id, "type": r.repo_type, "used_for": r.used_for, "status": OFFLINE,
                 "what_to_do": "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set: access was not checked"} for r in repos]
    client = client or HfHubClient()
    out, offline = [], None
    for r in repos:
        rec = {"repo": r.repo_id, "type": r.repo_type, "used_for": r.used_for, "status": OK, "what_to_do": ""}
        if offline is not None:
            rec.update(status=OFFLINE, what_to_do=f"the hub is unreachable ({offline}): access was not checked")
        else:
            try:
                client.check(r.repo_id, r.repo_type)
            except AccessDenied as e:
                rec.update(status=DENIED, what_to_do=e.why)
            except HubOffline as e:
                offline = str(e).splitlines()[0] if str(e) else "no network"
                rec.update(status=OFFLINE, what_to_do=f"the hub is unreachable ({offline}): access was not checked")
        out.append(rec)
    return out


def hub_sizes(repos: Sequence[Repo], budget_cfg: Mapping[str, Any], client: HubClient) -> dict[str, float]:
    """Sizes from the hub's metadata, replacing recorded ones: a model's ``*.safetensors``; the average file of a
    corpus read file by file (SlimPajama) or the one file read whole (SkyPile). Missing or failing: left out."""
    out: dict[str, float] = {}
    datasets = budget_cfg["downloads"]["datasets"]
    for r in repos:
        try:
            if r.repo_type == "model":
                sizes = client.file_sizes(r.repo_id, "model", "*.safetensors")
                if sizes:
                    out[r.repo_id] = float(sum(sizes))
            elif r.repo_id in datasets and "file_pattern" in datasets[r.repo_id]:
                sizes = client.file_sizes(r.repo_id, "dataset", datasets[r.repo_id]["file_pattern"])
                if sizes:
                    out[r.repo_id] = float(sum(sizes)) / len(sizes)
        except (AccessDenied, HubOffline, OSError):
            continue
    return out


def access_problems(records: Sequence[Mapping[str, str]]) -> list[str]:
    return [f"{r['type']} {r['repo']} ({r['used_for']}): {r['what_to_do']}" for r in records if r["status"] == DENIED]
