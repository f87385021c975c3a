"""Which sweep made the images in an output directory.

Images are not in the history, so ``fbcache report --images DIR`` must trust the directory. The
sweep records its fingerprint next to its images; the report embeds them only when that fingerprint
is the reported run's, so a directory left over from another workload is never shown as this run's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fbcache.history.fingerprint import fingerprint_differences
from fbcache.history.storage import replace_file

RECORD_NAME = "fbcache-run.json"


def write_record(output_dir: Path, fingerprint: Mapping[str, Any]) -> Path:
    payload = json.dumps({"fingerprint": dict(fingerprint)}, indent=2, sort_keys=True) + "\n"
    return replace_file(output_dir / RECORD_NAME, payload.encode())


def mismatch(images_dir: Path, fingerprint: Mapping[str, str]) -> tuple[bool, str]:
    """(refuse, note): refuse when the directory records another fingerprint; a note when it records none."""
    path = images_dir / RECORD_NAME
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
    except FileNotFoundError:
        return False, (f"the images in {images_dir} do not record which sweep made them ({RECORD_NAME} is absent); "
                       "they were not checked against this run")
    except (OSError, ValueError, AttributeError) as exc:
        return True, f"images in {images_dir} not used: {RECORD_NAME} is unreadable ({exc})"
    if not isinstance(recorded, Mapping):
        return True, f"images in {images_dir} not used: {RECORD_NAME} holds no fingerprint"
    differences = fingerprint_differences(dict(fingerprint), dict(recorded))
    if differences:
        return True, (f"images in {images_dir} not used: they come from another sweep ("
                      + "; ".join(d.replace("(saved)", "(images)").replace("(now)", "(run)") for d in differences) + ")")
    return False, ""
