"""Golden files: the full parse of a real payload, reviewed once and checked on every run.

Regenerate after an intended change with `CLARION_UPDATE_GOLDEN=1 make test`, then read the diff.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from clarion.model import Notice

GOLDEN = Path(__file__).parent / "golden"


def notice_record(n: Notice) -> dict[str, Any]:
    data = n.to_json_dict()
    data["original_sha256"] = hashlib.sha256(n.original).hexdigest() if n.original else None
    return data


def check_golden(name: str, value: Any) -> None:
    path = GOLDEN / f"{name}.json"
    rendered = json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("CLARION_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert path.exists(), f"no golden file {path}; create it with CLARION_UPDATE_GOLDEN=1"
    assert json.loads(path.read_text()) == json.loads(rendered), f"differs from {path}"
