"""Attacks on every name, file and path parameter of every route, against a real `inferno serve` that holds a
real uploaded blob: each attack is a 4xx, and nothing outside INFERNO_HOME/models is created, changed or deleted
(the whole temporary tree is snapshotted before and after every test; the store's own folder is checked to
hold nothing but models and its private folders)."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from inferno.store import contained, safe_filename

from .conftest import OFFLINE, Server, home_with_tiny, start_server, stop_server

# a name nothing else uses, to look for afterwards; one per run (pytest-xdist's workers must collect the same names)
ESCAPE = f"inferno-escape-{os.environ.get('PYTEST_XDIST_TESTRUNUID', uuid.uuid4().hex)[:8]}"
ABSOLUTE = f"/tmp/{ESCAPE}"


def traversals(root: Path) -> list[str]:
    """Names that try to leave a folder, in the spellings a route may meet them."""
    return [
        f"../{ESCAPE}", f"../../{ESCAPE}", f"../../../../{ESCAPE}", f"..\\{ESCAPE}", f"..\\..\\{ESCAPE}",
        str(root / ESCAPE), ABSOLUTE, f"%2e%2e%2f{ESCAPE}", f"..%2F{ESCAPE}", f"%2e%2e/{ESCAPE}",
        f"a/../../{ESCAPE}", f"a/{ESCAPE}", f"./{ESCAPE}", ".", "..", "...", "x" * 300, "x" * 5000,
        f"esc\x00{ESCAPE}", f"C:\\{ESCAPE}", f"C:{ESCAPE}", f"\\\\host\\share\\{ESCAPE}", f"~/{ESCAPE}",
        f"{ESCAPE}\n", f"file:../../{ESCAPE}", "",
    ]


def name_traversals(root: Path) -> list[str]:
    """traversals() that cannot be model names. `C:x` can: the model x, tag C — on Windows the store's second
    guard (the folder must resolve inside the store) is what refuses it."""
    return [n for n in traversals(root) if n and n != f"C:{ESCAPE}"]


def file_traversals(root: Path) -> list[str]:
    """The same as .gguf file names, plus the store's own names."""
    return [n + ".gguf" for n in traversals(root)] + ["info.json", ".tmp-x.gguf", ".blobs", "a:b.gguf"]


class Target:
    def __init__(self, server: Server, root: Path, digest: str, outside_gguf: Path) -> None:
        self.server, self.root, self.digest, self.outside_gguf = server, root, digest, outside_gguf

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def models(self) -> Path:
        return self.server.home / "models"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("attack")
    home = home_with_tiny(root, tiny_gguf)
    (root / "secret.txt").write_text("untouched")
    outside = root / "outside.gguf"  # a real GGUF on the server's machine that a client would like to import
    shutil.copyfile(tiny_gguf, outside)
    server = start_server(home, OFFLINE)
    data = tiny_gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert httpx.post(f"{server.url}/api/blobs/{digest}", content=data, timeout=30).status_code == 201
    yield Target(server, root, digest, outside)
    stop_server(server)


def snapshot(t: Target) -> dict[str, tuple[int, int, str]]:
    """Every file and folder under the temporary root but INFERNO_HOME/models (and the server's own log)."""
    out: dict[str, tuple[int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(t.root):
        folder = Path(dirpath)
        if folder == t.models:
            dirnames[:] = []
            continue
        for name in [*dirnames, *filenames]:
            path = folder / name
            if path == t.models or (folder == t.server.home and name.startswith("server-")):
                continue
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            out[str(path.relative_to(t.root))] = (st.st_mode, st.st_size, digest)
    return out


def store_is_clean(t: Target) -> None:
    """INFERNO_HOME/models holds model folders (each with its info.json) and its private dot-folders only;
    nothing a traversal one level up (models/<name>/../x) could have left there."""
    for entry in t.models.iterdir():
        assert entry.is_dir() and not entry.is_symlink(), entry
        if entry.name == ".blobs":
            assert all(p.name.startswith("sha256-") for p in entry.iterdir()), list(entry.iterdir())
        elif not entry.name.startswith("."):
            assert (entry / "info.json").is_file(), entry
    assert not Path(ABSOLUTE).exists() and not Path(ABSOLUTE + ".gguf").exists()
    assert not list(Path("/tmp").glob(f"{ESCAPE}*"))


@pytest.fixture(autouse=True)
def nothing_escapes(target: Target) -> Iterator[None]:
    before = snapshot(target)
    yield
    assert snapshot(target) == before
    store_is_clean(target)
    tiny = httpx.post(f"{target.url}/api/show", json={"model": "tiny"}, timeout=30)
    assert tiny.status_code == 200  # the model the attacks aimed at is still there
    assert httpx.head(f"{target.url}/api/blobs/{target.digest}", timeout=10).status_code == 200


def attack(t: Target, method: str, path: str, bodies: list[dict[str, Any]],
           allowed: tuple[int, ...] = (400, 404)) -> None:
    """Send every body; each answer must be one of the allowed 4xx statuses in the route's error shape."""
    wrong = []
    for body in bodies:
        r = httpx.request(method, t.url + path, json={**body, "stream": False}, timeout=60)
        shape_ok = "error" in r.json() if r.content else method == "HEAD"
        if r.status_code not in allowed or not shape_ok:
            wrong.append((body, r.status_code, r.text[:300]))
    assert not wrong, wrong


def refused(t: Target, method: str, path: str, bodies: list[dict[str, Any]], param: str) -> None:
    """Each body is a 400 whose message names the parameter."""
    wrong = []
    for body in bodies:
        r = httpx.request(method, t.url + path, json={**body, "stream": False}, timeout=60)
        error = r.json().get("error") if r.content else None
        message = error["message"] if isinstance(error, dict) else error
        if r.status_code != 400 or not message or param not in message:
            wrong.append((body, r.status_code, r.text[:300]))
    assert not wrong, wrong


MODEL_ROUTES = [
    ("POST", "/api/generate", {"prompt": "x"}), ("POST", "/api/chat", {"messages": [{"role": "user", "content": "x"}]}),
    ("POST", "/api/embed", {"input": "x"}), ("POST", "/api/embeddings", {"prompt": "x"}),
    ("POST", "/api/show", {}), ("DELETE", "/api/delete", {}),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}),
    ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1}), ("POST", "/v1/embeddings", {"input": "x"}),
    ("POST", "/inferno/tokenize", {"text": "x"}), ("POST", "/inferno/detokenize", {"tokens": [1]}),
]


@pytest.mark.parametrize("method, path, extra", MODEL_ROUTES, ids=[r[1] for r in MODEL_ROUTES])
def test_model_names_on_every_route(target: Target, method: str, path: str, extra: dict[str, Any]) -> None:
    names = traversals(target.root)
    attack(target, method, path, [{**extra, "model": n} for n in names])
    if path.startswith("/api/"):  # Ollama's `name` spelling of the same parameter
        attack(target, method, path, [{**extra, "name": n} for n in names if n])


def test_delete_refuses_names_and_deletes_nothing(target: Target) -> None:
    refused(target, "DELETE", "/api/delete", [{"model": n} for n in name_traversals(target.root)], "model")


def test_copy_source_and_destination(target: Target) -> None:
    names = name_traversals(target.root)
    refused(target, "POST", "/api/copy", [{"source": "tiny", "destination": n} for n in names], "destination")
    attack(target, "POST", "/api/copy", [{"source": n, "destination": "fine-copy"} for n in names])
    assert not (target.models / "fine-copy").exists()


def test_create_model_from_and_files(target: Target) -> None:
    names = name_traversals(target.root)
    refused(target, "POST", "/api/create", [{"model": n, "from": "tiny"} for n in names], "model")
    refused(target, "POST", "/api/create", [{"model": n, "files": {"tiny.gguf": target.digest}} for n in names],
            "model")
    attack(target, "POST", "/api/create", [{"model": "fine", "from": n} for n in names])
    refused(target, "POST", "/api/create", [{"model": "fine", "files": {n: target.digest}}
                                            for n in file_traversals(target.root)], "files")
    # a name that is not the .gguf is checked too, and so is every digest
    refused(target, "POST", "/api/create", [{"model": "fine", "files": {"tiny.gguf": target.digest, n: target.digest}}
                                            for n in names], "files")
    bad_digests = [f"sha256:{n}" for n in names] + [n for n in names] + [
        target.digest.upper(), target.digest.replace("sha256:", "sha256-"), target.digest + "\n",
        target.digest[:-1], target.digest + "0", f"{target.digest}/../x"]
    refused(target, "POST", "/api/create", [{"model": "fine", "files": {"tiny.gguf": d}} for d in bad_digests],
            "files")
    assert not (target.models / "fine").exists()


def test_create_with_a_plain_name_works(target: Target) -> None:
    """The control: the same blob under a plain name is a model, so the refusals above are not a broken route."""
    r = httpx.post(f"{target.url}/api/create", json={"model": "from-blob", "files": {"tiny.gguf": target.digest},
                                                     "stream": False}, timeout=60)
    assert r.status_code == 200 and r.json()["status"] == "success"
    assert (target.models / "from-blob" / "tiny.gguf").is_file()
    assert httpx.request("DELETE", f"{target.url}/api/delete", json={"model": "from-blob"}, timeout=30).is_success


def test_create_with_quantize_refuses_names(target: Target) -> None:
    refused(target, "POST", "/api/create", [{"model": n, "from": "tiny", "quantize": "q8_0"}
                                            for n in name_traversals(target.root)], "model")
    attack(target, "POST", "/api/create", [{"model": "fine", "from": "tiny", "quantize": n}
                                           for n in traversals(target.root) if n])  # "" is: no quantization
    assert not (target.models / "fine").exists()


def test_blob_digests_in_the_url(target: Target) -> None:
    data = b"GGUF not really"
    names = [*traversals(target.root), target.digest.upper(), target.digest.replace(":", "-"),
             "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "g" * 64, "sha256:../../" + "a" * 58]
    wrong = []
    for n in names:
        for raw in (quote(n, safe=""), quote(n, safe=":"), quote(quote(n, safe=""), safe="")):
            for method in ("HEAD", "POST"):
                r = httpx.request(method, f"{target.url}/api/blobs/{raw}", content=data if method == "POST" else None,
                                  timeout=30)
                if not 400 <= r.status_code < 500:
                    wrong.append((method, raw, r.status_code))
    assert not wrong, wrong
    r = httpx.post(f"{target.url}/api/blobs/sha256:..%2F..%2F{ESCAPE}", content=data, timeout=30)
    assert 400 <= r.status_code < 500


def test_pull_of_a_server_file_is_forbidden(target: Target) -> None:
    """A client may not make the server read its own files: paths are a 403 whether or not the file exists (no
    oracle), before anything is read."""
    paths = [str(target.outside_gguf), f"file:{target.outside_gguf}", f"local:{target.outside_gguf}",
             str(target.root / "secret.txt"), "/etc/passwd", f"../../{ESCAPE}.gguf", f"./{ESCAPE}.gguf",
             f"~/{ESCAPE}.gguf", str(target.root / "missing.gguf"),
             str(target.server.home / "models" / "tiny" / "tiny.gguf")]
    wrong = []
    for p in paths:
        r = httpx.post(f"{target.url}/api/pull", json={"model": p, "stream": True}, timeout=60)
        if r.status_code != 403 or "INFERNO_ALLOW_LOCAL_PATHS" not in r.json()["error"]:
            wrong.append((p, r.status_code, r.text[:300]))
    assert not wrong, wrong
    assert [m["name"] for m in httpx.get(f"{target.url}/api/tags", timeout=10).json()["models"]] == ["tiny:latest"]


def test_pull_identifiers_that_climb(target: Target) -> None:
    bodies = [{"model": m} for m in ("hf:..", "hf:acme/x:../y.gguf", "hf:acme/x:..\\y.gguf", "pypi:../../x",
                                     "pypi:dist:../x.gguf", "pypi:dist:..\\x.gguf", "pypi:dist:%2e%2e.gguf",
                                     "hf.co/../../x", "")]
    attack(target, "POST", "/api/pull", bodies, allowed=(400, 403, 404))
    attack(target, "POST", "/api/pull", [{"name": n} for n in traversals(target.root) if n], allowed=(400, 403))


def test_openai_model_path_parameter(target: Target) -> None:
    wrong = []
    for n in traversals(target.root):
        # "." and ".." as plain path segments are removed by the client before sending; %2E reaches the server
        for raw in {quote(n, safe="/"), quote(n, safe=""), quote(n, safe="").replace(".", "%2E")} - {".", ".."}:
            # a doubled slash is merged by a redirect (308) to the single-slash URL: follow it
            r = httpx.get(f"{target.url}/v1/models/{raw}", timeout=30, follow_redirects=True)
            if not 400 <= r.status_code < 500:
                wrong.append((raw, r.status_code))
    assert not wrong, wrong


def test_allowed_folders_are_the_only_ones(tmp_path: Path, tiny_gguf: Path, target: Target) -> None:
    """With INFERNO_ALLOW_LOCAL_PATHS, files in those folders import; a file elsewhere, or a link from an
    allowed folder to a file elsewhere, stays forbidden."""
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    shutil.copyfile(tiny_gguf, allowed / "ok.gguf")
    shutil.copyfile(tiny_gguf, other / "no.gguf")
    (allowed / "sneaky.gguf").symlink_to(other / "no.gguf")
    home = home_with_tiny(tmp_path, tiny_gguf)
    server = start_server(home, {"INFERNO_ALLOW_LOCAL_PATHS": f"{tmp_path / 'nothing'}{os.pathsep}{allowed}"})
    try:
        def pull(identifier: str) -> httpx.Response:
            return httpx.post(f"{server.url}/api/pull", json={"model": identifier, "stream": False}, timeout=60)

        ok = pull(str(allowed / "ok.gguf"))
        assert ok.status_code == 200 and ok.json()["status"] == "success", ok.text
        for forbidden in (other / "no.gguf", allowed / "sneaky.gguf", allowed / ".." / "other" / "no.gguf"):
            r = pull(str(forbidden))
            assert r.status_code == 403, (forbidden, r.text)
        names = [m["name"] for m in httpx.get(f"{server.url}/api/tags", timeout=10).json()["models"]]
        assert names == ["ok:latest", "tiny:latest"]
    finally:
        stop_server(server)


# The store-level guard itself, for every caller (HTTP, CLI, sources, quantizer) -------------------------------

@pytest.mark.parametrize("name", ["model.gguf", "Model-Q4_K_M.gguf", "split-00001-of-00002.gguf", "é.gguf",
                                  "a b (1).gguf", "x" * 250 + ".gguf"])
def test_plain_file_names_pass(name: str, tmp_path: Path) -> None:
    assert safe_filename(name) == name
    assert contained(tmp_path, name) == tmp_path / name


@pytest.mark.parametrize("name", [n + ".gguf" for n in traversals(Path("/tmp"))] +
                         ["", ".", "..", "info.json", ".hidden.gguf", "a\x01.gguf", "\x7f.gguf", "a:b.gguf",
                          "x" * 300 + ".gguf", "é" * 130 + ".gguf"])
def test_other_file_names_are_refused(name: str, tmp_path: Path) -> None:
    from inferno.errors import BadRequestError

    with pytest.raises(BadRequestError) as info:
        safe_filename(name, "files")
    assert info.value.param == "files" and "files" in info.value.message
    with pytest.raises(BadRequestError):
        contained(tmp_path, name)


def test_containment_catches_a_link_out(tmp_path: Path) -> None:
    from inferno.errors import BadRequestError

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.gguf").symlink_to(tmp_path / "elsewhere.gguf")
    with pytest.raises(BadRequestError, match="resolves outside"):
        contained(folder, "model.gguf")

