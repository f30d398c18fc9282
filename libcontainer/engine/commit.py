"""docker commit: a new image from a container's changes (its overlay upper dir, the image
layer on top of its image's) and its config, as dockerd's CreateImageFromContainer: the
config is the request's (or, without one, the container's), the `changes` (Dockerfile
instructions) applied to it, then what it leaves unset taken from the container's
(dockerd's merge); the image records its parent, the container and its config."""
from __future__ import annotations

import os

from .errors import BadRequest, Conflict, EngineError, NotFound

# what dockerd's merge() fills from the container's config
_MERGED = ("User", "ExposedPorts", "Env", "Labels", "Cmd", "Entrypoint", "Healthcheck",
           "WorkingDir", "Volumes", "StopSignal")


def merge(user: dict, container: dict) -> dict:
    """dockerd's merge(userConf, imageConf) of daemon/commit.go."""
    out = dict(user)
    if not out.get("User"):
        out["User"] = container.get("User") or ""
    ports = dict(out.get("ExposedPorts") or {})
    for p, v in (container.get("ExposedPorts") or {}).items():
        ports.setdefault(p, v)
    out["ExposedPorts"] = ports or None
    if not out.get("Env"):
        out["Env"] = container.get("Env")
    else:
        keys = {e.split("=", 1)[0] for e in out["Env"]}
        out["Env"] = list(out["Env"]) + [e for e in container.get("Env") or []
                                         if e.split("=", 1)[0] not in keys]
    labels = dict(out.get("Labels") or {})
    for k, v in (container.get("Labels") or {}).items():
        labels.setdefault(k, v)
    out["Labels"] = labels
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = container.get("Cmd")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = container.get("Entrypoint")
    hc = container.get("Healthcheck")
    if hc:
        mine = out.get("Healthcheck")
        out["Healthcheck"] = dict(hc) if not mine else {k: mine.get(k) or hc.get(k)
                                                        for k in set(hc) | set(mine)}
    if not out.get("WorkingDir"):
        out["WorkingDir"] = container.get("WorkingDir") or ""
    vols = dict(out.get("Volumes") or {})
    vols.update(container.get("Volumes") or {})
    out["Volumes"] = vols or None
    if not out.get("StopSignal"):
        out["StopSignal"] = container.get("StopSignal")
    return out


def commit(engine, ref: str, repo: str = "", tag: str = "", comment: str = "", author: str = "",
           pause: bool = True, changes: list | None = None, config: dict | None = None) -> str:
    """→ the new image's id ("sha256:…")."""
    from ..images.reference import normalize_name

    rec = engine.get(ref)
    cid = rec["Id"]
    if rec["State"].get("Status") == "removing" or rec["State"].get("Dead"):
        raise Conflict(f"You cannot commit container {cid} which is being removed or is dead")
    name = ""
    if repo:
        if tag and ":" not in tag and "@" not in repo:
            repo = f"{repo}:{tag}"
        try:
            name = normalize_name(repo)
        except Exception as e:
            raise BadRequest(f"invalid reference format: {e}") from None
    elif tag:
        raise BadRequest("tag without a repository")
    container_cfg = rec.get("Config") or {}
    user = container_cfg if config is None else config
    if not isinstance(user, dict):
        raise BadRequest("the request body is not a container config (a JSON object)")
    # paused as dockerd does it (state and events): pause, commit, then unpause
    paused = False
    if pause and rec["State"].get("Status") == "running":
        try:
            engine.pause(cid)
            paused = True
        except EngineError:
            pass  # it exited meanwhile: nothing to hold still
    try:
        return _commit(engine, rec, name, comment, author, changes, user, container_cfg)
    finally:
        if paused:
            try:
                engine.unpause(cid)
            except EngineError:
                pass


def _commit(engine, rec, name, comment, author, changes, user, container_cfg) -> str:
    from ..images.commit import commit_bundle
    from ..images.errors import ImageError

    cid = rec["Id"]
    extra = {"parent": rec["Image"], "container": cid, "container_config": container_cfg,
             "docker_version": "20.10.0-runner"}
    try:
        img = commit_bundle(os.path.join(engine._dir(cid), "bundle"), engine.store, image=name,
                            changes=[c for c in changes or [] if c], message=comment,
                            author=author, name=cid,
                            created_by=" ".join(container_cfg.get("Cmd") or []),
                            config=lambda _: dict(user),
                            after_changes=lambda cfg: merge(cfg, container_cfg), extra=extra)
    except ImageError as e:
        msg = str(e)
        if "not found" in msg.lower():
            raise NotFound(msg) from None
        raise BadRequest(msg) from None
    except Exception as e:
        if type(e).__name__ in ("LexError", "InvalidArgument"):
            raise BadRequest(str(e)) from None
        raise
    engine.events.emit("container", "commit", cid, dict(engine._attrs(rec), comment=comment,
                                                        imageID="sha256:" + img.id,
                                                        imageRef=name or "sha256:" + img.id))
    return "sha256:" + img.id
