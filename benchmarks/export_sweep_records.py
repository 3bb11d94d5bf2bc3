"""Write the trials of a local sweep folder as protocol records, so a later sweep can warm-start from them
after the sweep's storage is gone (a session's machine, a scratch disk)::

    python benchmarks/export_sweep_records.py /work/stage/ray/kvasir-stageA benchmarks/results/stage_a_kvasir
    python tune.py ... --warm-start benchmarks/results/protocol_v2 benchmarks/results/stage_a_kvasir

One JSON per trial that reported (``<sweep>-<trial>.json``: arm, seed, full config, every report's step,
validation metrics, losses and lr), written atomically; a trial still running is written up to its last report.
Data paths stay as the sweep had them (a warm start ignores them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fgi.config import ConfigError
from fgi.files import atomic_write_text
from fgi.search.warm import sweep_records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", type=Path, help="the sweep folder (<storage>/<name>, with fgi_sweep.json)")
    ap.add_argument("out", type=Path, help="folder of the records")
    args = ap.parse_args(argv)
    try:
        records = sweep_records(args.sweep)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for rec in records:
        atomic_write_text(args.out / f"{rec['arm']}.json", json.dumps(rec, indent=1) + "\n")
        last = rec["curve"][-1]
        print(f"{rec['arm']}: {len(rec['curve'])} reports, last step {last['step']}, val_dice {last.get('val_dice', float('nan')):.4f}")
    print(f"wrote {len(records)} records to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
