"""User-space symbols for the profile collector, read from the ELF files that processes map, in the collector's
own process (no bcc: its symbol caches can close a file descriptor that is not theirs, see the README).

A process's address is resolved through its ``/proc/PID/maps``: the executable mapping that holds it, the file
offset there, and the ELF load segment that maps that offset to the address its symbols are given at. A file is
opened through ``/proc/PID/map_files`` (the very file mapped, also when it was deleted or lives in another mount
namespace), else through ``/proc/PID/root``. Its function symbols come from ``.symtab`` and ``.dynsym``, and from
the separate debug file named by its build id under ``/usr/lib/debug/.build-id`` when it has no ``.symtab``.
Addresses in anonymous executable memory (a JIT's) are looked up in the process's ``/tmp/perf-PID.map``, where
JITs that support it list their functions. C++ names are demangled with libstdc++'s ``__cxa_demangle`` when it is
there.

A file's symbols are read once and shared by every process that maps it (one libc for the whole host), for at
most ``MAX_FILES`` files, the least recently used dropped first (a process's mappings hold on to the files they
have used for as long as the process's cache is kept). What is kept per file is its symbols' start and end
addresses and its string tables; a name is decoded when an address resolves to it.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import mmap
import os
import stat
import struct
from array import array
from collections import OrderedDict
from pathlib import Path

FRAME_CHARS = 256  # the schema's bound on a frame
UNKNOWN = "[unknown]"
MAX_FILES = 256
MAX_JIT_SYMBOLS = 1_000_000  # functions kept per process from a JIT's perf map
PERF_MAP_READ_BYTES = 16 << 20  # read of a perf map at a time (a JIT's map grows without end)
MAX_TABLE_SYMBOLS = 2_000_000  # a larger symbol table (libLLVM's has about 45,000 entries) is not read
DEBUG_DIR = Path("usr/lib/debug/.build-id")

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
PT_LOAD, SHT_SYMTAB, SHT_NOTE, SHT_DYNSYM = 1, 2, 7, 11
STT_FUNC, STT_GNU_IFUNC = 2, 10
STB_GLOBAL, STB_WEAK = 1, 2
NT_GNU_BUILD_ID = 3


def _headers(data) -> tuple[list[tuple[int, int, int]], list[tuple]]:
    """The load segments ``(file offset, size in the file, address)`` and the section headers of an ELF file."""
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (_, _, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _) = _EHDR.unpack_from(data)
    segments = []
    for i in range(phnum):
        p_type, _, offset, vaddr, _, filesz, _, _ = _PHDR.unpack_from(data, phoff + i * phentsize)
        if p_type == PT_LOAD:
            segments.append((offset, filesz, vaddr))
    sections = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)] if shoff else []
    return segments, sections


def _build_id(data, sections) -> str | None:
    for s in sections:
        if s[1] != SHT_NOTE:
            continue
        note, pos = data[s[4]:s[4] + s[5]], 0
        while pos + 12 <= len(note):
            namesz, descsz, ntype = struct.unpack_from("<III", note, pos)
            desc = pos + 12 + ((namesz + 3) & ~3)
            if ntype == NT_GNU_BUILD_ID and bytes(note[pos + 12:pos + 12 + namesz]).rstrip(b"\0") == b"GNU":
                return bytes(note[desc:desc + descsz]).hex()
            pos = desc + ((descsz + 3) & ~3)
    return None


def _rank(strtab: bytes, offset: int, binding: int) -> tuple[bool, int, int]:
    """Among aliases at one address the name kept: one without a leading underscore (``getpid``, a weak alias of
    the global ``__getpid``), then global before weak before local, then the shortest."""
    end = strtab.find(b"\0", offset)
    length = (end if end >= 0 else len(strtab)) - offset
    return (strtab[offset:offset + 1] == b"_", {STB_GLOBAL: 0, STB_WEAK: 1}.get(binding, 2), length)


class ElfSymbols:
    """One ELF file's function symbols, sorted by address, and its load segments."""

    def __init__(self, data, debug_root: Path = Path("/")):
        self.segments, sections = _headers(data)
        with contextlib.ExitStack() as stack:
            sources = [(data, sections, [s for s in sections if s[1] in (SHT_SYMTAB, SHT_DYNSYM)])]
            build_id = None if any(s[1] == SHT_SYMTAB for s in sections) else _build_id(data, sections)
            if build_id:
                try:
                    debug = stack.enter_context(_mapped(debug_root / DEBUG_DIR / build_id[:2]
                                                        / f"{build_id[2:]}.debug"))
                    debug_sections = _headers(debug)[1]
                    sources.append((debug, debug_sections, [s for s in debug_sections if s[1] == SHT_SYMTAB]))
                except (OSError, ValueError, struct.error):
                    pass
            self._read_symbols(sources)

    def _read_symbols(self, sources) -> None:
        self._strtabs: list[bytes] = []
        found: dict[int, tuple[int, tuple, int, int]] = {}  # address -> (size, rank, string table, name offset)
        for blob, secs, tables in sources:
            for _, _, _, _, offset, size, link, _, _, entsize in tables:
                if entsize != _SYM.size or link >= len(secs) or size // entsize > MAX_TABLE_SYMBOLS:
                    continue
                strtab = bytes(blob[secs[link][4]:secs[link][4] + secs[link][5]])
                self._strtabs.append(strtab)
                which = len(self._strtabs) - 1
                table = blob[offset:offset + size]
                for st_name, st_info, _, st_shndx, value, sym_size in _SYM.iter_unpack(
                        table[:len(table) - len(table) % entsize]):   # whole entries, also of a table cut short
                    if (st_info & 0xF) not in (STT_FUNC, STT_GNU_IFUNC) or st_shndx == 0 or value == 0:
                        continue
                    rank = _rank(strtab, st_name, st_info >> 4)
                    old = found.get(value)
                    if old is None or rank < old[1]:
                        found[value] = (max(sym_size, old[0] if old else 0), rank, which, st_name)
        starts = sorted(found)
        self.starts = array("Q", starts)
        self.ends = array("Q", (a + max(found[a][0], 1) for a in starts))
        self._names = array("Q", ((found[a][2] << 32) | found[a][3] for a in starts))

    def address(self, file_offset: int) -> int | None:
        """The address that the byte at ``file_offset`` is loaded at, as the symbols give addresses."""
        for offset, size, vaddr in self.segments:
            if offset <= file_offset < offset + size:
                return file_offset - offset + vaddr
        return None

    def name(self, address: int) -> str | None:
        i = bisect.bisect_right(self.starts, address) - 1
        if i < 0 or address >= self.ends[i]:
            return None
        ref = self._names[i]
        strtab, offset = self._strtabs[ref >> 32], ref & 0xFFFFFFFF
        end = strtab.find(b"\0", offset)
        return strtab[offset:end if end >= 0 else len(strtab)].decode("utf-8", "replace")


def open_regular(path: str | os.PathLike, follow: bool = True) -> int:
    """A descriptor of ``path`` if it is a regular file. Any process names the files read here (its mappings, its
    perf map), so a FIFO must not block the collector (the open does not wait, and only a regular file is kept),
    and with ``follow=False`` a symbolic link is refused, not followed into the collector's own file system."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{path} is not a regular file")
    return fd


@contextlib.contextmanager
def _mapped(path: str | os.PathLike | int):
    """The file's bytes (a path, or a descriptor of a regular file, which is closed at the end), mapped (not read:
    a debug file can be gigabytes), as a memoryview while in the block."""
    fd = path if isinstance(path, int) else open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise ValueError("an empty file")
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
            view = memoryview(m)
            try:
                yield view
            finally:
                view.release()
    finally:
        os.close(fd)


def read_elf(path: str | os.PathLike | int, debug_root: Path = Path("/")) -> ElfSymbols:
    with _mapped(path) as data:
        try:
            return ElfSymbols(data, debug_root)
        except struct.error as e:   # a header that points past the end of the file
            raise ValueError(f"a truncated ELF file: {e}") from None


class _Demangler:
    """libstdc++'s ``__cxa_demangle``, if the library is there; names that are not mangled C++ pass unchanged."""

    def __init__(self):
        self._fn = self._free = None
        try:
            lib = ctypes.CDLL("libstdc++.so.6")   # (find_library would start ldconfig)
            self._fn = getattr(lib, "__cxa_demangle")  # not lib.__cxa_demangle: a class mangles that name
            self._fn.restype = ctypes.c_void_p
            self._fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
            self._free = ctypes.CDLL(None).free
            self._free.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError):
            self._fn = None

    def __call__(self, name: str) -> str:
        if self._fn is None or not name.startswith("_Z"):
            return name
        status = ctypes.c_int(0)
        out = self._fn(name.encode(), None, None, ctypes.byref(status))
        if not out:
            return name
        try:
            return ctypes.string_at(out).decode("utf-8", "replace") if status.value == 0 else name
        finally:
            self._free(out)


_NOT_READ = object()


class _Mapping:
    __slots__ = ("start", "end", "offset", "path", "symbols")

    def __init__(self, start: int, end: int, offset: int, path: str):
        self.start, self.end, self.offset, self.path = start, end, offset, path
        self.symbols = _NOT_READ   # its file's ElfSymbols (None: not an ELF file we can read), once looked up


def executable_mappings(maps_text: str) -> list[_Mapping]:
    """The executable mappings of a ``/proc/PID/maps`` text, by start address."""
    out = []
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or "x" not in parts[1]:
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        out.append(_Mapping(start, end, int(parts[2], 16), parts[5].strip() if len(parts) > 5 else ""))
    out.sort(key=lambda m: m.start)
    return out


class _PerfMap:
    """A JIT's ``/tmp/perf-PID.map``, read on from where the last read stopped."""

    def __init__(self, path: Path, owner: int):
        self.path, self.owner = path, owner   # owner: the process's user, who alone may have written its map
        self._read_to = 0
        self._functions: dict[int, tuple[int, str]] = {}   # start -> (end, name)
        self._starts: list[int] = []

    def name(self, addr: int) -> str | None:
        self._read_more()
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            end, name = self._functions[self._starts[i]]
            if addr < end:
                return name[:FRAME_CHARS]
        return None

    def _read_more(self) -> None:
        try:
            fd = open_regular(self.path, follow=False)
        except (OSError, ValueError):
            return
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if st.st_size <= self._read_to or st.st_uid not in (0, self.owner):   # another user's file: not its map
                return
            f.seek(self._read_to)
            data = f.read(PERF_MAP_READ_BYTES)
        whole = data.rfind(b"\n") + 1   # a line still being written is read the next time
        if whole == 0 and len(data) == PERF_MAP_READ_BYTES:
            whole = len(data)   # a line longer than a whole read: skipped
        self._read_to += whole
        for line in data[:whole].decode("utf-8", "replace").splitlines():
            parts = line.split(None, 2)
            if len(parts) < 3 or len(self._functions) >= MAX_JIT_SYMBOLS:
                continue
            try:
                start, size = int(parts[0], 16), int(parts[1], 16)
            except ValueError:
                continue
            self._functions[start] = (start + size, parts[2])
        self._starts = sorted(self._functions)


class ProcessSymbols:
    """One process's executable mappings (read once, when created) and its names for addresses in them."""

    def __init__(self, pid: int, files: "SymbolFiles", proc: Path = Path("/proc")):
        self.pid, self.files, self.proc = pid, files, proc
        try:
            self.mappings = executable_mappings((proc / str(pid) / "maps").read_text())
        except OSError:
            self.mappings = []
        self._starts = [m.start for m in self.mappings]
        self._perf_map: _PerfMap | None = None

    def _mapping(self, addr: int) -> _Mapping | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        return self.mappings[i] if i >= 0 and addr < self.mappings[i].end else None

    def maps(self, addr: int) -> bool:
        """Whether ``addr`` lies in one of the executable mappings read."""
        return self._mapping(addr) is not None

    def frame(self, addr: int) -> str:
        """The function at ``addr``, else ``[module]`` when only its file is known, else ``[unknown]``."""
        m = self._mapping(addr)
        if m is None:
            return UNKNOWN
        if not m.path or m.path.startswith(("[anon", "//anon", "/dev/zero")):   # anonymous: a JIT's, if any
            return self._jit_name(addr) or UNKNOWN
        if m.path.startswith("["):   # [vdso], [vsyscall]
            return m.path[:FRAME_CHARS]
        if m.symbols is _NOT_READ:
            m.symbols = self.files.get(self.proc / str(self.pid) / "map_files" / f"{m.start:x}-{m.end:x}",
                                       self.proc / str(self.pid) / "root" / m.path.lstrip("/"),
                                       self.proc / str(self.pid) / "root")
        symbols = m.symbols
        if symbols is not None:
            address = symbols.address(addr - m.start + m.offset)
            name = symbols.name(address) if address is not None else None
            if name:
                return self.files.demangle(name)[:FRAME_CHARS]
        else:   # not an ELF file: a JIT may have mapped code from a memfd
            name = self._jit_name(addr)
            if name:
                return name
        return f"[{os.path.basename(m.path.removesuffix(' (deleted)'))}]"[:FRAME_CHARS]

    def _jit_name(self, addr: int) -> str | None:
        """From ``/tmp/perf-PID.map`` (``START SIZE NAME``, hex, a function a line, appended to as the JIT compiles;
        a later line for the same start wins). What was added since the last look is read, up to
        ``MAX_JIT_SYMBOLS`` functions."""
        if self._perf_map is None:
            path = self.proc / str(self.pid) / "root" / "tmp" / f"perf-{self._namespace_pid()}.map"
            try:
                owner = os.stat(self.proc / str(self.pid)).st_uid
            except OSError:
                return None
            self._perf_map = _PerfMap(path, owner)
        return self._perf_map.name(addr)

    def _namespace_pid(self) -> int:
        """The process's pid in its own pid namespace (the number a JIT in a container names its map file by)."""
        try:
            for line in (self.proc / str(self.pid) / "status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
        except (OSError, ValueError):
            pass
        return self.pid


class SymbolFiles:
    """The ELF files' symbols, shared by all processes: one :class:`ElfSymbols` per file (by device and inode),
    at most ``max_files``, the least recently used dropped first. A file that cannot be read is remembered as
    such (its frames are ``[module]``) until it is dropped in the same way."""

    def __init__(self, max_files: int = MAX_FILES):
        self.max_files = max_files
        self._files: OrderedDict[tuple[int, int, int], ElfSymbols | None] = OrderedDict()
        self.demangle = _Demangler()
        self.reads = 0   # files read so far (their symbol tables), for tests and the curious

    def get(self, *candidates: Path) -> ElfSymbols | None:
        """The symbols of the first candidate path that can be opened (the last one is the root for debug files)."""
        *paths, debug_root = candidates
        for path in paths:
            try:
                fd = open_regular(path)
            except (OSError, ValueError):
                continue
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino, st.st_mtime_ns)
            if key in self._files:
                os.close(fd)
                self._files.move_to_end(key)
                return self._files[key]
            try:
                self.reads += 1
                symbols = read_elf(fd, debug_root)   # closes fd
            except (OSError, ValueError, IndexError, OverflowError):   # any process's file: a broken one too
                symbols = None
            self._files[key] = symbols
            while len(self._files) > self.max_files:
                self._files.popitem(last=False)
            return symbols
        return None

    def __len__(self) -> int:
        return len(self._files)
