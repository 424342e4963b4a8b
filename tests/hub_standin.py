"""A Hugging Face Hub stand-in: a real HTTP server on 127.0.0.1 for huggingface_hub's real client.

It speaks enough of the Hub's HTTP API for huggingface_hub 2.4 to create repos, commit to them and
download from them, with the same headers and typed errors the real Hub sends:

- ``POST /api/repos/create`` (``visibility: private``), ``409`` when the repo exists; a new repo gets
  an initial commit holding ``.gitattributes``, as on the Hub;
- ``GET /api/models/{repo}[/revision/{rev}]`` (model info: ``sha``, ``private``, ``siblings``),
  ``GET /api/models/{repo}/refs`` and ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (one page, so
  ``snapshot_download`` works);
- ``POST /api/models/{repo}/branch/{branch}`` (``409`` when it exists);
- ``POST /api/validate-yaml`` (called by every commit that adds ``README.md``);
- ``POST /api/models/{repo}/preupload/{rev}``: ``uploadMode`` ``regular`` or ``lfs`` (binary samples,
  LFS suffixes, or >= 10 MiB), ``shouldIgnore`` and the ``oid`` of the file already there;
- the LFS batch API ``POST /{repo}.git/info/lfs/objects/batch`` -> upload by ``PUT`` to a signed URL
  served here (sha256 and size checked) -> ``POST .../objects/verify``;
- ``POST /api/models/{repo}/commit/{rev}``: the ndjson commit (``header``, base64 ``file``, ``lfsFile``,
  ``deletedFile``, ``deletedFolder``), applied atomically on top of the branch head, ``412`` when
  ``parentCommit`` is not the head;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` (git blob sha1) or
  ``X-Linked-Etag``/``X-Linked-Size`` (sha256 for LFS files), ``Content-Length`` and byte ranges;
- typed errors in ``X-Error-Code``: ``RepoNotFound`` (``401`` for a private repo without a token,
  as the Hub does, ``404`` otherwise), ``RevisionNotFound``, ``EntryNotFound``;
- revisions are a real commit history: every commit keeps its files, so an old commit stays
  downloadable by its id after the branch moved on;
- auth by ``Authorization: Bearer <token>``; each token may write to some namespaces.

NOT covered, so the tests do not exercise these client paths:

- **Xet storage**, both ways. With ``hf_xet`` installed the client uploads LFS files through Xet
  unless ``HF_HUB_DISABLE_XET=1``; the Xet token endpoints here answer ``501`` saying so. Downloads
  use plain HTTP because no ``X-Xet-*`` headers are sent.
- LFS multipart transfers (``chunk_size``), redirects to a CDN, pull requests (``create_pr``),
  copies between repos, tags, gated or disabled repos, datasets and spaces, paginated listings,
  rate limits.

Faults for failure tests: ``hub.fail("lfs-put" | "commit" | "preupload" | "lfs-batch" | "resolve" |
"create-repo" | "model-info", status)`` makes the next such request answer ``status`` (400, 500, ...).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".data", ".pt", ".pth", ".ckpt", ".npz", ".engine", ".h5")
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub sends files this large through LFS whatever their type
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()
REPO = r"(?P<repo>[^/]+/[^/]+?)"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub sends as the ETag of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """One file's content in the repo's history."""

    data: bytes  # the content
    lfs: bool  # stored through LFS (ETag is its sha256) or in git (ETag is its blob sha1)

    @property
    def oid(self) -> str:
        return hashlib.sha256(self.data).hexdigest() if self.lfs else git_blob_sha1(self.data)


@dataclass
class Commit:
    oid: str  # 40-hex commit id
    parent: str | None  # previous commit on the branch
    title: str  # commit summary
    files: dict[str, Blob]  # the full tree at this commit


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit id
    commits: dict[str, Commit] = field(default_factory=dict)  # every commit ever made

    def resolve(self, rev: str) -> Commit | None:
        oid = self.branches.get(rev, rev)
        return self.commits.get(oid)


class HubError(Exception):
    """An HTTP error answer, with the Hub's typed error header."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class HubStandIn:
    """The server and its state. Use as a context manager, or start() / stop().

    Args:
        tokens: token -> namespaces it may write to (and read privately).
    """

    def __init__(self, tokens: dict[str, tuple[str, ...]] | None = None):
        self.tokens = dict(tokens or {})
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # uploaded LFS objects by sha256, committed or not
        self.log: list[str] = []  # "METHOD /path" of every request (never headers or bodies)
        self.lock = threading.RLock()
        self._faults: dict[str, list[int]] = {}
        self._secret = secrets.token_bytes(16)
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> HubStandIn:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- test helpers -----------------------------------------------------------------------------
    def fail(self, route: str, status: int = 500, times: int = 1) -> None:
        """Make the next `times` requests of `route` answer `status`."""
        self._faults.setdefault(route, []).extend([status] * times)

    def put(self, repo_id: str, files: dict[str, bytes], *, private: bool = False, title: str = "seed") -> str:
        """Commit `files` to `repo_id`'s main branch directly (creating the repo), as a test's starting point."""
        with self.lock:
            repo = self.repos.get(repo_id) or self.create_repo(repo_id, private)
            parent = repo.commits[repo.branches["main"]]
            blobs = {p: Blob(d, p.endswith(LFS_SUFFIXES) or len(d) >= LFS_MIN_SIZE) for p, d in files.items()}
            commit = self._new_commit(repo, parent.oid, title, {**parent.files, **blobs})
            repo.branches["main"] = commit.oid
            return commit.oid

    def head(self, repo_id: str, branch: str = "main") -> str:
        return self.repos[repo_id].branches[branch]

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        commit = self.repos[repo_id].resolve(rev)
        assert commit is not None, rev
        return {p: b.data for p, b in commit.files.items()}

    def history(self, repo_id: str, branch: str = "main") -> list[str]:
        """Commit ids from the branch head back to the first commit."""
        repo, out = self.repos[repo_id], []
        oid: str | None = repo.branches[branch]
        while oid:
            out.append(oid)
            oid = repo.commits[oid].parent
        return out

    # -- state changes (under the lock) -----------------------------------------------------------
    def _take_fault(self, route: str) -> None:
        with self.lock:
            queue = self._faults.get(route)
            status = queue.pop(0) if queue else None
        if status is not None:
            raise HubError(status, f"injected failure of {route}")

    def _new_commit(self, repo: Repo, parent: str | None, title: str, files: dict[str, Blob]) -> Commit:
        self._counter += 1
        seed = json.dumps([parent, title, sorted((p, b.oid) for p, b in files.items()), self._counter])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, files)
        repo.commits[commit.oid] = commit
        return commit

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        with self.lock:
            if repo_id in self.repos:
                raise HubError(409, "You already created this model repo", headers={})
            repo = Repo(repo_id, private)
            first = self._new_commit(repo, None, "initial commit", {".gitattributes": Blob(GITATTRIBUTES, False)})
            repo.branches["main"] = first.oid
            self.repos[repo_id] = repo
            return repo

    def signature(self, oid: str) -> str:
        return hmac.new(self._secret, oid.encode(), "sha256").hexdigest()[:32]


# -- request handling ----------------------------------------------------------------------------

LFS_PUT = re.compile(r"^/_lfs/(?P<oid>[0-9a-f]{64})$")
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/api/repos/create$"), "create_repo"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("GET", re.compile(rf"^/api/models/{REPO}$"), "model_info"),
    ("GET", re.compile(rf"^/api/models/{REPO}/revision/(?P<rev>[^/]+)$"), "model_info"),
    ("GET", re.compile(rf"^/api/models/{REPO}/refs$"), "refs"),
    ("GET", re.compile(rf"^/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$"), "tree"),
    ("POST", re.compile(rf"^/api/models/{REPO}/branch/(?P<rev>[^/]+)$"), "branch"),
    ("POST", re.compile(rf"^/api/models/{REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/models/{REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("GET", re.compile(rf"^/api/models/{REPO}/xet-(read|write)-token/(?P<rev>[^/]+)$"), "xet"),
    ("POST", re.compile(rf"^/{REPO}\.git/info/lfs/objects/batch$"), "lfs_batch"),
    ("POST", re.compile(rf"^/{REPO}\.git/info/lfs/objects/verify$"), "lfs_verify"),
    ("PUT", LFS_PUT, "lfs_put"),
    ("GET", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
    ("HEAD", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hub-standin/1"

    @property
    def hub(self) -> HubStandIn:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # requests are recorded in hub.log (method and path only), never on stderr

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # -- plumbing ---------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        self.query = parse_qs(parts.query)
        self.body = self._read_body()
        with self.hub.lock:
            self.hub.log.append(f"{method} {parts.path}")
        for verb, pattern, name in ROUTES:
            m = pattern.match(parts.path) if verb == method else None
            if m:
                args = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
                try:
                    getattr(self, f"_{name}")(**args)
                except HubError as e:
                    self._error(e)
                return
        self._error(HubError(404, f"no route {method} {parts.path}"))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, obj: object, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _error(self, e: HubError) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": e.message, **e.headers}
        if e.code:
            headers["X-Error-Code"] = e.code
        self._send(e.status, json.dumps({"error": e.message}).encode(), headers, head=self.command == "HEAD")

    def _payload(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as e:
            raise HubError(400, f"invalid JSON body: {e}") from e

    # -- auth -------------------------------------------------------------------------------------
    def _namespaces(self) -> tuple[str, ...] | None:
        """Namespaces of the caller's token; None without a token; 401 for an unknown token."""
        auth = self.headers.get("Authorization", "")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.hub.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.hub.tokens[token]

    def _readable(self, repo_id: str) -> Repo:
        namespaces = self._namespaces()
        repo = self.hub.repos.get(repo_id)
        allowed = repo is not None and (not repo.private or repo_id.split("/")[0] in (namespaces or ()))
        if not allowed:
            # like the Hub: private and missing repos look the same; 401 when no token was sent
            status = 401 if namespaces is None else 404
            raise HubError(status, "Repository not found", "RepoNotFound")
        assert repo is not None
        return repo

    def _writable(self, repo_id: str) -> Repo:
        namespaces = self._namespaces()
        if namespaces is None:
            raise HubError(401, "You must be authenticated to write to a repo")
        repo = self._readable(repo_id)
        if repo_id.split("/")[0] not in namespaces:
            raise HubError(403, f"You don't have write access to {repo_id}")
        return repo

    def _commit_at(self, repo: Repo, rev: str) -> Commit:
        commit = repo.resolve(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    # -- repos ------------------------------------------------------------------------------------
    def _create_repo(self) -> None:
        self.hub._take_fault("create-repo")
        body = self._payload()
        namespaces = self._namespaces()
        org, name = body.get("organization"), body.get("name")
        if namespaces is None:
            raise HubError(401, "You must be authenticated to create a repo")
        if not org or org not in namespaces:
            raise HubError(403, f"You don't have the rights to create a model under the namespace '{org}'")
        repo_id = f"{org}/{name}"
        if body.get("type", "model") != "model":
            raise HubError(400, "the stand-in only hosts model repos")
        url = f"{self._base()}/{repo_id}"
        try:
            self.hub.create_repo(repo_id, private=body.get("visibility") == "private")
        except HubError as e:
            e.headers = {}
            self._send(409, json.dumps({"error": e.message, "url": url}).encode(), {"Content-Type": "application/json"})
            return
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _model_info(self, repo: str, rev: str = "main") -> None:
        self.hub._take_fault("model-info")
        r = self._readable(repo)
        commit = self._commit_at(r, rev)
        self._json({
            "_id": hashlib.md5(repo.encode()).hexdigest()[:24], "id": repo, "author": repo.split("/")[0],
            "sha": commit.oid, "private": r.private, "disabled": False, "gated": False, "tags": [],
            "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        })

    def _refs(self, repo: str) -> None:
        r = self._readable(repo)
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in sorted(r.branches.items())]
        self._json({"branches": branches, "converts": [], "tags": []})

    def _tree(self, repo: str, rev: str, path: str = "") -> None:
        """Files (and folders) under `path`; one page, recursive or not."""
        commit = self._commit_at(self._readable(repo), rev)
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        entries: dict[str, dict] = {}
        for p, blob in sorted(commit.files.items()):
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, {"type": "directory", "oid": git_blob_sha1(folder.encode()), "path": folder})
            if recursive or len(parts) == 1:
                entry = {"type": "file", "oid": git_blob_sha1(blob.data), "size": len(blob.data), "path": p}
                if blob.lfs:
                    entry["lfs"] = {"oid": blob.oid, "size": len(blob.data), "pointerSize": 134}
                entries[p] = entry
        if prefix and not entries:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        self._json(list(entries.values()))

    def _branch(self, repo: str, rev: str) -> None:
        r = self._writable(repo)
        start = self._payload().get("startingPoint") or "main"
        with self.hub.lock:
            if rev in r.branches:
                raise HubError(409, f"Reference refs/heads/{rev} already exists")
            r.branches[rev] = self._commit_at(r, start).oid
        self._json({})

    def _xet(self, repo: str, rev: str) -> None:
        raise HubError(501, "the Hub stand-in does not speak Xet; set HF_HUB_DISABLE_XET=1 to upload through LFS")

    # -- uploads ----------------------------------------------------------------------------------
    def _validate_yaml(self) -> None:
        content = self._payload().get("content", "")
        m = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        if not m:
            self._json({"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]})
            return
        try:
            meta = yaml.safe_load(m.group(1))
        except yaml.YAMLError as e:
            self._json({"errors": [{"message": f"invalid YAML: {e}"}]}, status=400)
            return
        problems = [] if isinstance(meta, dict) else ["metadata must be a mapping"]
        if isinstance(meta, dict) and not isinstance(meta.get("model-index", []), list):
            problems.append('"model-index" must be an array')
        self._json({"errors": [{"message": p} for p in problems], "warnings": []}, status=400 if problems else 200)

    def _preupload(self, repo: str, rev: str) -> None:
        self.hub._take_fault("preupload")
        r = self._writable(repo)
        commit = self._commit_at(r, rev)
        out = []
        for f in self._payload().get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] >= LFS_MIN_SIZE or b"\0" in sample
            existing = commit.files.get(f["path"])
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": existing.oid if existing else None})
        self._json({"files": out, "commitOid": commit.oid})

    def _lfs_batch(self, repo: str) -> None:
        self.hub._take_fault("lfs-batch")
        self._writable(repo)
        body = self._payload()
        if body.get("operation") != "upload":
            raise HubError(400, "the stand-in's LFS batch API only uploads")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry: dict = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.hub.lfs:  # already stored: no actions, the client skips the upload
                entry["actions"] = {
                    "upload": {"href": f"{self._base()}/_lfs/{oid}?sig={self.hub.signature(oid)}&size={size}"},
                    "verify": {"href": f"{self._base()}/{repo}.git/info/lfs/objects/verify"},
                }
            objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   {"Content-Type": "application/vnd.git-lfs+json"})

    def _lfs_put(self, oid: str) -> None:
        self.hub._take_fault("lfs-put")
        if not hmac.compare_digest(self.query.get("sig", [""])[0], self.hub.signature(oid)):
            raise HubError(403, "bad signature for this upload URL")
        if hashlib.sha256(self.body).hexdigest() != oid or len(self.body) != int(self.query["size"][0]):
            raise HubError(400, f"uploaded content does not match oid {oid}")
        with self.hub.lock:
            self.hub.lfs[oid] = self.body
        self._send(200)

    def _lfs_verify(self, repo: str) -> None:
        self._writable(repo)
        body = self._payload()
        data = self.hub.lfs.get(body.get("oid", ""))
        if data is None or len(data) != body.get("size"):
            raise HubError(404, f"LFS object {body.get('oid')} was not uploaded")
        self._json({"message": "Object verified"})

    def _commit(self, repo: str, rev: str) -> None:
        self.hub._take_fault("commit")
        r = self._writable(repo)
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        with self.hub.lock:
            if rev not in r.branches:
                raise HubError(404, f"Invalid rev id: {rev} (commits go to a branch)", "RevisionNotFound")
            head = r.branches[rev]
            parent = header.get("parentCommit")
            if parent and parent != head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(r.commits[head].files)
            for op in lines[1:]:
                self._apply(files, op["key"], op["value"])
            commit = self.hub._new_commit(r, head, header.get("summary", ""), files)
            r.branches[rev] = commit.oid  # the one atomic step: the branch moves only now
        self._json({"success": True, "commitOid": commit.oid, "commitUrl": f"{self._base()}/{repo}/commit/{commit.oid}",
                    "pullRequestUrl": None})

    def _apply(self, files: dict[str, Blob], key: str, value: dict) -> None:
        path = _checked_path(value.get("path", ""))
        if key == "file":
            files[path] = Blob(base64.b64decode(value["content"]), False)
        elif key == "lfsFile":
            data = self.hub.lfs.get(value.get("oid", ""))
            if data is None:
                raise HubError(422, f"LFS object {value.get('oid')} for {path} was never uploaded")
            files[path] = Blob(data, True)
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        elif key == "deletedFolder":
            for p in [p for p in files if p.startswith(path.rstrip("/") + "/")]:
                del files[p]
        else:
            raise HubError(400, f"the stand-in does not support commit operation '{key}'")

    # -- downloads --------------------------------------------------------------------------------
    def _resolve(self, repo: str, rev: str, path: str) -> None:
        self.hub._take_fault("resolve")
        head = self.command == "HEAD"
        r = self._readable(repo)
        commit = self._commit_at(r, rev)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.oid}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.oid}"', "X-Linked-Size": str(len(blob.data))})
        data, status = blob.data, 200
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if m:
            start, end = int(m[1]), int(m[2]) if m[2] else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        self._send(status, data, headers, head=head)


def _checked_path(path: str) -> str:
    """Refuse what the Hub refuses: absolute paths, '..' and '.' segments, backslashes, .git/."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(400, f"invalid path in repo: {path!r}")
    return path




# -- helpers the Hub tests share ------------------------------------------------------------------

TOKEN = "hf_standinWriteToken_5f2a9c7e"  # the only token with write access (to namespace "acme")
NO_PROXY = "127.0.0.1,localhost"


def client_env(home: str, *, token: str | None = TOKEN, endpoint: str | None = None, offline: bool = False,
               cache: str | None = None) -> dict[str, str]:
    """Environment for a fresh interpreter running the real client against the stand-in (LFS, not Xet)."""
    env = {"HF_HOME": home, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "NO_PROXY": NO_PROXY,
           "no_proxy": NO_PROXY, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    if token:
        env["HF_TOKEN"] = token
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    if cache:
        env["HF_HUB_CACHE"] = cache
    return env


def make_model_folder(root, name: str, seed: int):
    """A tiny MAE encoder with seeded weights, loaded from a checkpoint file and saved as a model folder."""
    import torch

    import mimzoo

    torch.manual_seed(seed)
    ckpt = root / f"{name}.pth"
    torch.save({"model": mimzoo.load("mae-vit-test", pretrained=False).model.state_dict()}, ckpt)
    encoder = mimzoo.load("mae-vit-test", pretrained=False, weights=str(ckpt))
    return encoder.save_pretrained(root / name), encoder


def make_onnx_export(encoder, model_folder, out, *, passed: bool = True, fmt: str = "onnx"):
    """Export `encoder` with torch.onnx (dynamo, weights in model.onnx.data) and write export.json as
    `mimzoo export` does (the export issue's interface); the verification report is measured here."""
    import numpy as np
    import onnxruntime as ort
    import torch

    out.mkdir(parents=True)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.onnx.export(encoder, (x,), str(out / "model.onnx"), dynamo=True, input_names=["pixel_values"],
                      output_names=["embedding"], dynamic_shapes=({0: torch.export.Dim("N", min=1, max=64)},),
                      opset_version=18, external_data=True, verbose=False)
    got = ort.InferenceSession(str(out / "model.onnx")).run(["embedding"], {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        ref = encoder(x).numpy()
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    meta = {
        "mimzoo_export": 1, "format": fmt, "precision": "fp32", "opset": 18, "batch": "dynamic",
        "inputs": {"pixel_values": ["N", 3, 32, 32]}, "outputs": {"embedding": ["N", 32]},
        "preprocess": encoder.preprocess.to_timm(),
        "provenance": {"model": str(model_folder), "method": "mae", "variant": "mae-vit-test", "license": "cc-by-nc-4.0",
                       "weights_source": str(model_folder), "weights_sha256": None, "mimzoo_version": "0.1.0",
                       "torch_version": torch.__version__},
        "verification": {"passed": passed, "max_abs": float(abs(got - ref).max()), "max_rel": 0.0,
                         "cosine_min": float(cos.min()), "knn_top1_agreement": None,
                         "tolerances": {"max_abs": 1e-4, "cosine_min": 0.9999}, "batches": 1,
                         "data": str(out.parent / "private-data" / "digits")},
    }
    from mimzoo._outputs import write_marker
    from mimzoo.exporters.metadata import artifact_sha256

    # what `mimzoo export` records once verification passed: the digest of the verified model, and the
    # marker of a complete export (publish refuses an export without them, or changed since)
    meta["artifact_sha256"] = artifact_sha256(out / "model.onnx")
    (out / "export.json").write_text(json.dumps(meta))
    if passed:
        write_marker(out, "export", verified=True, artifact_sha256=meta["artifact_sha256"])
    return out
