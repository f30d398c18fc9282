"""Entry point: `runner VERB …` and `python -m runner`."""
from __future__ import annotations

import os
import sys


def main(argv=None) -> int:
    from . import cli

    return cli.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
