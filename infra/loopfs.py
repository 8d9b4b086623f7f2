"""A filesystem of known size to fill: a fresh ext4 image, loop-mounted (root). The fault drill fills one; the
collector and forecast tests check their figures against one."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def loop_mounted_ext4(image: Path, mnt: Path, size_mb: int, *mkfs_args: str) -> Iterator[Path]:
    """A fresh ext4 image of ``size_mb`` MiB at ``image``, mounted at ``mnt`` until the block ends."""
    if not shutil.which("mkfs.ext4"):
        raise RuntimeError("mkfs.ext4 is missing (Debian package e2fsprogs)")
    mnt.mkdir(exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", *mkfs_args, str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
