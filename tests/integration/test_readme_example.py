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
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.split("\n")
    assert any(line.startswith("running ") for line in out)
    assert out[-3:] == ["0", "137", ""]
    assert_nothing_left(bundle)
