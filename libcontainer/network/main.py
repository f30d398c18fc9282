"""The `runner-cni` executable: without arguments the CNI plugin (cni.py), with `hook …`
the OCI hook (hook.py)."""
from __future__ import annotations

import sys


def main(argv: list | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        from .hook import main as hook_main

        return hook_main(argv)
    from .cni import main as plugin_main

    return plugin_main()
