"""Loading Augur's eBPF programs with bcc and draining their double-buffered maps (see bpf/augur.h)."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import time
from pathlib import Path

from augur.paths import REPO_ROOT
from collectors.procfs import resident_bytes
from infra import ebpf

BPF_DIR = REPO_ROOT / "bpf"
FLIP_GRACE_S = 0.005  # handlers that read the old slot finish within microseconds
HEALTH_COUNTERS = ("lost_events", "unaggregated")  # one-element arrays in bpf/augur.h


_LOCAL_INCLUDE = re.compile(r'^#include "([A-Za-z0-9_.]+)"\s*$', re.M)


def inline_local_includes(path: Path, seen: set[str] | None = None) -> str:
    """The program's text with our own ``#include "x.h"`` headers pasted in place: bcc rewrites map calls
    (``m.lookup(...)``) only in its main source, so helpers in shared headers must become part of it."""
    seen = set() if seen is None else seen

    def paste(m: re.Match) -> str:
        name = m.group(1)
        if name in seen:
            return ""
        seen.add(name)
        return inline_local_includes(path.parent / name, seen)

    return _LOCAL_INCLUDE.sub(paste, path.read_text())


class BpfProgram:
    """One ``bpf/<stem>.bpf.c`` loaded in the kernel, with its options as ``-D`` constants; ``cgroup_links``, if
    given, is linked with :meth:`link_to_cgroups` (to the root, or to ``cgroups``), and the program is closed again
    if that fails."""

    def __init__(self, stem: str, defines: dict[str, int] | None = None, tracepoints: tuple[str, ...] = (),
                 cgroup_links: dict[str, str] | None = None, cgroups: tuple[str, ...] = ()):
        ebpf.prepare()
        ebpf.require_tracepoints(*tracepoints)
        # a group that does not exist fails here, before the compiler runs
        dirs = ebpf.cgroup_dirs(cgroups) if cgroup_links else []
        bcc = ebpf.import_bcc()
        source = BPF_DIR / f"{stem}.bpf.c"
        cflags = [f"-I{BPF_DIR}", "-Wno-macro-redefined", "-Wno-unused-function"]
        cflags += [f"-D{k}={int(v)}" for k, v in (defines or {}).items()]
        try:
            self.bpf = bcc.BPF(text=inline_local_includes(source).encode(), cflags=cflags)
        except Exception as e:
            raise ebpf.EbpfUnavailable(f"loading {source.name} failed: {e}") from None
        self.stem = stem
        self._slot = 0
        self._health_seen: dict[str, int] = {}
        self._links: list[int] = []
        if cgroup_links:
            try:
                self.link_to_cgroups(cgroup_links, dirs)
            except BaseException:
                self.close()
                raise

    def link_to_cgroups(self, programs: dict[str, str], dirs: list[Path]) -> None:
        """Link functions to each cgroup v2 folder of ``dirs`` (:func:`infra.ebpf.cgroup_dirs`): the root, so they
        run for every socket of this host, or groups, so they run for their sockets (their descendants' too) and
        no other's. ``programs`` maps a function name to its kind, ``sock_ops``, ``ingress`` or ``egress``
        (cgroup_skb). They are bpf_links, detached when this process closes them or dies, never left behind in the
        kernel."""
        bcc = ebpf.import_bcc()
        kinds = {"sock_ops": (bcc.BPF.SOCK_OPS, bcc.BPFAttachType.CGROUP_SOCK_OPS),
                 "ingress": (bcc.BPF.CGROUP_SKB, bcc.BPFAttachType.CGROUP_INET_INGRESS),
                 "egress": (bcc.BPF.CGROUP_SKB, bcc.BPFAttachType.CGROUP_INET_EGRESS)}
        try:
            for name, kind in programs.items():
                prog_type, attach = kinds[kind]
                try:
                    fn = self.bpf.load_func(name, prog_type)
                except Exception as e:   # bcc raises plain Exceptions (an unknown name, the verifier's refusal)
                    raise ebpf.EbpfUnavailable(f"loading {self.stem}.bpf.c:{name} as {kind} failed: {e}") from None
                for d in dirs:
                    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        self._links.append(_link_create(fn.fd, fd, attach, f"{self.stem}.bpf.c:{name} to {d}"))
                    finally:
                        os.close(fd)
        except BaseException:
            self._close_links()
            raise

    def attach_cpu_clock(self, fn_name: str, hz: int) -> None:
        """Run ``fn_name`` ``hz`` times a second of CPU time on every CPU (a software cpu-clock perf event)."""
        bcc = ebpf.import_bcc()
        try:
            self.bpf.attach_perf_event(ev_type=bcc.PerfType.SOFTWARE, ev_config=bcc.PerfSWConfig.CPU_CLOCK,
                                       fn_name=fn_name.encode(), sample_freq=hz)
        except Exception as e:
            raise ebpf.EbpfUnavailable(f"attaching {self.stem}.bpf.c:{fn_name} to a cpu-clock perf event failed "
                                       f"({e}); the kernel must allow perf events (kernel.perf_event_paranoid, "
                                       f"CAP_PERFMON)") from None

    def _close_links(self) -> None:
        while self._links:
            os.close(self._links.pop())

    def flip(self) -> int:
        """Point handlers at the other copy of the maps; returns the slot that is now idle and safe to read."""
        idle = self._slot
        self._slot = 1 - self._slot
        self.bpf["active_slot"][ctypes.c_int(0)] = ctypes.c_uint32(self._slot)
        time.sleep(FLIP_GRACE_S)
        return idle

    def drain(self, name: str, slot: int) -> list:
        """All ``(key, value)`` pairs of ``<name><slot>``, which is then emptied. A hash map is read and emptied
        in batches (:func:`drain_hash`); an array is read and zeroed element by element."""
        table = self.bpf[f"{name}{slot}"]
        if table.ttype in HASH_MAP_TYPES:
            return drain_hash(table, f"{name}{slot}")
        items = [(k, v) for k, v in table.items()]
        table.clear()
        return items

    def health(self) -> dict[str, int]:
        """Since the last call: ring-buffer records the kernel could not queue (``lost_events``) and observations
        a full map kept out of the aggregates (``unaggregated``); both are counted by every program (augur.h)."""
        out = {}
        for name in HEALTH_COUNTERS:
            total = int(self.bpf[name][ctypes.c_int(0)].value)
            out[name], self._health_seen[name] = total - self._health_seen.get(name, 0), total
        return out

    def close(self) -> None:
        self._close_links()
        self.bpf.cleanup()


HASH_MAP_TYPES = (1, 5)   # BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH
DRAIN_BATCH = 256         # entries per call: far more than a hash bucket holds, which one call must take whole


def drain_hash(table, name: str) -> list:
    """Every ``(key, value)`` of a hash map, deleted as read, with libbpf's
    ``bpf_map_lookup_and_delete_batch``: one system call per 256 entries, where reading and then deleting them one by
    one (bcc's ``items()`` and ``clear()``) took four per entry. Only for a map no program writes meanwhile (the
    idle copy of a double-buffered map). The pairs are bcc's key and value types (a per-CPU map's value is the
    array of its CPUs' values), views into buffers allocated per call."""
    lib = _libbpf()
    fd = table.map_fd
    token_in, token_out = ctypes.c_uint64(0), ctypes.c_uint64(0)   # the kernel's position in the map (a bucket)
    key_size, value_size = ctypes.sizeof(table.Key), ctypes.sizeof(table.Leaf)
    out, first = [], True
    while True:
        keys, values = (table.Key * DRAIN_BATCH)(), (table.Leaf * DRAIN_BATCH)()
        count = ctypes.c_uint32(DRAIN_BATCH)
        res = lib.bpf_map_lookup_and_delete_batch(fd, None if first else ctypes.byref(token_in),
                                                   ctypes.byref(token_out), keys, values, ctypes.byref(count), None)
        out.extend((table.Key.from_buffer(keys, i * key_size), table.Leaf.from_buffer(values, i * value_size))
                   for i in range(count.value))   # ctypes objects, as bcc gives (an array's item may be an int)
        if res != 0:
            err = -res if res < 0 else ctypes.get_errno()   # libbpf 1.x returns -errno
            if err == errno.ENOENT:   # the map's end: this call's entries are the last
                return out
            raise OSError(err, f"draining map {name}: {os.strerror(err)}")
        first = False
        token_in.value = token_out.value


@functools.cache
def _libbpf():
    """Debian's libbpf (bcc's Python package does not bind the calls used here)."""
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.bpf_link_create.restype = ctypes.c_int
    lib.bpf_map_lookup_and_delete_batch.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                                    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.bpf_map_lookup_and_delete_batch.restype = ctypes.c_int
    return lib


def _link_create(prog_fd: int, target_fd: int, attach_type: int, what: str) -> int:
    """libbpf's bpf_link_create (bcc's own attach for cgroups is the legacy one, which outlives the process)."""
    fd = _libbpf().bpf_link_create(prog_fd, target_fd, attach_type, None)
    if fd < 0:
        raise ebpf.EbpfUnavailable(f"linking {what} failed: {os.strerror(-fd)}; the kernel must allow cgroup "
                                   f"BPF programs and BPF links (Linux >= 5.7)")
    return fd


def comm(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace") or "?"


def hist_slots(h) -> tuple[list[int], int]:
    """``struct hist`` -> (bucket counts, sum); the value of a per-CPU map (an array of them) is summed."""
    if not hasattr(h, "slots"):
        parts = [hist_slots(one) for one in h]
        return [sum(col) for col in zip(*(slots for slots, _ in parts))], sum(total for _, total in parts)
    return [int(x) for x in h.slots], int(h.sum)


COMPILER_LIBRARIES = ("libLLVM", "libclang")   # what bcc compiles with, in the collector's own process
MADV_PAGEOUT = 21                                # Linux >= 5.4


def release_compiler_memory() -> dict[str, int]:
    """Give back what compiling the programs took, once every program is loaded: bcc compiles in this process, and
    the compiler's freed heap and the pages of its libraries it touched stayed resident (about 60 MB and 70 MB of
    the collector's 215), though nothing runs them again. The heap goes back with glibc's ``malloc_trim``; the
    library pages are paged out (``madvise(MADV_PAGEOUT)``): they are clean file pages, dropped rather than
    written anywhere, and read back from the file if anything calls the compiler again. Returns the resident bytes
    before and after (``/proc/self/status``); where libc or the kernel lacks a call, that part is skipped."""
    before = resident_bytes()
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for start, end in compiler_mappings():
        libc.madvise(start, end - start, MADV_PAGEOUT)   # EINVAL before Linux 5.4: the pages stay, nothing breaks
    return {"rss_before": before, "rss_after": resident_bytes()}


def compiler_mappings() -> list[tuple[int, int]]:
    """The address ranges where this process maps the compiler's libraries (``/proc/self/maps``)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and any(lib in parts[5] for lib in COMPILER_LIBRARIES):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                out.append((start, end))
    return out
