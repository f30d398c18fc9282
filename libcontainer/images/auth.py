"""Registry credentials in the containers-auth.json format (containers-auth.json(5)), the file
podman, skopeo and buildah log in to, and docker's ~/.docker/config.json (same "auths" map),
so that a login by any of them serves the runner and the reverse.

Where they are read, first match wins: $REGISTRY_AUTH_FILE; else
$XDG_RUNTIME_DIR/containers/auth.json (root without XDG_RUNTIME_DIR: /run/containers/0/auth.json);
~/.config/containers/auth.json; ~/.docker/config.json; ~/.dockercfg. `login` writes the first
of these (or --authfile). Keys are a registry (`HOST[:PORT]`), a repository namespace
(`HOST/PATH`, the longest matching one wins), or docker's URL forms
(`https://index.docker.io/v1/`); values carry `auth`, base64 of USER:PASSWORD. Credential
helpers (credHelpers, credsStore) are not run."""
from __future__ import annotations

import base64
import json
import os

from .errors import ImageError, InvalidArgument


def auth_files() -> list:
    """The files read, in order."""
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return [env]
    home = os.path.expanduser("~")
    files = [primary_file(),
             os.path.join(home, ".config", "containers", "auth.json"),
             os.path.join(home, ".docker", "config.json"),
             os.path.join(home, ".dockercfg")]
    return list(dict.fromkeys(files))


def primary_file() -> str:
    """The file `login` writes when no --authfile is given."""
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return env
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "containers", "auth.json")
    return f"/run/containers/{os.geteuid()}/auth.json"


def _normalize_key(key: str) -> str:
    """docker's keys are URLs: `https://index.docker.io/v1/` means docker.io."""
    k = key
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix):]
            k = k.split("/", 1)[0]  # a URL's path is never a namespace
            break
    if k in ("index.docker.io", "registry-1.docker.io"):
        k = "docker.io"
    return k.rstrip("/")


def _read(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read() or b"{}")
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise ImageError(f"auth file {path}: not valid JSON: {e}") from None
    except OSError as e:
        raise ImageError(f"auth file {path}: {e.strerror}") from None
    if not isinstance(data, dict):
        raise ImageError(f"auth file {path}: not a JSON object")
    if path.endswith(".dockercfg"):  # the legacy file is the auths map itself
        return {"auths": data}
    return data


def _decode(entry, path: str, key: str) -> str:
    if not isinstance(entry, dict):
        return ""
    raw = entry.get("auth")
    if not raw:
        return ""
    try:
        creds = base64.b64decode(raw, validate=False).decode()
    except (ValueError, UnicodeDecodeError):
        raise ImageError(f"auth file {path}: auths[{key!r}].auth is not base64 of "
                         "USER:PASSWORD") from None
    if ":" not in creds:
        raise ImageError(f"auth file {path}: auths[{key!r}].auth has no ':' between user "
                         "and password")
    return creds


def lookup(registry: str, repository: str = "") -> str:
    """USER:PASSWORD for the registry (and repository), or ""."""
    registry = _normalize_key(registry)
    full = f"{registry}/{repository}" if repository else registry
    for path in auth_files():
        auths = _read(path).get("auths")
        if not isinstance(auths, dict):
            continue
        best, best_len = None, -1
        for key, entry in auths.items():
            k = _normalize_key(key) if "://" in key else key
            if k in ("index.docker.io", "registry-1.docker.io"):
                k = "docker.io"
            if k == registry or full == k or full.startswith(k + "/"):
                if len(k) > best_len:
                    best, best_len = (key, entry), len(k)
        if best is not None:
            creds = _decode(best[1], path, best[0])
            if creds:
                return creds
    return ""


def _check_key(key: str) -> str:
    if not key or "://" in key or any(c.isspace() for c in key):
        raise InvalidArgument(f"registry {key!r}: want HOST[:PORT] or HOST/NAMESPACE")
    return key


def _write(path: str, data: dict) -> None:
    from .atomic import write_atomic

    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    write_atomic(path, json.dumps(data, indent="\t").encode() + b"\n", mode=0o600)


def store_creds(key: str, user: str, password: str, path: str = "") -> str:
    """Record USER:PASSWORD for `key` (HOST or HOST/NAMESPACE) in the auth file; → its path."""
    _check_key(key)
    if not user or ":" in user:
        raise InvalidArgument(f"--username: {user!r}: empty, or with a ':'")
    path = path or primary_file()
    data = _read(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        auths = data["auths"] = {}
    auths[key] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _write(path, data)
    return path


def remove_creds(key: str = "", path: str = "", all_: bool = False) -> bool:
    """Forget `key` (or every registry with all_); → whether anything was removed."""
    path = path or primary_file()
    data = _read(path)
    auths = data.get("auths")
    if not isinstance(auths, dict) or not auths:
        return False
    if all_:
        data["auths"] = {}
    else:
        _check_key(key)
        matches = [k for k in auths if k == key or (("://" in k) and _normalize_key(k) == key)]
        if not matches:
            return False
        for k in matches:
            del auths[k]
    _write(path, data)
    return True

