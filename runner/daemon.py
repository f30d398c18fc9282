"""`runner daemon`: serve the Docker Engine API (libcontainer.engine.api; aiohttp is
imported here only, by this verb)."""
from __future__ import annotations


from libcontainer.errors import InvalidArgument

from .args import Flag, flag_help, parse

FLAGS = [
    Flag("--host,-H", "hosts", True, None, "unix://PATH, tcp://HOST:PORT (with --tlsverify) or "
         "fd:// (socket activation); repeatable", multiple=True),
    Flag("--data-root", "data_root", True, "", "containers, images, volumes (default "
         "/var/lib/runner-daemon; unprivileged: ~/.local/share/runner-daemon)"),
    Flag("--exec-root", "exec_root", True, "", "runtime state (default DATA-ROOT/runtime)"),
    Flag("--group,-G", "group", True, "docker", "group of the unix socket (0660)"),
    Flag("--pidfile,-p", "pidfile", True, "", "write the daemon's pid here"),
    Flag("--tlsverify", "tlsverify", help="TCP with mutual TLS (clients need a cert of --tlscacert)"),
    Flag("--tlscacert", "tlscacert", True, "", "CA of the clients' certificates"),
    Flag("--tlscert", "tlscert", True, "", "the daemon's certificate"),
    Flag("--tlskey", "tlskey", True, "", "the daemon's key"),
    Flag("--insecure-tcp", "insecure_tcp", help="allow plain TCP, on a loopback address only"),
    Flag("--debug,-D", "debug", help="more logging"),
    Flag("--help,-h", "help"),
]


def _default_socket() -> str:
    import os

    if os.geteuid() == 0:
        return "/run/runner/docker.sock"
    xdg = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return os.path.join(xdg, "runner", "docker.sock")


def cmd_daemon(ctx, argv: list) -> int:
    opts, pos = parse(argv, FLAGS)
    if opts["help"]:
        return flag_help("daemon", FLAGS)
    if pos:
        raise InvalidArgument(f"daemon: unexpected argument {pos[0]!r}")
    opts["default_socket"] = _default_socket()
    if not opts["data_root"]:
        import os

        opts["data_root"] = ("/var/lib/runner-daemon" if os.geteuid() == 0 else
                             os.path.expanduser("~/.local/share/runner-daemon"))
    opts["hosts"] = opts["hosts"] or []
    try:
        from libcontainer.engine.api.server import main
    except ImportError as e:
        raise InvalidArgument(f"runner daemon needs aiohttp (pip install 'libcontainer[daemon]'): {e}") from None
    return main(opts)
