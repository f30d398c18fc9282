"""The container's terminal: hand the pty master to a console socket (as runc does, for
engines), or relay it to the runner's own terminal in the foreground."""
from __future__ import annotations

import os
import stat

from .errors import InvalidArgument


def check_console_socket(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"--console-socket: {path}: {e.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidArgument(f"--console-socket: {path} is not a unix socket")


def send_to_socket(path: str, fd: int) -> None:
    """Send the pty master over the unix socket with SCM_RIGHTS; the payload is its name,
    which is what runc sends and what engines (conmon, containerd) read."""
    import _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
    try:
        s.connect(path)
        s.sendmsg([b"/dev/ptmx"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, "little"))])
    except OSError as e:
        raise InvalidArgument(f"--console-socket: {path}: {e.strerror}") from None
    finally:
        s.close()


def set_size(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, rows.to_bytes(2, "little") + cols.to_bytes(2, "little") + bytes(4))


def copy_size(src: int, dst: int) -> None:
    import fcntl
    import termios

    try:
        ws = fcntl.ioctl(src, termios.TIOCGWINSZ, bytes(8))
        fcntl.ioctl(dst, termios.TIOCSWINSZ, ws)
    except OSError:
        pass


def relay(master: int, pid: int) -> int:
    """Copy stdin → pty and pty → stdout until the container's process exits; the runner's
    terminal (if stdin is one) is raw meanwhile. Returns the wait status."""
    import select
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        copy_size(0, master)
    stdin_open = True
    try:
        while True:
            rfds = [master] + ([0] if stdin_open else [])
            try:
                ready, _, _ = select.select(rfds, [], [], 0.2)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    data = b""
                if not data:
                    break
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:
                    stdin_open = False
                    _write_all(master, b"\x04")  # EOF to the pty's reader
            if not ready:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return status
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    return os.waitpid(pid, 0)[1]


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
