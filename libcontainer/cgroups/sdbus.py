"""systemd's manager over D-Bus (jeepney, pure Python, blocking): the few calls
`--systemd-cgroup` needs — StartTransientUnit and StopUnit waiting for their job, as
go-systemd does for runc, SetUnitProperties, ResetFailedUnit, a manager property.

Imported only with --systemd-cgroup. The system bus for root; rootless, the user's
(`systemd --user`): $DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus, as runc and crun.
"""
from __future__ import annotations

import os
import time

from jeepney import DBusAddress, MatchRule, MessageType, message_bus, new_method_call
from jeepney.io.blocking import Proxy, open_dbus_connection

from ..errors import ConfigError, ContainerError

FLAG = "--systemd-cgroup"
JOB_TIMEOUT = 30.0  # runc's wait for a unit's start or stop job
MANAGER = DBusAddress("/org/freedesktop/systemd1", bus_name="org.freedesktop.systemd1",
                      interface="org.freedesktop.systemd1.Manager")


class DBusError(ContainerError):
    def __init__(self, name: str, message: str):
        self.name = name
        super().__init__(f"{message} ({name})" if message else name)


def bus_address(user: bool) -> str:
    """Where the bus is: the system's, or (rootless) the user's session bus."""
    if not user:
        return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS",
                              "unix:path=/run/dbus/system_bus_socket")
    env = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if env:
        return env
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.exists(os.path.join(xdg, "bus")):
        return "unix:path=" + os.path.join(xdg, "bus")
    raise ConfigError(FLAG, "rootless: no user D-Bus found (neither DBUS_SESSION_BUS_ADDRESS "
                            "nor $XDG_RUNTIME_DIR/bus): run `systemctl --user start dbus` "
                            "(package dbus-user-session)")


class Systemd:
    """One connection to systemd's manager."""

    def __init__(self, user: bool = False):
        self.user = user
        addr = bus_address(user)
        try:
            self.conn = open_dbus_connection(addr, auth_timeout=5.0)
        except (OSError, ValueError, TimeoutError) as e:
            what = "the user's" if user else "the system"
            raise ConfigError(FLAG, f"cannot reach systemd: connecting to {what} D-Bus at "
                                    f"{addr}: {e}") from None
        self._jobs = MatchRule(type="signal", interface="org.freedesktop.systemd1.Manager",
                               member="JobRemoved", path="/org/freedesktop/systemd1")
        self._subscribed = False
        self._version = None
        try:
            self._version = self.version()
        except DBusError as e:
            self.close()
            raise ConfigError(FLAG, f"cannot reach systemd over D-Bus at {addr}: {e}") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method: str, signature: str = "", body: tuple = (), addr=MANAGER,
              timeout: float = JOB_TIMEOUT):
        msg = new_method_call(addr, method, signature, body)
        reply = self.conn.send_and_get_reply(msg, timeout=timeout)
        if reply.header.message_type == MessageType.error:
            from jeepney import HeaderFields

            name = reply.header.fields.get(HeaderFields.error_name, "error")
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise DBusError(name, text)
        return reply.body

    def property(self, name: str, interface: str = "org.freedesktop.systemd1.Manager",
                 path: str = "/org/freedesktop/systemd1"):
        addr = DBusAddress(path, bus_name="org.freedesktop.systemd1",
                           interface="org.freedesktop.DBus.Properties")
        (value,) = self._call("Get", "ss", (interface, name), addr=addr)
        return value[1]

    def version(self) -> int:
        """systemd's major version ("252.38-1~deb12u1" → 252); -1 if unreadable."""
        if self._version is None:
            text = str(self.property("Version")).lstrip("v")
            digits = ""
            for ch in text:
                if not ch.isdigit():
                    break
                digits += ch
            self._version = int(digits) if digits else -1
        return self._version

    def _wait_job(self, queue, job: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            msg = self.conn.recv_until_filtered(queue, timeout=left)
            _id, path, _unit, result = msg.body
            if path == job:
                return result

    def _job(self, method: str, signature: str, body: tuple) -> str:
        """Call a method that queues a job; wait for its JobRemoved: the job's result."""
        if not self._subscribed:
            Proxy(message_bus, self.conn).AddMatch(self._jobs)
            self._subscribed = True
        with self.conn.filter(self._jobs) as queue:
            (job,) = self._call(method, signature, body)
            return self._wait_job(queue, job, JOB_TIMEOUT)

    def start_transient_unit(self, unit: str, props: list) -> None:
        """Start the unit and wait until it runs. A unit of that name left over (failed)
        is reset and the start tried once more, as later runc does."""
        for attempt in (0, 1):
            try:
                result = self._job("StartTransientUnit", "ssa(sv)a(sa(sv))",
                                   (unit, "replace", props, []))
            except DBusError as e:
                if e.name == "org.freedesktop.systemd1.UnitExists" and attempt == 0:
                    self.reset_failed(unit)
                    continue
                raise
            except TimeoutError:
                self.reset_failed(unit)
                raise ContainerError(f"timed out waiting for systemd to start {unit}") from None
            if result != "done":
                self.reset_failed(unit)
                raise ContainerError(f"systemd could not start unit {unit}: job {result}")
            return

    def stop_unit(self, unit: str) -> bool:
        """Stop the unit and wait for it; False when there was no such unit."""
        try:
            self._job("StopUnit", "ss", (unit, "replace"))
        except DBusError as e:
            if e.name in ("org.freedesktop.systemd1.NoSuchUnit",
                          "org.freedesktop.systemd1.LoadFailed"):
                return False
            raise
        except TimeoutError:
            raise ContainerError(f"timed out waiting for systemd to stop {unit}") from None
        finally:
            self.reset_failed(unit)
        return True

    def reset_failed(self, unit: str) -> None:
        try:
            self._call("ResetFailedUnit", "s", (unit,))
        except DBusError:
            pass

    def set_unit_properties(self, unit: str, props: list) -> None:
        self._call("SetUnitProperties", "sba(sv)", (unit, True, props))

    def unit_properties(self, unit: str, interface: str = "org.freedesktop.systemd1.Scope"
                        ) -> dict:
        """The unit's properties as systemd has them now: name → (signature, value), the
        form SetUnitProperties takes back."""
        (path,) = self._call("GetUnit", "s", (unit,))
        addr = DBusAddress(path, bus_name="org.freedesktop.systemd1",
                           interface="org.freedesktop.DBus.Properties")
        (props,) = self._call("GetAll", "s", (interface,), addr=addr)
        return props

    def attach(self, unit: str, pid: int, subcgroup: str = "") -> None:
        """Move a process into the unit's cgroup (or a cgroup below it): systemd's
        AttachProcessesToUnit (systemd >= 238). A user's systemd that may not move it by
        itself asks the system's."""
        self._call("AttachProcessesToUnit", "ssau", (unit, subcgroup, [pid]))

    def unit_exists(self, unit: str) -> bool:
        try:
            self._call("GetUnit", "s", (unit,))
            return True
        except DBusError:
            return False
