"""Checkpoint folders of a run, and the settings a resumed run must share with its start.

A checkpoint is written into ``step-N.partial`` and renamed to ``step-N`` only once complete,
so a kill mid-write leaves a ``.partial`` folder that is never taken for a checkpoint. Each
checkpoint records the settings its run depends on; ``--resume`` with other settings is refused
with the differing ones named.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from prefloop.errors import RunDirectoryError

CHECKPOINTS = "checkpoints"
SETTINGS_FILE = "settings.json"
METRICS_FILE = "metrics.jsonl"
CACHE_DIR = "cache"
_COMPLETE = re.compile(r"step-\d{7}")
#: What a run writes into its ``out_dir`` besides the final model (removed by ``overwrite``).
RUN_ARTIFACTS = (CHECKPOINTS, METRICS_FILE, CACHE_DIR)


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def complete_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (``.partial`` folders are never among them)."""
    folder = Path(out_dir, CHECKPOINTS)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and _COMPLETE.fullmatch(p.name))


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = complete_checkpoints(out_dir)
    return found[-1] if found else None


def prune(out_dir: Path, keep: int) -> None:
    """Keep the ``keep`` newest complete checkpoints; delete older ones and stale partials."""
    for old in complete_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old)
    for partial in Path(out_dir, CHECKPOINTS).glob("*.partial"):
        shutil.rmtree(partial, ignore_errors=True)


def normalized(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as JSON would return them, so saved and live values compare equal."""
    return json.loads(json.dumps(settings, default=str, sort_keys=True))


def write_settings(checkpoint: Path, settings: dict[str, Any]) -> None:
    (checkpoint / SETTINGS_FILE).write_text(json.dumps(normalized(settings), indent=2) + "\n")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat |= _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def check_settings(checkpoint: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume ``checkpoint`` under settings that differ from the ones it was made with."""
    path = checkpoint / SETTINGS_FILE
    if not path.exists():
        raise RunDirectoryError(f"{checkpoint} has no {SETTINGS_FILE}; it cannot be resumed")
    saved, live = _flatten(json.loads(path.read_text())), _flatten(normalized(settings))
    differing = sorted(k for k in saved.keys() | live.keys() if saved.get(k) != live.get(k))
    if differing:
        shown = "; ".join(f"{k}: {saved.get(k)!r} then, {live.get(k)!r} now" for k in differing[:6])
        more = f" (and {len(differing) - 6} more)" if len(differing) > 6 else ""
        raise RunDirectoryError(
            f"cannot resume {checkpoint}: settings differ from that run's: {shown}{more}. "
            "Resume with the same settings, or start a new run in another --out."
        )


def prepare_fresh_start(out_dir: Path, overwrite: bool, delete: bool = True) -> None:
    """A fresh start never mixes in another run's checkpoints, metrics or caches.

    Every process checks (so all refuse together); only the one with ``delete`` removes them.
    """
    found = [name for name in RUN_ARTIFACTS if (out_dir / name).exists()]
    if found and not overwrite:
        raise RunDirectoryError(
            f"{out_dir} already holds a training run ({', '.join(found)}). Pass --resume to "
            "continue it, --overwrite to delete it and start again, or choose another --out."
        )
    for name in found if delete else ():
        target = out_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
