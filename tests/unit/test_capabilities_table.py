"""The capability table is the kernel's: every CAP_* the installed uapi header defines, with
its number, and nothing else; and the running kernel knows no capability we do not."""
import re

from libcontainer.security import capabilities

HEADER = "/usr/include/linux/capability.h"  # linux-libc-dev, which libc6-dev brings


def test_names_and_numbers_are_the_headers():
    with open(HEADER) as f:
        defined = dict(re.findall(r"^#define CAP_([A-Z_]+)\s+(\d+)\s*$", f.read(), re.M))
    defined.pop("LAST_CAP", None)
    header = {name.lower(): int(num) for name, num in defined.items()}
    assert capabilities.known_names() == header


def test_the_running_kernel_has_no_capability_beyond_the_table():
    assert capabilities.last_cap() <= max(capabilities.known_names().values())
