"""Output folders that are whole or absent: written beside their place, then put there in one rename."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_folder(out: Path):
    """Yields an empty temporary folder beside `out` to write into. If the block finishes, the folder
    replaces `out` whole; if it raises, it is removed and `out` stays as it was."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
