"""User frames named from the ELF files a process maps (collectors/elf_symbols.py), checked on this process's own
functions, whose addresses ctypes gives, and on the profile collector's per-process cache."""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import struct
import time

import pytest

from collectors.elf_symbols import UNKNOWN, ProcessSymbols, SymbolFiles
from collectors.procfs import pid_stat
from tests.ebpf_support import require_root


def address(fn) -> int:
    return ctypes.cast(fn, ctypes.c_void_p).value


def test_this_process_functions_are_named_at_their_start_and_inside():
    libc = ctypes.CDLL(None)
    me = ProcessSymbols(os.getpid(), SymbolFiles())
    assert me.frame(address(libc.getpid)) == "getpid"          # not its alias __getpid
    assert me.frame(address(libc.printf) + 16) == "printf"     # an address inside the function
    assert me.frame(address(ctypes.pythonapi.PyLong_FromLong)) == "PyLong_FromLong"
    libstdcxx = ctypes.CDLL("libstdc++.so.6")
    assert me.frame(address(getattr(libstdcxx, "_ZNSt9exceptionD1Ev"))) == "std::exception::~exception()"
    assert me.frame(8) == UNKNOWN                               # nothing is mapped there


def test_a_jit_function_is_named_from_the_perf_map_and_other_anonymous_code_is_unknown():
    code = mmap.mmap(-1, 8192, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    start = ctypes.addressof(ctypes.c_char.from_buffer(code))
    perf_map = f"/tmp/perf-{os.getpid()}.map"
    try:
        with open(perf_map, "w") as f:
            f.write(f"{start:x} 100 LazyCompile:*handleRequest server.js:12\n")
        me = ProcessSymbols(os.getpid(), SymbolFiles())
        assert me.frame(start + 16) == "LazyCompile:*handleRequest server.js:12"
        assert me.frame(start + 4096) == UNKNOWN                # executable, anonymous, in no map entry
        with open(perf_map, "a") as f:                          # the JIT adds a function: the map is read again
            f.write(f"{start + 4096:x} 40 LazyCompile:*parse server.js:40\n")
        assert me.frame(start + 4100) == "LazyCompile:*parse server.js:40"
        with open(perf_map, "a") as f:                          # a line not yet finished is not read ...
            f.write(f"{start + 5000:x} 40 LazyCompile:*ren")
            f.flush()
            assert me.frame(start + 5010) == UNKNOWN
            f.write("der server.js:77\n")                     # ... until it is
        assert me.frame(start + 5010) == "LazyCompile:*render server.js:77"
        with open(perf_map, "a") as f:                          # recompiled at the same place: the later line wins
            f.write(f"{start:x} 100 LazyCompile:*handleRequest server.js:13\n")
        assert me.frame(start + 16) == "LazyCompile:*handleRequest server.js:13"
    finally:
        os.unlink(perf_map)
        code.close()


def test_a_deleted_library_is_still_named_through_map_files(tmp_path):
    """An upgrade replaces a library under a running process: the mapped file is gone from the file system, and
    /proc/PID/map_files (root only) still opens it."""
    require_root("open /proc/PID/map_files")
    copy = tmp_path / "libaugur-test-z.so.1"
    shutil.copy("/usr/lib/x86_64-linux-gnu/libz.so.1", copy)
    lib = ctypes.CDLL(str(copy))
    copy.unlink()
    me = ProcessSymbols(os.getpid(), SymbolFiles())
    assert me.frame(address(lib.zlibVersion)) == "zlibVersion"


def test_files_are_read_once_for_all_processes_and_dropped_least_recently_used():
    libc = ctypes.CDLL(None)
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    try:
        files = SymbolFiles(max_files=1)
        getpid = address(libc.getpid)   # the same in the forked child
        assert ProcessSymbols(os.getpid(), files).frame(getpid) == "getpid"
        assert ProcessSymbols(pid, files).frame(getpid) == "getpid"
        assert files.reads == 1 and len(files) == 1            # libc, once for both
        me = ProcessSymbols(os.getpid(), files)
        assert me.frame(address(ctypes.pythonapi.PyLong_FromLong)) == "PyLong_FromLong"
        assert len(files) == 1                                 # libc went to make room
        assert me.frame(getpid) == "getpid" and files.reads == 3
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_user_symbols_are_kept_for_a_process_that_skips_intervals_then_dropped(tmp_path):
    """A process sampled in one interval and not in the next ones keeps its resolved names and mappings (nothing
    is read again when it is sampled again) for keep_idle_intervals intervals; then they are dropped. At most
    max_idle such processes keep theirs, the most recently sampled. A library loaded after the mappings were read
    has them read again."""
    from collectors.profile import UserSymbols

    addr = address(ctypes.CDLL(None).getpid)   # the same in a forked child
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            time.sleep(120)
            os._exit(0)
        children.append(pid)
    me, a, b = [(p, int(pid_stat(p)[19])) for p in [os.getpid(), *children]]
    keep = 3
    syms = UserSymbols(keep_idle_intervals=keep)
    try:
        def interval(*keys):
            syms.prefetch((k[0], [addr]) for k in keys)
            names = [syms.frames(k[0], [addr])[0] for k in keys]
            syms.end_interval()
            assert names == ["getpid"] * len(keys)

        interval(me, a)
        assert syms.maps_read == 2
        for _ in range(keep - 1):
            interval(me)
        interval(a)                                   # sampled again after 2 intervals without it
        assert syms.maps_read == 2                    # nothing read again
        for _ in range(keep):
            interval(me)
        assert syms.cached() == {me}
        interval(a)
        assert syms.maps_read == 3                    # a's were dropped meanwhile

        copy = tmp_path / "libaugur-test-z.so.1"      # a library mapped after this process's maps were read
        shutil.copy("/usr/lib/x86_64-linux-gnu/libz.so.1", copy)
        late = address(ctypes.CDLL(str(copy)).zlibVersion)
        syms.prefetch([(me[0], [late])])
        assert syms.frames(me[0], [late]) == ["zlibVersion"] and syms.maps_read == 4

        few = UserSymbols(max_idle=1)
        for key in (a, b, me):                        # one interval each
            few.prefetch([(key[0], [addr])])
            few.end_interval()
        assert few.cached() == {me, b}                # of the two idle ones, the more recently sampled
    finally:
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


@pytest.mark.parametrize("text", [b"", b"\x7fELF\x01\x01", b"not an elf at all" * 10,
                                  b"\x7fELF\x02\x01" + bytes(10),                    # a header cut short
                                  b"\x7fELF\x02\x01" + bytes(34) + (1 << 20).to_bytes(8, "little") + bytes(10)
                                  + (64).to_bytes(2, "little") + (3).to_bytes(2, "little") + bytes(2)])  # no sections
def test_a_file_that_is_not_a_whole_64_bit_elf_file_is_refused(tmp_path, text):
    """(A process's frames in such a file are then named by the file, ``[name]``.)"""
    from collectors.elf_symbols import read_elf
    bad = tmp_path / "bad.so"
    bad.write_bytes(text)
    with pytest.raises(ValueError):
        read_elf(bad)


def debug_file(functions: dict[str, tuple[int, int]]) -> bytes:
    """A minimal ELF64 debug file: a header, and a .symtab of ``name -> (address, size)`` functions with its
    string table (what ``objcopy --only-keep-debug`` leaves, as far as symbols go)."""
    strtab = b"\0" + b"".join(name.encode() + b"\0" for name in functions)
    symtab, at = bytes(24), 1   # entry 0 is the null symbol
    for name, (addr, size) in functions.items():
        symtab += struct.pack("<IBBHQQ", at, (1 << 4) | 2, 0, 12, addr, size)   # GLOBAL FUNC, in a section
        at += len(name) + 1
    body_at = 64
    headers_at = body_at + len(symtab) + len(strtab)
    sections = bytes(64)   # the null section
    sections += struct.pack("<IIQQQQIIQQ", 0, 2, 0, 0, body_at, len(symtab), 2, 1, 8, 24)          # .symtab
    sections += struct.pack("<IIQQQQIIQQ", 0, 3, 0, 0, body_at + len(symtab), len(strtab), 0, 0, 1, 0)  # .strtab
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 3, 62, 1, 0, 0, headers_at, 0,
                         64, 56, 0, 64, 3, 0)
    return header + symtab + strtab + sections


def test_a_library_without_symtab_takes_its_functions_from_the_debug_file_named_by_its_build_id(tmp_path):
    """A distribution's library keeps only .dynsym; its debug package puts the full .symtab under
    /usr/lib/debug/.build-id/XX/REST.debug, found by the library's build id."""
    from collectors.elf_symbols import DEBUG_DIR, _build_id, _headers, read_elf

    lib = "/usr/lib/x86_64-linux-gnu/libz.so.1"
    data = open(lib, "rb").read()
    build_id = _build_id(data, _headers(data)[1])
    plain = read_elf(lib, debug_root=tmp_path)
    hidden = plain.starts[len(plain.starts) // 2] + 1        # inside some exported function of libz
    inside = plain.ends[-1] + 64                                # past the last exported function
    debug = tmp_path / DEBUG_DIR / build_id[:2] / f"{build_id[2:]}.debug"
    debug.parent.mkdir(parents=True)
    debug.write_bytes(debug_file({"augur_static_helper": (inside, 32)}))
    with_debug = read_elf(lib, debug_root=tmp_path)
    assert plain.name(inside + 4) is None
    assert with_debug.name(inside + 4) == "augur_static_helper"
    assert with_debug.name(hidden) == plain.name(hidden)     # the exported names are still there


def jit_code_and_its_perf_map():
    code = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    return code, ctypes.addressof(ctypes.c_char.from_buffer(code)), f"/tmp/perf-{os.getpid()}.map"


def test_a_perf_map_that_is_a_fifo_or_a_link_is_not_read(tmp_path):
    """Any process names its perf map (/tmp/perf-PID.map in its own file system): a FIFO must not block the
    collector, and a symbolic link must not lead it into its own file system."""
    from collectors.elf_symbols import open_regular

    code, start, perf_map = jit_code_and_its_perf_map()
    elsewhere = tmp_path / "elsewhere.map"
    elsewhere.write_text(f"{start:x} 100 leaked_from_elsewhere\n")
    try:
        os.mkfifo(perf_map)
        t0 = time.monotonic()
        assert ProcessSymbols(os.getpid(), SymbolFiles()).frame(start + 8) == UNKNOWN
        assert time.monotonic() - t0 < 5
        with pytest.raises(ValueError, match="not a regular file"):
            os.close(open_regular(perf_map))
        os.unlink(perf_map)
        os.symlink(elsewhere, perf_map)
        assert ProcessSymbols(os.getpid(), SymbolFiles()).frame(start + 8) == UNKNOWN
        os.unlink(perf_map)
        shutil.copy(elsewhere, perf_map)                       # the process's own file: read
        assert ProcessSymbols(os.getpid(), SymbolFiles()).frame(start + 8) == "leaked_from_elsewhere"
    finally:
        if os.path.lexists(perf_map):
            os.unlink(perf_map)
        code.close()


def test_a_perf_map_another_user_wrote_is_not_the_process_map():
    require_root("give a file to another user")
    code, start, perf_map = jit_code_and_its_perf_map()
    try:
        with open(perf_map, "w") as f:
            f.write(f"{start:x} 100 planted\n")
        assert ProcessSymbols(os.getpid(), SymbolFiles()).frame(start + 8) == "planted"   # root's, as this process
        os.chown(perf_map, 12345, 12345)
        assert ProcessSymbols(os.getpid(), SymbolFiles()).frame(start + 8) == UNKNOWN
    finally:
        os.unlink(perf_map)
        code.close()
