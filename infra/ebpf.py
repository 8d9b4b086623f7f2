"""eBPF prerequisites for the bcc collectors, checked and (as root) put in place, with one clear message per gap.

bcc compiles the programs in ``bpf/`` at load time against kernel headers found through
``/lib/modules/$(uname -r)/build``; on hosts whose kernel is newer than the distribution's headers package we link
the installed ``linux-headers-*`` folders there. All Augur programs use tracepoints, whose argument layouts bcc
reads from tracefs at run time, so a header/kernel version gap does not change what they read.
"""

from __future__ import annotations

import glob
import os
import platform
import subprocess
import sys
from pathlib import Path

BCC_DIST_PACKAGES = "/usr/lib/python3/dist-packages"
TRACEFS = Path("/sys/kernel/tracing")
APT_PACKAGES = ("bpfcc-tools", "python3-bpfcc", "linux-headers-amd64")


class EbpfUnavailable(RuntimeError):
    """eBPF collectors cannot run here; the message names the missing piece and the fix."""


def _link_headers() -> None:
    modules = Path("/lib/modules") / platform.release()
    build, source = modules / "build", modules / "source"
    if build.exists():
        return
    arch_dirs = (sorted(glob.glob("/usr/src/linux-headers-*-amd64"))
                 or sorted(glob.glob("/usr/src/linux-headers-*-arm64")))
    common_dirs = sorted(glob.glob("/usr/src/linux-headers-*-common"))
    if not arch_dirs:
        raise EbpfUnavailable(f"kernel headers are missing ({build} does not exist); install them: "
                              f"apt-get install {' '.join(APT_PACKAGES)}")
    modules.mkdir(parents=True, exist_ok=True)
    if build.is_symlink():
        build.unlink()
    build.symlink_to(arch_dirs[-1])
    if common_dirs and not source.exists():
        if source.is_symlink():
            source.unlink()
        source.symlink_to(common_dirs[-1])


def _mount(fstype: str, target: Path, marker: str, what: str) -> None:
    """Mount ``fstype`` at ``target`` unless ``target/marker`` shows it is there already (root), or say how."""
    if (target / marker).exists():
        return
    try:
        target.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", fstype, fstype, str(target)], capture_output=True, text=True)
        error = proc.stderr.strip()
    except OSError as e:
        error = str(e)
    if not (target / marker).exists():
        raise EbpfUnavailable(f"{what} is not mounted at {target} and mounting it failed ({error}); "
                              f"run: mkdir -p {target} && mount -t {fstype} {fstype} {target}")


def import_bcc():
    """The ``bcc`` module from Debian's python3-bpfcc (the PyPI package named bcc is unrelated)."""
    if BCC_DIST_PACKAGES not in sys.path:
        sys.path.append(BCC_DIST_PACKAGES)
    try:
        import bcc  # noqa: F401
    except ImportError as e:
        raise EbpfUnavailable(f"the bcc Python module is missing ({e}); install it: "
                              f"apt-get install {' '.join(APT_PACKAGES)}") from None
    return bcc


def prepare() -> None:
    """Make this host ready for the collectors or raise :class:`EbpfUnavailable` saying exactly what is missing."""
    if os.geteuid() != 0:
        raise EbpfUnavailable("eBPF collectors need root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN): "
                              "run as root, or use the synthetic/replay telemetry instead")
    if not Path("/sys/kernel/btf/vmlinux").exists():
        raise EbpfUnavailable("this kernel exposes no BTF (/sys/kernel/btf/vmlinux): a kernel built with "
                              "CONFIG_DEBUG_INFO_BTF=y is needed")
    _mount("tracefs", TRACEFS, "events", "tracefs")
    _link_headers()
    import_bcc()


def cgroup2_root(mounts_file: Path = Path("/proc/self/mounts")) -> Path:
    """The cgroup v2 mount (``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on hybrid hosts): BPF's
    bpf_get_current_cgroup_id() and bpf_skb_cgroup_id() return ids of this hierarchy."""
    try:
        for line in mounts_file.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return Path(parts[1])
    except OSError:
        pass
    return Path("/sys/fs/cgroup")


CGROUP2_FALLBACK = Path("/sys/fs/cgroup/unified")  # where hybrid (v1 + v2) hosts mount it


def require_cgroup2() -> Path:
    """The cgroup v2 mount (``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on hybrid hosts), which cgroup BPF
    programs attach to; mounted at the hybrid place when there is none (as root), else a clear error."""
    root = cgroup2_root()
    if (root / "cgroup.procs").exists():
        return root
    _mount("cgroup2", CGROUP2_FALLBACK, "cgroup.procs",
           "cgroup v2 (the HTTP collector links its programs to its root)")
    return CGROUP2_FALLBACK


def cgroup_dirs(paths: tuple[str, ...] = ()) -> list[Path]:
    """The cgroup v2 folders that cgroup programs link to: the root when ``paths`` is empty, else each of
    ``paths`` (as ``collect.http-cgroups`` normalises them, below the v2 mount), which must exist."""
    root = require_cgroup2()
    dirs = [root / p.lstrip("/") for p in paths] or [root]
    missing = [str(d) for d in dirs if not (d / "cgroup.procs").exists()]
    if missing:
        raise EbpfUnavailable(f"no cgroup v2 group at {', '.join(missing)}: give paths below {root} of groups that "
                              f"exist (collect.http-cgroups)")
    return dirs


def tracepoint_exists(category: str, event: str) -> bool:
    return (TRACEFS / "events" / category / event / "format").exists()


def require_tracepoints(*names: str) -> None:
    """Fail clearly when a tracepoint a collector needs is missing on this kernel."""
    missing = [n for n in names if not tracepoint_exists(*n.split(":", 1))]
    if missing:
        raise EbpfUnavailable(f"this kernel lacks the tracepoint(s) {', '.join(missing)} that the collector needs")


def unavailable_reason() -> str | None:
    """None when the collectors can run here, else why not (for skips and the demo)."""
    try:
        prepare()
    except EbpfUnavailable as e:
        return str(e)
    return None
