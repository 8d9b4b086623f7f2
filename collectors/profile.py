"""Profile collector (bpf/profile.bpf.c): on-CPU stacks sampled at ``collect.profile-hz`` on every CPU, folded per
process and interval into ``augur.profiles.v1`` records (the input of a flame graph).

Frames run from the root to the leaf: the user stack, then the kernel stack with each frame suffixed ``_[k]`` (the
folded-stack convention). A user frame is its function's name, else ``[module]`` when only the module is known,
else ``[unknown]``; a stack cut at its kept depth starts with ``[truncated]``. User addresses are resolved from the
process's own mappings at the end of the interval, so a process that exited before it keeps its kernel frames
only, and its user frames are ``[unknown]``. User stacks are walked by frame pointers: code built without them
shows its leaf function and little above it.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from augur.config import Config
from collectors import procfs, samples
from collectors.base import Collector
from collectors.bpf_loader import BpfProgram, comm
from collectors.enrich import CgroupNames
from collectors.elf_symbols import FRAME_CHARS, UNKNOWN, ProcessSymbols, SymbolFiles

PRODUCER = samples.producer("augur-collector-profile")
KERNEL_FRAMES, USER_FRAMES = 20, 40  # bpf/profile.h
OTHER_STACKS = "[other stacks]"
TRUNCATED = "[truncated]"
MAX_CACHED_FRAMES = 1 << 16  # resolved addresses kept per process (and for the kernel)
KEEP_IDLE_INTERVALS = 6  # a process not sampled for this many intervals has its names and mappings dropped
MAX_IDLE_PROCESSES = 64  # ... and at most this many processes not sampled in the last interval keep theirs
MAX_RECORD_CHARS = 256 * 1024  # frames' characters per record (100 stacks of 62 frames of 256 would be 1.6 MB)


def fold(stacks: Counter, limit: int, max_chars: int = MAX_RECORD_CHARS) -> list[tuple[tuple[str, ...], int]]:
    """The ``limit`` most frequent stacks, most frequent first, as long as their frames add up to at most
    ``max_chars`` characters (so a record stays well under Kafka's 1 MB message limit), and the rest merged into
    one ``[other stacks]`` stack, so the counts still add up to every sample."""
    ranked = sorted(stacks.items(), key=lambda kv: (-kv[1], kv[0]))
    kept, chars = [], 0
    for frames, n in ranked[:limit]:
        chars += sum(len(f) + 3 for f in frames)  # each frame's quotes and comma in the JSON
        if chars > max_chars:
            break
        kept.append((frames, n))
    if len(kept) < len(ranked):
        kept.append(((OTHER_STACKS,), sum(n for _, n in ranked[len(kept):])))
    return kept


def process_name(pid: int) -> str | None:
    """The process's name (its main thread's), or None once it has exited. A sample names the thread it caught,
    and a process's busiest thread is often not its main one (a JVM's compiler or GC threads)."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "replace") or None
    except OSError:
        return None


class UserSymbols:
    """User frames' names per process, keyed by pid and start time (a reused pid is another process), resolved in
    this process from the ELF files the process maps (:mod:`collectors.elf_symbols`). A process's mappings are read
    when it is first sampled, and again within an interval when an address falls outside all of them (it loaded a
    library since). Its names and mappings are kept while it is sampled and for ``keep_idle_intervals`` intervals
    after, for at most ``max_idle`` processes at a time that were not sampled in the last interval (the most
    recently sampled kept): a sampling profiler misses a process that runs little in some intervals. The files'
    symbols are shared by all processes and bounded on their own (:class:`collectors.elf_symbols.SymbolFiles`)."""

    def __init__(self, files: SymbolFiles | None = None, keep_idle_intervals: int = KEEP_IDLE_INTERVALS,
                 max_idle: int = MAX_IDLE_PROCESSES):
        self.files = files or SymbolFiles()
        self.keep_idle_intervals, self.max_idle = keep_idle_intervals, max_idle
        self._names: dict[tuple[int, int], dict[int, str]] = {}  # the frames resolved, per process
        self._maps: dict[tuple[int, int], ProcessSymbols] = {}   # its executable mappings
        self._interval: dict[int, tuple[int, int] | None] = {}  # pid -> its key this interval (None: exited)
        self._last_sampled: dict[tuple[int, int], int] = {}     # key -> the last interval it was sampled in
        self._intervals = 0
        self.maps_read = 0   # how many times a process's mappings were read (for tests and the curious)

    def _key(self, pid: int) -> tuple[int, int] | None:
        if pid not in self._interval:
            stat = procfs.pid_stat(pid)
            key = None if stat is None else (pid, int(stat[19]))  # field 22: the process's start time
            if key is not None and key not in self._names:
                self._names[key] = {}
            self._interval[pid] = key
        return self._interval[pid]

    def prefetch(self, stacks) -> None:
        """Resolve the addresses of ``stacks`` (``(pid, addresses)`` pairs) not resolved yet."""
        wanted: dict[tuple[int, int], set[int]] = defaultdict(set)
        for pid, addrs in stacks:
            key = self._key(pid) if addrs else None   # no user stack (a kernel thread): nothing to resolve
            if key is not None:
                names = self._names[key]
                wanted[key].update(a for a in addrs if a not in names)
        for key, addrs in wanted.items():
            if not addrs:
                continue
            maps = self._maps.get(key)
            if maps is None or not all(maps.maps(a) for a in addrs):   # new, or it mapped more since
                maps = self._maps[key] = ProcessSymbols(key[0], self.files)
                self.maps_read += 1
            names = self._names[key]
            if len(names) + len(addrs) > MAX_CACHED_FRAMES:  # a JIT can make addresses without end
                names.clear()
            names.update((a, maps.frame(a)) for a in addrs)

    def frames(self, pid: int, addrs) -> list[str]:
        if not addrs:
            return []
        key = self._key(pid)
        if key is None:  # exited: its mappings are gone
            return [UNKNOWN] * len(addrs)
        names = self._names[key]
        return [names.get(addr, UNKNOWN) for addr in addrs]

    def end_interval(self) -> None:
        now = self._intervals = self._intervals + 1
        for key in self._interval.values():
            if key is not None:
                self._last_sampled[key] = now
        idle = sorted((k for k in self._names if self._last_sampled.get(k, 0) < now),
                      key=lambda k: -self._last_sampled.get(k, 0))
        for i, key in enumerate(idle):
            if i >= self.max_idle or now - self._last_sampled.get(key, 0) >= self.keep_idle_intervals:
                del self._names[key]
                self._maps.pop(key, None)
                self._last_sampled.pop(key, None)
        self._interval = {}

    def cached(self) -> set[tuple[int, int]]:
        """The processes (pid, start time) whose names are kept."""
        return set(self._names)


class ProfileCollector(Collector):
    name = "profile"

    def __init__(self, cfg: Config, host: str, cgroups: CgroupNames | None = None):
        self.host = host
        self.hz = cfg["collect.profile-hz"]
        self.max_stacks = cfg["collect.profile-max-stacks"]
        self.cgroups = cgroups or CgroupNames()
        self.prog = BpfProgram("profile", {"MAX_KEYS": cfg["collect.max-keys"]})
        try:
            self.prog.attach_cpu_clock("on_cpu_sample", self.hz)
        except BaseException:
            self.prog.close()
            raise
        self.symbols = UserSymbols()
        self._ksyms: dict[int, str] = {}
        self._records: list[dict] = []
        self.prog.bpf.ksym(0)  # bcc reads the kernel's symbols now (about 40 ms, 10 MB), not in the first interval

    def _kernel_frame(self, addr: int) -> str:
        name = self._ksyms.get(addr)
        if name is None:
            name = self._ksyms[addr] = self.prog.bpf.ksym(addr).decode("utf-8", "replace")[:FRAME_CHARS - 4] + "_[k]"
        return name

    def stack(self, key, user_addrs: list[int]) -> tuple[str, ...]:
        """The folded stack of a sample's key, whose user addresses (``key.user[:key.user_depth]``) are given."""
        user = self.symbols.frames(key.tgid, user_addrs)[::-1]
        kernel = [self._kernel_frame(a) for a in key.kernel[: key.kernel_depth]][::-1]
        if key.user_depth == USER_FRAMES:
            user.insert(0, TRUNCATED)
        if key.kernel_depth == KERNEL_FRAMES:
            kernel.insert(0, TRUNCATED + "_[k]")
        return tuple(user + kernel) or (UNKNOWN,)  # neither stack could be read

    def collect(self, ts_ms: int, interval_ms: int) -> list[dict]:
        idle = self.prog.flip()
        by_process: dict[tuple[int, int], Counter] = defaultdict(Counter)
        threads: dict[tuple[int, int], Counter] = defaultdict(Counter)  # the threads' names, by samples
        items = [(key, count, key.user[: key.user_depth]) for key, count in self.prog.drain("profile", idle)]
        self.symbols.prefetch((key.tgid, user) for key, _, user in items)
        for key, count, user in items:
            by_process[(key.tgid, key.cgroup_id)][self.stack(key, user)] += count.value
            threads[(key.tgid, key.cgroup_id)][comm(key.comm)] += count.value
        self.symbols.end_interval()
        if len(self._ksyms) > MAX_CACHED_FRAMES:  # kernel addresses are few, but bound the cache anyway
            self._ksyms.clear()
        self._records = [samples.profile(PRODUCER, self.host, ts_ms, interval_ms, self.hz, pid,
                                         process_name(pid) or threads[(pid, cgroup_id)].most_common(1)[0][0],
                                         self.cgroups.path(cgroup_id), fold(stacks, self.max_stacks))
                         for (pid, cgroup_id), stacks in sorted(by_process.items())]
        return []

    def profiles(self) -> list[dict]:
        out, self._records = self._records, []
        return out
