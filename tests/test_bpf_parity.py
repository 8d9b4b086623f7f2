"""The structs in bpf/*.h and the Python decoders that read them must stay in step (no kernel needed)."""

import ctypes
import re
from pathlib import Path

from collectors.bpf_loader import BPF_DIR, inline_local_includes
from collectors.process import FILENAME_LEN, KINDS, ProcEvent

C_TYPES = {"u64": ctypes.c_uint64, "u32": ctypes.c_uint32, "u16": ctypes.c_uint16, "u8": ctypes.c_uint8,
           "char": ctypes.c_char}


def c_struct_fields(header: Path, name: str) -> list[tuple[str, str, int]]:
    """(type, field, array length or 1) of ``struct name`` in a header, with #define'd lengths resolved."""
    text = header.read_text()
    defines = {k: int(v) for k, v in re.findall(r"#define (\w+) (\d+)", text)}
    body = re.search(rf"struct {name} \{{(.*?)\}};", text, re.S).group(1)
    fields = []
    for typ, field, length in re.findall(r"(\w+) (\w+)(?:\[(\w+)\])?;", re.sub(r"/\*.*?\*/", "", body, flags=re.S)):
        fields.append((typ, field, int(defines.get(length, length)) if length else 1))
    return fields


def test_proc_event_matches_process_h():
    fields = c_struct_fields(BPF_DIR / "process.h", "proc_event")
    assert [f for _, f, _ in fields] == [name for name, _ in ProcEvent._fields_]
    for (typ, field, n), (_, ctype) in zip(fields, ProcEvent._fields_):
        expected = C_TYPES[typ] * n if n > 1 else C_TYPES[typ]
        assert ctypes.sizeof(ctype) == ctypes.sizeof(expected), field
    defines = dict(re.findall(r"#define (\w+) (\d+)", (BPF_DIR / "process.h").read_text()))
    assert int(defines["FILENAME_LEN"]) == FILENAME_LEN
    assert {int(defines["EV_EXEC"]): "exec", int(defines["EV_EXIT"]): "exit",
            int(defines["EV_OOM_KILL"]): "oom_kill"} == KINDS


def test_http_methods_and_tcp_directions_match_their_headers():
    from collectors.http import METHODS
    from collectors.tcp import DIRECTIONS
    enum = re.search(r"enum http_method \{(.*?)\}", (BPF_DIR / "http.h").read_text(), re.S).group(1)
    names = [n.strip().split("=")[0].strip() for n in enum.split(",")]
    assert [METHODS[i] for i in range(len(names))] == ["_OTHER"] + [n[2:] for n in names[1:]]
    tcp = dict(re.findall(r"#define DIR_(\w+) (\d+)", (BPF_DIR / "tcp.h").read_text()))
    assert {int(v): k.lower() for k, v in tcp.items()} == DIRECTIONS


def test_histogram_slots_match_the_udf_histogram_convention():
    from udfs import histogram
    slots = int(re.search(r"#define HIST_SLOTS (\d+)", (BPF_DIR / "augur.h").read_text()).group(1))
    assert slots <= 64  # the telemetry schema allows up to 64 buckets
    assert histogram.bucket_bounds(5) == (32.0, 64.0)  # bucket i = [2^i, 2^(i+1)), as in augur_log2_slot


def test_every_program_inlines_its_headers():
    for prog in BPF_DIR.glob("*.bpf.c"):
        text = inline_local_includes(prog)
        assert '#include "' not in text, prog.name
        assert "BPF_ARRAY(active_slot" in text, prog.name  # every program shares the double-buffering helpers


def test_profile_key_matches_profile_h_and_fits_a_hash_key():
    from collectors.profile import KERNEL_FRAMES, USER_FRAMES
    fields = c_struct_fields(BPF_DIR / "profile.h", "profile_key")
    lengths = {field: n for _, field, n in fields}
    assert (lengths["kernel"], lengths["user"]) == (KERNEL_FRAMES, USER_FRAMES)
    assert sum(ctypes.sizeof(C_TYPES[typ]) * n for typ, _, n in fields) <= 512  # a hash map's largest key
