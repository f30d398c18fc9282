# The Python half of the `runner` and `runner-cni` commands, the one copy of it. Installed
# (pip install ., make venv), the commands are ELF launchers (csrc/launcher.c) that carry
# this text (setup.py embeds it at build time, after a line setting COMMAND and
# INSTALLED_PYTHON, the interpreter the installation was built for) and start
# `python -I -S -c <a stub that runs it>`; in a checkout, bin/runner and bin/runner-cni run
# this file after their shell line, with COMMAND set. Either way Python starts without
# `site` (3-6 ms of every container start) and isolated (PYTHON* variables, the user's
# site-packages, the working directory). Without site, this puts on sys.path what site
# would: site-packages and the paths its .pth files name (an editable install is one of
# those). An install it cannot find its way in (dependencies only in the system's or the
# user's site-packages, PYTHONPATH) is run again with the interpreter's defaults.
import sys

# what each command runs, and what must be found on the sys.path built here to run it
COMMANDS = {
    "runner": ("runner.__main__", ("runner", "libcontainer", "_cffi_backend")),
    "runner-cni": ("libcontainer.network.main", ("libcontainer",)),
}


def _paths():
    ver = "python%d.%d" % sys.version_info[:2]
    # without site, sys.prefix is the base interpreter's: the venv is where python lives
    venv = sys.executable.rsplit("/", 2)[0]
    for base in dict.fromkeys((venv, sys.prefix)):
        sp = base + "/lib/" + ver + "/site-packages"
        yield sp
        try:
            import os
            names = sorted(n for n in os.listdir(sp) if n.endswith(".pth"))
        except OSError:
            continue
        for name in names:
            with open(sp + "/" + name) as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith(("#", "import ", "import\t")):
                        yield line


def _found(names) -> bool:
    for name in names:
        if not any(f.find_spec(name, None) for f in sys.meta_path if hasattr(f, "find_spec")):
            return False
    return True


module, needs = COMMANDS[COMMAND]  # noqa: F821 (set by whoever runs this text)
# Run by -c, argv[0] is "-c" and the launcher's own path follows: a script's argv[0]
# (runner looks for runner-cni next to it). `again` is what follows the interpreter's
# options, to run the same way with its defaults.
again = sys.orig_argv[len(sys.orig_argv) - len(sys.argv) - (sys.argv[0] == "-c"):]
if sys.argv[0] == "-c":
    del sys.argv[0]
if sys.flags.no_site:
    sys.path.extend(p for p in _paths() if p not in sys.path)
    if not _found(needs):
        import os

        # a copy of the launcher next to some other python (/usr/local/bin/python3): the
        # installation's own interpreter, the way we came (set by the launcher, see
        # csrc/launcher.c; not in a checkout), before the interpreter's defaults
        home = globals().get("INSTALLED_PYTHON") or ""
        if home and home != sys.executable and os.access(home, os.X_OK):
            os.execv(home, [home, *sys.orig_argv[1:]])
        os.execv(sys.executable, [sys.executable, *again])
elif not (sys.flags.isolated or getattr(sys.flags, "safe_path", False)):
    # the working directory (-c) or the script's: neither holds our packages, and a
    # runtime run as root must not import whatever lies in the directory it was started in
    del sys.path[0]
main = __import__(module, fromlist=["main"]).main

code = main()
# skip the interpreter's teardown (1-2 ms): nothing of ours needs finalizers
sys.stdout.flush()
sys.stderr.flush()
import os  # noqa: E402

os._exit(code)
