"""User-space symbols for the profile collector, resolved in a helper process: ``python -m collectors.symbolizer``.

Why a helper: bcc's per-process symbol cache (``bcc_symcache_new``) can close a file descriptor that is not its
own. In bcc before 0.33 (Debian ships 0.26), a module path built without entering the process's mount namespace
(the global ``/tmp/perf-PID.map``, tried for every process) leaves its descriptor field uninitialised, and its
destructor closes whatever number that memory held (bcc pull request 5193). In the collector's process that number
can be a BPF map's or a perf event's: a CI run of the fault drill lost the ``host`` collector's map that way
(``Bad file descriptor``). In the helper the worst case is the helper's own pipe: the client sees it fail, starts a
new helper at the next request, and that interval's user frames are ``[unknown]`` (and resolved again later).

Protocol, one JSON line each way per interval. The request is
``{"resolve": [[pid, start_time, [address, ...]], ...], "keep": [[pid, start_time], ...]}`` and the reply is
``{"names": [[name, ...], ...]}``, one list per resolve entry. The helper keeps one symbol cache per (pid, start
time), so a reused pid is another process, and frees those not in ``keep`` after replying.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

from augur.paths import REPO_ROOT

FRAME_CHARS = 256  # the schema's bound on a frame
UNKNOWN = "[unknown]"
REPLY_TIMEOUT_S = 10.0


def frame_name(cache, addr: int) -> str:
    """The function at ``addr``, else ``[module]`` when only its module is known, else ``[unknown]``."""
    name, _, module = cache.resolve(addr, True)
    if name:
        return name.decode("utf-8", "replace")[:FRAME_CHARS]
    if module:
        return f"[{os.path.basename(module.decode('utf-8', 'replace'))}]"[:FRAME_CHARS]
    return UNKNOWN


class Symbolizer:
    """The collector's side: sends an interval's unresolved addresses to the helper and reads their names. A helper
    that died, answered garbage or did not answer in ``timeout_s`` is stopped; the next request starts another."""

    def __init__(self, timeout_s: float = REPLY_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.restarts = 0
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def resolve(self, requests: list[tuple[int, int, list[int]]],
                keep: list[tuple[int, int]]) -> list[list[str]] | None:
        """The names of each request's addresses, in order, or None if the helper failed (it is then restarted
        at the next call)."""
        self.start()
        line = json.dumps({"resolve": requests, "keep": keep}).encode() + b"\n"
        try:
            self._proc.stdin.write(line)
            self._proc.stdin.flush()
            reply = self._read_line()
            names = json.loads(reply)["names"]
            if len(names) != len(requests) or any(len(n) != len(r[2]) for n, r in zip(names, requests)):
                raise ValueError("the helper's reply does not match the request")
            return names
        except (OSError, ValueError, KeyError, TypeError):   # TimeoutError is an OSError
            self._stop()
            return None

    def _read_line(self) -> bytes:
        out = self._proc.stdout
        if not select.select([out], [], [], self.timeout_s)[0]:
            raise TimeoutError("the symbolizer did not answer")
        line = out.readline()   # the helper writes a whole line at once
        if not line.endswith(b"\n"):
            raise OSError("the symbolizer closed its output")
        return line

    def start(self) -> None:
        """Start the helper if it is not running (each request does). Not at the collector's start: a page of the
        compiler's libraries that both processes map would stay resident in both (see
        :func:`collectors.bpf_loader.release_compiler_memory`)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        if self._proc is not None:
            self.restarts += 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                            os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen([sys.executable, "-m", "collectors.symbolizer"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, start_new_session=True)

    def _stop(self) -> None:
        if self._proc is None:
            return
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def close(self) -> None:
        self._stop()
        self._proc = None


def serve(stdin, stdout) -> None:
    """The helper's loop: one request line in, one reply line out, until its input ends."""
    from collectors.bpf_loader import release_compiler_memory
    from infra import ebpf
    bcc = ebpf.import_bcc()
    release_compiler_memory()   # loading libbcc touched its compiler libraries' pages; the helper never compiles
    caches: dict[tuple[int, int], object] = {}
    for line in stdin:
        request = json.loads(line)
        names = []
        for pid, start, addrs in request["resolve"]:
            cache = caches.get((pid, start))
            if cache is None:
                cache = caches[(pid, start)] = bcc.SymbolCache(pid)
            names.append([frame_name(cache, addr) for addr in addrs])
        stdout.write(json.dumps({"names": names}).encode() + b"\n")
        stdout.flush()
        keep = {(pid, start) for pid, start in request["keep"]}
        for key in [k for k in caches if k not in keep]:
            bcc.lib.bcc_free_symcache(caches.pop(key).cache, key[0])


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
