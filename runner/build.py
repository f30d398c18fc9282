"""Build verbs: build (Dockerfile → image) and commit (container → image). Flags only; the
work is libcontainer.images.builder and libcontainer.images.commit."""
from __future__ import annotations

import sys

from libcontainer.errors import InvalidArgument

from .args import Flag, flag_help, parse
from .images import HELP, STORAGE, _bool

BUILD_FLAGS = [
    STORAGE,
    Flag("--tag,-t", "tag", True, "", "NAME[:TAG] of the image"),
    Flag("--file,-f", "file", True, "", "the Dockerfile (default CONTEXT/Dockerfile or Containerfile)"),
    Flag("--build-arg", "build_args", True, multiple=True, help="K=V for an ARG (K alone: from the environment)"),
    Flag("--target", "target", True, "", "build up to this stage"),
    Flag("--no-cache", "no_cache", help="run every step (the results still fill the cache)"),
    Flag("--layers", "layers", help="true: a layer per RUN/COPY/ADD, and the cache (the "
         "default, as docker build); false: one new layer per stage, no cache (buildah's default)"),
    Flag("--timestamp", "timestamp", True, "", "seconds since the epoch for every created time and "
         "file mtime (reproducible; default $SOURCE_DATE_EPOCH)"),
    Flag("--network", "network", True, "none", "RUN's network: none (the default) or host"),
    Flag("--quiet,-q", "quiet", help="only the image id"),
    HELP,
]


class _Progress:
    """Steps and RUN output on stderr when it is a terminal; nothing in a pipe."""

    def __init__(self, out):
        self.out = out

    def __call__(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "step":
            self.out.write(f"STEP {ev['step']}/{ev['total']}: {ev['instruction']}\n")
        elif kind == "cached":
            self.out.write("--> Using cache\n")
        elif kind == "output":
            self.out.write(ev["data"].decode("utf-8", "replace"))
        elif kind == "warning":
            self.out.write(f"warning: {ev['text']}\n")
        self.out.flush()


def _build_args(items: list) -> dict:
    import os

    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not k:
            raise InvalidArgument(f"--build-arg: {item!r} is not K=V")
        if not eq:
            if k not in os.environ:
                continue
            v = os.environ[k]
        out[k] = v
    return out


def cmd_build(ctx, argv: list) -> int:
    from libcontainer import images

    opts, pos = parse(argv, BUILD_FLAGS)
    if opts["help"]:
        return flag_help("build [flags] CONTEXT", BUILD_FLAGS)
    if len(pos) != 1:
        raise InvalidArgument("build: expects one build context directory")
    timestamp = None
    if opts["timestamp"]:
        try:
            timestamp = int(opts["timestamp"])
        except ValueError:
            raise InvalidArgument(f"--timestamp: {opts['timestamp']!r} is not a number of seconds") from None
    progress = None if opts["quiet"] or not sys.stderr.isatty() else _Progress(sys.stderr)
    img = images.build(pos[0], dockerfile=opts["file"] or None, tag=opts["tag"],
                       build_args=_build_args(opts["build_args"]), storage=opts["storage"] or None,
                       progress=progress, target=opts["target"], no_cache=opts["no_cache"],
                       timestamp=timestamp, network=opts["network"],
                       layers=opts["layers"] is not False)
    sys.stdout.write(img.id + "\n")
    return 0


COMMIT_FLAGS = [
    STORAGE,
    Flag("--change,-c", "changes", True, multiple=True,
         help="a Dockerfile instruction for the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, "
              "ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK)"),
    Flag("--message,-m", "message", True, "", "the history comment"),
    Flag("--author,-a", "author", True, "", "the image's author"),
    Flag("--pause,-p", "pause", True, "true", "freeze the container while its files are read"),
    Flag("--quiet,-q", "quiet", help="only the image id"),
    HELP,
]


def cmd_commit(ctx, argv: list) -> int:
    from libcontainer.images.commit import commit

    opts, pos = parse(argv, COMMIT_FLAGS)
    if opts["help"]:
        return flag_help("commit [flags] CONTAINER [IMAGE]", COMMIT_FLAGS)
    if len(pos) not in (1, 2):
        raise InvalidArgument("commit: expects CONTAINER [IMAGE]")
    img = commit(pos[0], pos[1] if len(pos) == 2 else "", changes=opts["changes"],
                 message=opts["message"], author=opts["author"], root=ctx.root,
                 storage=opts["storage"] or None, pause=_bool(opts["pause"], "--pause"))
    sys.stdout.write(img.id + "\n")
    return 0
