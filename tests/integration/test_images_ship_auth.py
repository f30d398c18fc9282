"""Ship (issue 19): `runner login`/`logout` in the containers-auth.json format, shared both ways
with skopeo and podman (and docker's ~/.docker/config.json read), used by pull and push;
basic (htpasswd) and bearer-token registries. `runner search` through /v2/_catalog and
`--list-tags` through tags/list, with Link pagination, side by side with podman search and
skopeo list-tags."""
from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

import imagekit as kit
import shipkit
from conftest import need_root
from libcontainer.images import catalog

USER, PASSWORD = "tester", "s3cret"


def runner_env(*args, env=None, input=None):
    return subprocess.run(kit.RUNNER + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120, cwd=kit.REPO, env=env, input=input)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    need_root()
    work = str(tmp_path_factory.mktemp("shipsmall"))
    layout = os.path.join(work, "layout")
    tar = kit.layer_tar([("etc/", "dir"), ("etc/hello", "file", {"data": b"hello\n"})])
    kit.write_layout(layout, "t", [tar], gzip_layers=True)
    store = os.path.join(work, "store")
    r = kit.runner("pull", "--storage", store, "--name", "ship/small:1", f"oci:{layout}:t")
    assert r.returncode == 0, r.stderr
    return {"layout": layout, "store": store, "id": r.stdout.strip(), "work": work}


@pytest.fixture(scope="module")
def private(small):
    reg = shipkit.registry(os.path.join(small["work"], "private"),
                           htpasswd=shipkit.htpasswd_file(os.path.join(small["work"], "htpasswd"), USER, PASSWORD))
    reg.push(f"oci:{small['layout']}:t", "priv/seed:1", "--dest-creds", f"{USER}:{PASSWORD}")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def podman(small):
    """podman on a private store and containers.conf: even `podman login` and `search`
    would otherwise make the host's /var/lib/containers/storage."""
    p = shipkit.Podman()
    yield p
    p.stop()


def _pm(podman, env, *args):
    env = dict(env, CONTAINERS_CONF=podman.env["CONTAINERS_CONF"])
    return subprocess.run(["podman", *podman.flags, *args], capture_output=True, text=True,
                          env=env, timeout=60)


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR")}
    env["HOME"] = str(tmp_path / "home")
    os.makedirs(env["HOME"], exist_ok=True)
    env.update(extra)
    return env


def test_login_push_pull_logout(small, private, tmp_path):
    auth = str(tmp_path / "auth.json")
    env = _env(tmp_path, REGISTRY_AUTH_FILE=auth)
    # refused: nothing written
    r = runner_env("login", "--tls-verify=false", "-u", USER, "--password-stdin", private.addr,
                   env=env, input="wrong\n")
    assert r.returncode == 1 and "401" in r.stderr and "credentials rejected" in r.stderr, r.stderr
    assert not os.path.exists(auth)
    r = runner_env("login", "--tls-verify=false", "-u", USER, "--password-stdin", private.addr,
                   env=env, input=PASSWORD + "\n")
    assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stderr
    with open(auth) as f:
        entry = json.load(f)["auths"][private.addr]
    assert base64.b64decode(entry["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert oct(os.stat(auth).st_mode & 0o777) == "0o600"
    assert runner_env("login", "--get-login", private.addr, env=env).stdout.strip() == USER
    # push and pull use it, without --creds
    r = runner_env("push", "--storage", small["store"], "--tls-verify=false", "ship/small:1",
                   f"docker://{private.addr}/priv/pushed:1", env=env)
    assert r.returncode == 0, r.stderr
    r = runner_env("pull", "--storage", str(tmp_path / "s1"), "--tls-verify=false",
                   f"docker://{private.addr}/priv/pushed:1", env=env)
    assert r.returncode == 0 and r.stdout.strip() == small["id"], r.stderr
    # skopeo reads the file the runner wrote
    kit.skopeo("inspect", "--tls-verify=false", "--authfile", auth, f"docker://{private.addr}/priv/pushed:1")
    # logout: the entry goes; a pull is refused, saying how to log in
    r = runner_env("logout", private.addr, env=env)
    assert r.returncode == 0 and f"Removed login credentials for {private.addr}" in r.stdout
    with open(auth) as f:
        assert private.addr not in json.load(f).get("auths", {})
    r = runner_env("pull", "--storage", str(tmp_path / "s2"), "--tls-verify=false",
                   f"docker://{private.addr}/priv/pushed:1", env=env)
    assert r.returncode == 1 and "401" in r.stderr and "--creds" in r.stderr, r.stderr
    r = runner_env("logout", private.addr, env=env)
    assert r.returncode == 1 and f"not logged into {private.addr}" in r.stderr


def test_skopeo_podman_and_docker_logins_serve_the_runner(small, private, podman, tmp_path):
    # skopeo login into a file named by REGISTRY_AUTH_FILE
    auth = str(tmp_path / "skopeo-auth.json")
    kit.skopeo("login", "--tls-verify=false", "--authfile", auth, "-u", USER, "-p", PASSWORD, private.addr)
    r = runner_env("pull", "--storage", str(tmp_path / "s1"), "--tls-verify=false",
                   f"docker://{private.addr}/priv/seed:1", env=_env(tmp_path, REGISTRY_AUTH_FILE=auth))
    assert r.returncode == 0, r.stderr
    # podman login into its default file, $XDG_RUNTIME_DIR/containers/auth.json
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = _env(tmp_path, XDG_RUNTIME_DIR=str(xdg))
    pm = _pm(podman, env, "login", "--tls-verify=false", "-u", USER, "-p", PASSWORD, private.addr)
    assert pm.returncode == 0, pm.stderr
    assert (xdg / "containers" / "auth.json").exists()
    r = runner_env("pull", "--storage", str(tmp_path / "s2"), "--tls-verify=false",
                   f"docker://{private.addr}/priv/seed:1", env=env)
    assert r.returncode == 0, r.stderr
    # and the reverse: the runner's login (same default file) serves podman
    _pm(podman, env, "logout", "--all")
    r = runner_env("login", "--tls-verify=false", "-u", USER, "-p", PASSWORD, private.addr, env=env)
    assert r.returncode == 0, r.stderr
    pm = _pm(podman, env, "login", "--get-login", private.addr)
    assert pm.returncode == 0 and pm.stdout.strip() == USER, pm.stderr
    # docker's ~/.docker/config.json (what `docker login` writes) is read too
    home = tmp_path / "dhome"
    (home / ".docker").mkdir(parents=True)
    with open(home / ".docker" / "config.json", "w") as f:
        json.dump({"auths": {private.addr: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}, f)
    env = _env(tmp_path, HOME=str(home))
    r = runner_env("pull", "--storage", str(tmp_path / "s3"), "--tls-verify=false",
                   f"docker://{private.addr}/priv/seed:1", env=env)
    assert r.returncode == 0, r.stderr


def test_login_with_a_token_server(small, tmp_path):
    tokens = kit.TokenServer(str(tmp_path), USER, PASSWORD)
    reg = None
    try:
        reg = kit.Registry(str(tmp_path / "reg"), token=tokens.registry_auth(), port=shipkit.port())
        env = _env(tmp_path, REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"))
        r = runner_env("login", "--tls-verify=false", "-u", USER, "-p", "nope", reg.addr, env=env)
        assert r.returncode == 1 and "credentials rejected" in r.stderr, r.stderr
        r = runner_env("login", "--tls-verify=false", "-u", USER, "-p", PASSWORD, reg.addr, env=env)
        assert r.returncode == 0, r.stderr
        del tokens.requests[:]
        r = runner_env("push", "--storage", small["store"], "--tls-verify=false", "ship/small:1",
                       f"docker://{reg.addr}/tok/img:1", env=env)
        assert r.returncode == 0, r.stderr
        # the token asked for covers pull and push of the repository
        assert (USER, "repository:tok/img:pull,push") in tokens.requests, tokens.requests
        kit.skopeo("inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", f"docker://{reg.addr}/tok/img:1")
    finally:
        if reg:
            reg.stop()
        tokens.stop()


def test_search_and_list_tags_with_pages(small, podman, tmp_path, monkeypatch):
    reg = shipkit.registry(str(tmp_path / "reg"))
    try:
        names = [f"ship/s{i}" for i in range(5)] + ["other/x"]
        for n in names:
            reg.push(f"oci:{small['layout']}:t", f"{n}:1")
        for tag in ("2", "3", "latest"):
            reg.push(f"oci:{small['layout']}:t", f"ship/s0:{tag}")
        r = kit.runner("search", "--tls-verify=false", f"{reg.addr}/ship")
        assert r.returncode == 0, r.stderr
        ours = r.stdout.split()[1:]
        assert ours == [f"{reg.addr}/ship/s{i}" for i in range(5)], r.stdout
        pm = podman.ok("search", "--tls-verify=false", "--format", "{{.Name}}", f"{reg.addr}/ship")
        assert sorted(pm.stdout.split()) == sorted(ours), pm.stdout
        r = kit.runner("search", "--tls-verify=false", "--list-tags", f"{reg.addr}/ship/s0")
        assert r.returncode == 0, r.stderr
        tags = [line.split()[1] for line in r.stdout.splitlines()[1:]]
        skopeo = json.loads(kit.skopeo("list-tags", "--tls-verify=false", f"docker://{reg.addr}/ship/s0").stdout)
        assert tags == skopeo["Tags"] and sorted(tags) == ["1", "2", "3", "latest"]
        r = kit.runner("search", "--tls-verify=false", "--format", "json", "--limit", "2", f"{reg.addr}/")
        assert [e["Name"] for e in json.loads(r.stdout)] == [f"{reg.addr}/other/x", f"{reg.addr}/ship/s0"]
        # pages of 2: the Link headers are followed to the end
        monkeypatch.setattr(catalog, "PAGE", 2)
        assert catalog.search(f"{reg.addr}/", tls_verify=False) == [f"{reg.addr}/{n}" for n in sorted(names)]
        assert catalog.list_tags(f"{reg.addr}/ship/s0", tls_verify=False) == skopeo["Tags"]
        r = kit.runner("search", "--tls-verify=false", "--list-tags", f"{reg.addr}/ship/none")
        assert r.returncode == 1 and "NAME_UNKNOWN" in r.stderr, r.stderr
    finally:
        reg.stop()


def test_python_api_and_progress(small, tmp_path):
    from libcontainer import images

    store = small["store"]
    img = images.tag("ship/small:1", "ship/small:other", storage=store)
    assert {"ship/small:1", "ship/small:other"} <= set(img.names)
    out = str(tmp_path / "two.tar")
    images.save(["ship/small:1", "ship/small:other"], out, storage=store)
    loaded = images.load(out, storage=str(tmp_path / "s"))
    # one entry for the image, with both names, as docker save writes it
    assert [(i.id, n) for i, n in loaded] == [(small["id"], ["ship/small:1", "ship/small:other"])]
    assert {"ship/small:1", "ship/small:other"} <= set(loaded[0][0].names)
    digest = images.push("ship/small:1", f"oci:{tmp_path}/layout:t", storage=store)
    with open(tmp_path / "layout" / "index.json") as f:
        assert json.load(f)["manifests"][0]["digest"] == digest
    # per-layer progress on a terminal; nothing in a pipe
    cmd = " ".join(kit.RUNNER + ["push", "--storage", store, "ship/small:1", f"oci:{tmp_path}/tty:t"])
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                       timeout=120, cwd=kit.REPO)
    assert r.returncode == 0 and "layer " in r.stdout and "\x1b[" in r.stdout, r.stdout
    r = kit.runner("push", "--storage", store, "ship/small:1", f"oci:{tmp_path}/pipe:t")
    assert r.returncode == 0 and r.stderr == "" and r.stdout == ""
