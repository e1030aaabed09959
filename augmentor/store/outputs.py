"""What a command writes, and nothing else.

Every file lands under a temporary name and is renamed into place (``atomic_write``). A folder augmentor
writes as its own (a run directory and its subfolders, a heat-map folder) lists the files written there in
its manifest, before each is written (``claim``): a later ``--force`` removes exactly those (``remove_listed``),
never a file of the user's that happens to share the folder or a name. Commands check every path they will
write (``in_the_way``) before they write or remove anything.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from ..errors import ConfigError, RunDirError

MANIFEST = ".augmentor-files"
_HEADER = "# files augmentor wrote in this folder, one a line: --force removes these and nothing else\n"


def atomic_write(path: Path, write) -> None:
    """``write(file)`` into a new temporary file beside ``path``, fsync, then rename over it: a crash at any
    moment leaves the old file or the new one, never a torn one under the final name."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # a new name: clobbers nothing
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def listed(folder: Path) -> set:
    """The names augmentor wrote in ``folder`` (its manifest); empty where it has none."""
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return set()
    text = manifest.read_text(errors="replace")
    if not text.startswith(_HEADER):  # a file of the user's under our name: trust nothing in it
        raise RunDirError(f"{manifest}: not augmentor's list of files; move it away or choose another folder")
    return {line for line in text.splitlines()[1:] if line and "/" not in line}


def claim(*paths: Path) -> None:
    """List ``paths`` in their folders' manifests before they are written, so that no file of ours is ever
    unlisted (one read and one append per folder)."""
    by_folder: dict = {}
    for path in map(Path, paths):
        by_folder.setdefault(path.parent, []).append(path.name)
    for folder, names in by_folder.items():
        have = listed(folder)
        new = [n for n in dict.fromkeys(names) if n not in have]
        if new:
            manifest = folder / MANIFEST
            header = "" if manifest.exists() else _HEADER
            with open(manifest, "a") as f:
                f.write(header + "".join(n + "\n" for n in new))


def write(path: Path, write_fn, own: bool = False) -> None:
    """``atomic_write``, listed first in the folder's manifest where the folder is augmentor's own (``own``, or it
    has a manifest already); a file the user named in a folder of theirs is written unlisted."""
    path = Path(path)
    if own or (path.parent / MANIFEST).exists():
        claim(path)
    atomic_write(path, write_fn)


def _is_temporary_of(name: str, names: set) -> bool:
    """atomic_write's leftover of one of ``names`` (``.NAME.XXXX.tmp``) after a killed write."""
    m = re.match(r"^\.(.+)\.[^.]+\.tmp$", name)
    return bool(m) and m.group(1) in names


def in_the_way(folder: Path, names: Iterable[str] = (), pattern: Optional[re.Pattern] = None, ours: Optional[set] = None) -> list:
    """Files of ``folder`` a command would write over (at ``names``, or matching ``pattern``) that augmentor did not
    list there (``ours``: the names it owns, default the folder's manifest)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    ours = listed(folder) if ours is None else ours
    names = set(names)
    return sorted(p for p in folder.iterdir() if (p.name in names or (pattern and pattern.match(p.name))) and p.name not in ours)


def remove_listed(folder: Path, ours: Optional[set] = None) -> None:
    """Remove the files augmentor listed in ``folder`` (or ``ours``), their temporaries and the manifest."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    ours = listed(folder) if ours is None else ours
    for path in (folder / name for name in ours):
        if path.is_file() or path.is_symlink():
            path.unlink()
    remove_temporaries(folder, ours)
    (folder / MANIFEST).unlink(missing_ok=True)


def remove_temporaries(folder: Path, names: Iterable[str]) -> None:
    """Delete what a killed atomic_write of one of ``names`` left in ``folder`` (only while no other process
    writes there: a fit holds the run lock)."""
    folder, names = Path(folder), set(names)
    if folder.is_dir():
        for p in folder.iterdir():
            if _is_temporary_of(p.name, names):
                p.unlink(missing_ok=True)


def remove_empty(folder: Path) -> None:
    """``folder`` removed if it holds nothing (a subfolder augmentor made and emptied)."""
    try:
        Path(folder).rmdir()
    except OSError:
        pass


def check_writable(path: Path, flag: str) -> None:
    """Refuse, without creating anything, an output path under a file or in a folder that cannot be written."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path}: cannot write here ({existing} is a file); choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot write here (permission denied in {existing})")


def is_within(path, source) -> bool:
    """Whether ``path`` is the file or folder ``source``, or inside it (symbolic links followed)."""
    path, source = Path(os.path.realpath(path)), Path(os.path.realpath(source))
    return path == source or source in path.parents
