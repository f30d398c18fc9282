"""Dockerfile → image (the seed's "Docker builds images automatically from a Dockerfile"),
in the store, through our own runtime:

    from libcontainer import images
    img = images.build("ctx/", tag="app:1", build_args={"V": "2"}, progress=print)

Only `runner build` and `images.build` import this package (and dockerfile-parse)."""
from __future__ import annotations

import os

from ..store import Image, Store
from .cache import Cache
from .context import Ignore
from .dockerfile import BuildError, Instruction, parse
from .stage import Stage, automatic_args

__all__ = ["build", "BuildError"]


class Builder:
    def __init__(self, store: Store, context: str, df, build_args: dict, target: str,
                 no_cache: bool, timestamp, network: str, progress, layers: bool = True):
        self.store, self.context, self.df = store, context, df
        self.build_args = dict(build_args or {})
        self.used_args: set = set()
        self.target = target
        self.layers = layers
        self.cache = Cache(store, not no_cache and layers)
        self.timestamp = timestamp
        self.network = network
        self.progress = progress
        self.ignore = Ignore.load(context)
        self.results: dict = {}
        self.building: set = set()
        self.ws = None
        self.steps = 0
        # global ARGs (before the first FROM) and the stages
        self.global_args: dict = {}
        self.stages: list = []
        self.stage_names: dict = {}
        current = None
        for ins in df.instructions:
            if ins.cmd == "FROM":
                current = [ins]
                self.stages.append(current)
            elif current is None:
                if ins.cmd != "ARG":
                    raise ins.error("only ARG may come before the first FROM")
                for name, value in self.parse_args(ins, self.global_args):
                    if name in self.build_args:
                        value = self.build_args[name]
                        self.used_args.add(name)
                    elif value is None and name in automatic_args():
                        value = automatic_args()[name]
                    if value is not None:
                        self.global_args[name] = value
            else:
                current.append(ins)
        if not self.stages:
            raise BuildError(f"{df.file}: no FROM instruction")
        self.total = sum(len(s) for s in self.stages)
        for i, s in enumerate(self.stages):
            words = s[0].args.split()
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2].lower()
                if name in self.stage_names:
                    raise s[0].error(f"the stage name {name!r} is used twice")
                self.stage_names[name] = i

    def parse_args(self, ins: Instruction, env: dict) -> list:
        from . import lex

        out = []
        try:
            words = lex.split_raw(ins.args, self.df.escape)
        except lex.LexError as e:
            raise ins.error(str(e)) from None
        if not words:
            raise ins.error("requires at least one argument")
        for w in words:
            name, eq, value = w.partition("=")
            if not name or not all(c.isalnum() or c == "_" for c in name):
                raise ins.error(f"{name!r} is not a valid argument name")
            try:
                out.append((name, lex.word(value, env, self.df.escape) if eq else None))
            except lex.LexError as e:
                raise ins.error(str(e)) from None
        return out

    def target_index(self) -> int:
        if not self.target:
            return len(self.stages) - 1
        t = self.target.lower()
        if t in self.stage_names:
            return self.stage_names[t]
        raise BuildError(f"--target: no stage named {self.target!r} in {self.df.file}")

    def needed(self, index: int, seen: set | None = None) -> set:
        from . import lex

        seen = set() if seen is None else seen
        if index in seen:
            return seen
        seen.add(index)
        refs = []
        words = lex.split_raw(self.stages[index][0].args, self.df.escape)
        if words:
            refs.append(lex.word(words[0], self.global_args, self.df.escape))
        refs += [ins.flags["from"] for ins in self.stages[index][1:]
                 if ins.cmd in ("COPY", "ADD") and "from" in ins.flags]
        for ref in refs:
            r = ref.lower()
            i = self.stage_names.get(r, int(r) if r.isdigit() else -1)
            if 0 <= i < index:
                self.needed(i, seen)
        return seen

    def stage_result(self, index: int, ins: Instruction):
        if index in self.results:
            return self.results[index]
        if index in self.building or index < 0 or index >= len(self.stages):
            raise ins.error(f"stage {index} cannot be used here")
        self.building.add(index)
        first = self.stages[index][0]
        words = first.args.split()
        name = words[2] if len(words) == 3 else str(index)
        res = Stage(self, index, name, self.stages[index]).run()
        self.results[index] = res
        return res

    def from_source(self, ref: str, ins: Instruction) -> tuple:
        """COPY --from=REF: a stage (name or index) or an image of the store → (layer dirs,
        cache key of what they are)."""
        r = ref.lower()
        if r in self.stage_names or (ref.isdigit()):
            idx = self.stage_names.get(r, int(ref) if ref.isdigit() else -1)
            res = self.stage_result(idx, ins)
            return [self.store.layer_dir(d) for d in res.layers], res.key
        try:
            img = self.store.get(ref)
        except Exception as e:
            raise ins.error(f"--from={ref}: {e}") from None
        return [self.store.layer_dir(d) for d in img.layers], img.id

    # ---- progress -----------------------------------------------------------------------

    def tell(self, ins: Instruction, stage) -> None:
        self.steps += 1
        if self.progress is not None:
            self.progress({"event": "step", "step": self.steps, "total": self.total,
                           "instruction": ins.original,
                           "stage": stage.name, "line": ins.line})

    def note_cached(self, ins: Instruction) -> None:
        if self.progress is not None:
            self.progress({"event": "cached", "instruction": ins.original})

    def output(self, data: bytes) -> None:
        if self.progress is not None:
            self.progress({"event": "output", "data": data})

    def run(self, tag: str) -> Image:
        from .workspace import Workspace

        with self.store.shared():
            self.ws = Workspace(self.store)
            try:
                idx = self.target_index()
                # the stages the target needs, in order (BuildKit and buildah skip the rest)
                for i in sorted(self.needed(idx)):
                    res = self.stage_result(i, self.stages[i][0])
            finally:
                self.ws.close()
            img = self.store.add_image(res.image, name=tag)
        unused = sorted(set(self.build_args) - self.used_args)
        if unused and self.progress is not None:
            self.progress({"event": "warning",
                           "text": f"one or more build args were not consumed: {unused}"})
        return img


def build(context: str, dockerfile: str | None = None, tag: str = "", build_args: dict | None = None,
          target: str = "", no_cache: bool = False, timestamp: int | None = None,
          network: str = "none", storage: str | None = None, progress=None,
          layers: bool = True) -> Image:
    """Build the Dockerfile (default CONTEXT/Dockerfile, or Containerfile) with CONTEXT;
    → the Image, named `tag` if given. `progress` gets dicts: {"event": "step", "step",
    "instruction", …}, {"event": "cached"}, {"event": "output", "data": bytes}.
    `timestamp` (or $SOURCE_DATE_EPOCH): every created time and file mtime is it, so the
    same inputs give the same image id. `layers=False` (buildah's default): one new layer
    per stage, no cache."""
    context = os.path.abspath(context)
    if not os.path.isdir(context):
        raise BuildError(f"build context {context}: not a directory")
    if network not in ("none", "host"):
        raise BuildError(f"--network: {network!r} is not none or host")
    if dockerfile is None:
        for n in ("Dockerfile", "Containerfile"):
            if os.path.exists(os.path.join(context, n)):
                dockerfile = os.path.join(context, n)
                break
        else:
            raise BuildError(f"no Dockerfile or Containerfile in {context} (use -f)")
    elif dockerfile != "-" and not os.path.isabs(dockerfile) and not os.path.exists(dockerfile):
        dockerfile = os.path.join(context, dockerfile)
    try:
        if dockerfile == "-":
            import sys

            data, dockerfile = sys.stdin.buffer.read(), "Dockerfile"
        else:
            with open(dockerfile, "rb") as f:
                data = f.read()
    except OSError as e:
        raise BuildError(f"{dockerfile}: {e.strerror}") from None
    if timestamp is None and os.environ.get("SOURCE_DATE_EPOCH", "").strip():
        try:
            timestamp = int(os.environ["SOURCE_DATE_EPOCH"])
        except ValueError:
            raise BuildError("SOURCE_DATE_EPOCH: not a number of seconds") from None
    name = os.path.relpath(dockerfile, context) if dockerfile.startswith(context + "/") else dockerfile
    store = Store(storage)
    if store.rootless:
        raise BuildError("runner build needs root for now (RUN's overlay and owners)")
    b = Builder(store, context, parse(data, name), build_args or {}, target, no_cache,
                timestamp, network, progress, layers)
    return b.run(tag)
