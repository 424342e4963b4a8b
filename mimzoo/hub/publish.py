"""Writing a repo folder and uploading it to the Hub in one atomic commit.

The repo folder is written complete first (atomically, when it is kept on disk), every path in it
is checked, and then all files go to the Hub in a single commit whose parent is the branch head seen
before uploading: LFS objects upload first, the commit moves the branch last, so a failure at any
point leaves the repo at its previous revision. The token comes from ``HF_TOKEN``/the huggingface_hub
login (or ``token=``) and is never logged or put in an error message.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import atomic_dir
from .._deps import require
from .._version import __version__
from ..errors import MimzooError
from ..weights import sha256_of
from .repo_id import validate_repo_path

log = logging.getLogger(__name__)

# files a publish owns: when a new publish no longer has one of them, the commit deletes it
MANAGED_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "README.md")
MANAGED_FOLDERS = ("onnx/",)


class PublishError(MimzooError):
    """Publishing failed; the message says what state the remote repo is in and what to re-run."""


@dataclass(frozen=True)
class RepoFile:
    """One file of the repo folder."""

    path: str  # path inside the repo
    size: int  # bytes
    sha256: str  # hex digest of the content


@dataclass(frozen=True)
class PublishResult:
    """What `mimzoo.publish` did."""

    repo_id: str  # org/name
    revision: str  # branch published to
    files: tuple[RepoFile, ...]  # the repo folder's files
    license: str  # license of the weights, as stated in the card
    noncommercial: bool  # True when that license forbids commercial use
    dry_run: bool  # True when nothing was uploaded
    folder: Path | None = None  # where the repo folder was written (dry run or -o)
    commit: str | None = None  # the new commit id (None for a dry run)
    previous: str | None = None  # the branch head before publishing
    url: str | None = None  # the repo's URL on the Hub

    @property
    def load_name(self) -> str:
        """What `mimzoo.load` takes to get exactly this publication."""
        return f"hf-hub:{self.repo_id}@{self.commit}" if self.commit else f"hf-hub:{self.repo_id}"


def staging_root() -> Path:
    """Where a publish without -o stages its repo folder: ``$MIMZOO_CACHE/staging`` (else
    ``~/.cache/mimzoo/staging``), mimzoo's own area, never the shared /tmp."""
    from ..weights.url_download import weights_cache_dir

    return weights_cache_dir().parent / "staging"


@contextlib.contextmanager
def staging_folder(kind: str) -> Iterator[Path]:
    """A private folder under :func:`staging_root` for the block, removed when it ends. What a killed
    run left there (its process is gone) is removed first, by whichever publish or release runs next."""
    from .._outputs import sweep_temps, temp_name

    root = staging_root()
    root.mkdir(parents=True, exist_ok=True)
    sweep_temps(root)
    tmp = root / temp_name(kind, "tmp", uuid.uuid4().hex[:8])
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def repo_folder(output: str | Path | None, *, overwrite: bool = False) -> Iterator[Path]:
    """A folder to write the repo into: `output` (appearing complete or not at all) or a staging folder
    (:func:`staging_folder`)."""
    if output is None:
        with staging_folder("publish") as tmp:
            yield tmp
        return
    try:
        with atomic_dir(output, overwrite=overwrite, kind="hub-folder") as tmp:
            yield tmp
    except FileExistsError as e:
        raise PublishError(f"{output} already exists; choose another folder or pass --overwrite (overwrite=True)") from e


def write_repo(folder: Path, encoder: Any, *, block: dict[str, Any], card: str) -> tuple[RepoFile, ...]:
    """Write model.safetensors, config.json and README.md into `folder` (exports are staged before).

    Returns every file of the folder with its size and sha256, each path checked with validate_repo_path.
    """
    from .folder import write_folder

    write_folder(encoder, folder, extra_block=block)
    (folder / "README.md").write_text(card, encoding="utf-8")
    return tuple(
        RepoFile(validate_repo_path(p.relative_to(folder).as_posix()), p.stat().st_size, sha256_of(p))
        for p in sorted(folder.rglob("*")) if p.is_file()
    )


def upload(
    folder: Path,
    files: Sequence[RepoFile],
    *,
    repo_id: str,
    revision: str,
    private: bool,
    endpoint: str | None,
    token: str | None,
    message: str,
    rerun: str,
) -> tuple[str, str | None, str]:
    """Upload `files` of `folder` to `repo_id@revision` as one commit; returns (commit, previous head, url).

    Every request is bounded by HF_HUB_ETAG_TIMEOUT (connecting) and HF_HUB_DOWNLOAD_TIMEOUT (waiting)."""
    from ..weights.hub_client import hub

    hf = hub()
    api = hf.HfApi(endpoint=endpoint, token=token, library_name="mimzoo", library_version=__version__)
    where = f"{repo_id}@{revision}"
    step = _Step(api, repo_id, revision, rerun, token)
    with step("create the repo"):
        api.create_repo(repo_id, private=private, exist_ok=True)
    with step("read the repo"):
        info = api.model_info(repo_id)
    if private and not info.private:
        raise PublishError(f"{repo_id} already exists and is public; --private cannot hide it: make it private on the Hub "
                           "or publish to another repo")
    if revision != "main":
        with step(f"create branch {revision}"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        with step("read the branch head"):
            info = api.model_info(repo_id, revision=revision)
    step.previous = info.sha  # the commit's parent: if the branch moves meanwhile, the commit is refused
    ops = [hf.CommitOperationAdd(f.path, str(folder / f.path)) for f in files]
    ops += [hf.CommitOperationDelete(p) for p in _stale(info, files)]
    total = sum(f.size for f in files)
    log.info("uploading %d files (%.1f MB) to %s at %s", len(files), total / 1e6, where, api.endpoint)
    with step("upload and commit"):
        commit = api.create_commit(repo_id, ops, commit_message=message, revision=revision, parent_commit=info.sha)
    return commit.oid, info.sha, f"{api.endpoint}/{repo_id}"


def _stale(info: Any, files: Sequence[RepoFile]) -> list[str]:
    """Files of the previous publish that the new one no longer has (an old ONNX export, a .bin)."""
    new = {f.path for f in files}
    old = [s.rfilename for s in (info.siblings or [])]
    return [p for p in old if p not in new and (p in MANAGED_FILES or p.startswith(MANAGED_FOLDERS))]


class _Step:
    """Turns a failed Hub call into a PublishError naming the step, the remote state and the fix."""

    def __init__(self, api: Any, repo_id: str, revision: str, rerun: str, token: str | None):
        self.api, self.repo_id, self.revision, self.rerun, self.token = api, repo_id, revision, rerun, token
        self.previous: str | None = None

    @contextlib.contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        try:
            yield
        except MimzooError:
            raise
        except Exception as e:  # huggingface_hub / httpx errors; anything else is a bug but still reported
            raise PublishError(self._message(what, e)) from e

    def _message(self, what: str, e: Exception) -> str:
        state = (f"{self.repo_id}@{self.revision} is unchanged at {self.previous[:12]} (nothing was committed)"
                 if self.previous else f"nothing was committed to {self.repo_id}")
        return _scrub(f"could not {what} ({_reason(e, self.api.endpoint, self.repo_id)}); {state}; "
                      f"fix that and re-run: {self.rerun}", self.token)


def _reason(e: Exception, endpoint: str, repo_id: str) -> str:
    status = getattr(getattr(e, "response", None), "status_code", None)
    org = repo_id.split("/")[0]
    if status == 401:
        return f"the Hub at {endpoint} refused the credentials (401): set HF_TOKEN to a token with write access to '{org}'"
    if status == 403:
        return f"the token has no write access to '{org}' (403)"
    if status == 412:
        return "someone else committed to the branch meanwhile (412)"
    from ..weights.hub_client import network_failure

    failure = network_failure(e, endpoint, "HF_HUB_DOWNLOAD_TIMEOUT")
    if failure is not None:
        return failure
    if type(e).__name__ == "OfflineModeIsEnabled":
        return f"offline mode is on (HF_HUB_OFFLINE=1): unset it to publish to {endpoint}"
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
    if isinstance(status, int):
        return f"the Hub at {endpoint} answered HTTP {status}: {first}"
    return f"{first} [{type(e).__name__}]"


def _scrub(text: str, token: str | None) -> str:
    """Remove the token (given or from the environment/login) from a message, whatever put it there."""
    hf = require("huggingface_hub")
    for secret in {token, hf.get_token()}:
        if secret:
            text = text.replace(secret, "***")
    return text
