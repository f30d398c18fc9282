"""The README's library example is a working example: run it as written, on a test bundle."""
from __future__ import annotations

import json
import os
import re

from conftest import REPO, assert_nothing_left, new_id


def test_readme_library_example_runs(bundle, tmp_path, capsys):
    text = open(os.path.join(REPO, "README.md")).read()
    code = re.search(r"## Using the library.*?```python\n(.*?)```", text, re.S).group(1)
    job, web = new_id(), new_id()
    bundle.sh("sleep 30")
    bundle.write()
    job_bundle = tmp_path / "job"
    job_bundle.mkdir()
    job_config = dict(bundle.config, root={"path": bundle.rootfs}, process=dict(
        bundle.config["process"], args=["true"]))
    (job_bundle / "config.json").write_text(json.dumps(job_config))
    for old, new in (("/srv/bundles/job", str(job_bundle)), ("/srv/bundles/web", bundle.path),
                     ('"job1"', repr(job)), ('"web"', repr(web)),
                     ("/tmp/web.log", str(tmp_path / "web.log"))):
        code = code.replace(old, new)
    # the example uses the default state root; keep the test's containers in its own
    code = code.replace("import libcontainer", "import libcontainer, functools\n"
                        f"for _n in ('run', 'create', 'load'):\n"
                        f"    setattr(libcontainer, _n, functools.partial(getattr(libcontainer, _n), "
                        f"root={bundle.root!r}))")
    bundle.last_id = web
    import libcontainer

    # (the partials replace the package's own names: put them back for the tests after)
    saved = {n: getattr(libcontainer, n) for n in ("run", "create", "load")}
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        for n, f in saved.items():
            setattr(libcontainer, n, f)
    out = capsys.readouterr().out.split("\n")
    assert any(line.startswith("running ") for line in out)
    assert out[-3:] == ["0", "137", ""]
    assert_nothing_left(bundle)


def test_readme_sandbox_grader_example(tmp_path):
    """The README's grader example, as written, on the grading bench's Debian image (gcc,
    python3) when this host has it (make bench-grading makes it)."""
    import ast
    import asyncio
    import sys

    import pytest

    sys.path.insert(0, os.path.join(REPO, "tests", "bench"))
    import grading_image

    image = grading_image.default_path()
    if not grading_image.ready(image):
        pytest.skip(f"no grading image at {image} (make bench-grading makes it)")
    text = open(os.path.join(REPO, "README.md")).read()
    code = re.search(r"### Untrusted code.*?```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("/srv/images/debian-gcc", image)
    code = code.replace("box.close()", "pass")  # grade() is called below; closed at the end
    g = {"asyncio": asyncio}
    coro = eval(compile(code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), g)
    if coro is not None:
        asyncio.run(coro)
    grade = g["grade"]
    tests = [(b"1 2\n", b"3"), (b"5 5\n", b"10")]
    ok = b'#include <stdio.h>\nint main(){int a,b;scanf("%d %d",&a,&b);printf("%d\\n",a+b);}'
    assert grade(ok, tests) == "AC"
    assert grade(ok.replace(b"a+b", b"a*b"), tests) == "WA"
    assert grade(b"int main(){for(;;);}", tests) == "TLE"
    assert grade(b"int main(){return *(int*)0;}", tests) == "RE"
    assert grade(b"int main(){", tests) == "CE"
    assert g["r"].stdout == b"42\n" and [x.status for x in g["results"]] == ["RE"] * 8
    g["box"].close()
    from libcontainer.errors import ContainerError

    with pytest.raises(ContainerError, match="closed"):
        grade(ok, tests)
