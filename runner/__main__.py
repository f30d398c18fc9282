"""Entry point: `runner VERB …` and `python -m runner`."""
from __future__ import annotations

import gc
import os
import sys


def main(argv=None) -> int:
    # The collector off while the modules load and the verb runs: everything allocated at
    # start-up lives as long as the process, and the dozen passes that would walk it cost
    # ~1 ms of a `runner run`. cli.main turns it back on for the verbs that run long.
    gc.disable()
    from . import cli

    return cli.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
