"""What a sandboxed run did, in the terms of isolate's meta file."""
from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field

OK, TIMEOUT, SIGNALED, RUNTIME_ERROR, INTERNAL_ERROR, MEMORY_LIMIT = "OK", "TO", "SG", "RE", "XX", "ML"


@dataclass
class Result:
    """The run's outcome.

    exit_code: the main process's exit status (None if a signal ended it);
    signal: the signal number that ended it (None otherwise); stdout, stderr: bytes, at
    most limits.output each; duration: wall seconds; cpu_time: CPU seconds of the whole run;
    max_rss: peak memory bytes charged to the run (the cgroup's, else the main process's);
    timed_out: the CPU or wall limit ended it; oom_killed: the kernel's OOM killer killed a
    process of the run (its own counter); output_truncated: output past the cap was thrown
    away; status: OK, TO (time), ML (memory), SG (signal), RE (exit code not 0) or XX
    (the sandbox failed: only `runner sandbox` reports it so, with exit status 2; run()
    raises the error instead); message: why, in words (isolate's meta "message")."""
    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    duration: float = 0.0
    cpu_time: float = 0.0
    max_rss: int = 0
    timed_out: bool = False
    oom_killed: bool = False
    output_truncated: bool = False
    status: str = OK
    message: str = ""
    wall_timed_out: bool = field(default=False, repr=False)

    @property
    def ok(self) -> bool:
        """status is OK: the command exited 0 within every limit."""
        return self.status == OK

    def decide(self) -> None:
        """status and message from the facts, in isolate's order of precedence."""
        if self.timed_out:
            self.status = TIMEOUT
            self.message = "Time limit exceeded" + (" (wall clock)" if self.wall_timed_out else "")
        elif self.oom_killed:
            self.status = MEMORY_LIMIT
            self.message = "Memory limit exceeded (the OOM killer killed a process)"
        elif self.signal is not None:
            self.status = SIGNALED
            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            self.message = f"Caught fatal signal {self.signal} ({name})"
        elif self.exit_code:
            self.status = RUNTIME_ERROR
            self.message = f"Exited with error status {self.exit_code}"
        else:
            self.status = OK
            self.message = ""

    def meta(self) -> dict:
        """isolate's meta fields (time, time-wall, max-rss in KiB, exitcode or exitsig,
        status unless OK, killed, cg-oom-killed, message) plus this API's names."""
        m = {"time": round(self.cpu_time, 3), "time-wall": round(self.duration, 3),
             "max-rss": self.max_rss // 1024}
        if self.signal is not None:
            m["exitsig"] = self.signal
        elif self.exit_code is not None:  # (none when the sandbox failed: XX)
            m["exitcode"] = self.exit_code
        if self.status != OK:
            m["status"] = self.status
        if self.timed_out or self.signal is not None:
            m["killed"] = 1
        if self.oom_killed:
            m["cg-oom-killed"] = 1
        if self.message:
            m["message"] = self.message
        return m

    def to_json(self, with_output: bool = True) -> dict:
        """The Result as JSON-ready values (`runner sandbox --json`); stdout and stderr
        decoded as UTF-8 (bad bytes replaced) unless `with_output` is False."""
        out = {"status": self.status, "exit_code": self.exit_code, "signal": self.signal,
               "duration": round(self.duration, 6), "cpu_time": round(self.cpu_time, 6),
               "max_rss": self.max_rss, "timed_out": self.timed_out,
               "oom_killed": self.oom_killed, "output_truncated": self.output_truncated,
               "message": self.message}
        if with_output:
            out["stdout"] = self.stdout.decode("utf-8", "replace")
            out["stderr"] = self.stderr.decode("utf-8", "replace")
        return out
