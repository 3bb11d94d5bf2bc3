"""A top-k ensemble's val Dice against its best member, on the synthetic set and on Kvasir's val part.

Two sources of members, scored the same way (``fgi.search.ensembles.score_ensemble``: every member and the
ensemble on the image alone, paired bootstrap CI of ensemble − best member over val images):

- ``--synthetic``: a real sweep on the built-in synthetic set (local Ray, a temporary MLflow store), then
  ``fgi ensemble --top K`` of it, exactly as a user runs them;
- ``--members DIR ...``: checkpoint folders already trained on one split, such as the protocol's last states
  ``benchmarks/out/protocol_v2/<run>/last`` (chosen on val only: their ranking and the table never read the
  test part).

    python benchmarks/bench_ensemble.py --synthetic --budget cpu --trials 4 --top 3
    python benchmarks/bench_ensemble.py --members benchmarks/out/protocol_v2/c_uniform_ens-seed1{0,1}/last
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def table(names: list[str], score) -> str:
    """Markdown: each member's val Dice, the ensemble's, and the gain over the best member with its CI."""
    lines = ["| model | val Dice |", "|---|---|"]
    lines += [f"| {n}{' (best member)' if i == score.best else ''} | {d:.4f} |"
              for i, (n, d) in enumerate(zip(names, score.member_dice, strict=True))]
    lines.append(f"| ensemble (mean of {len(names)}) | {score.metrics['val_dice']:.4f} |")
    lines.append(f"\nensemble − best member: {score.gain:+.4f} (95 % CI {score.ci_low:+.4f} to {score.ci_high:+.4f}, "
                 f"paired over {score.images} val images)")
    return "\n".join(lines)


def from_members(folders: list[Path]) -> str:
    """Score the ensemble of checkpoint folders."""
    from fgi.checkpoint import load_folder
    from fgi.ensemble import Ensemble
    from fgi.method.engine import TeacherStudentTrainer
    from fgi.search.ensembles import score_ensemble

    loaded = [load_folder(f, TeacherStudentTrainer) for f in folders]
    names = [str(f) for f in folders]
    return table(names, score_ensemble(Ensemble([t for t, _ in loaded], [n for _, n in loaded], names)))


def from_sweep(budget: str, trials: int, top: int, workdir: Path) -> str:
    """Run a synthetic sweep and ``fgi ensemble`` on it as subprocesses; read back the ensemble's record."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, FGI_HOME=str(workdir / "home"))
    env.pop("RAY_ADDRESS", None)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    subprocess.run([sys.executable, "tune.py", "--dataset", "synthetic", "--budget", budget, "--scheduler", "none",
                    "--num-samples", str(trials), "--max-concurrent", "1", "--mlflow-uri", uri, "--experiment",
                    "bench-ensemble", "--name", "bench-ensemble", "--storage", str(workdir / "storage"),
                    "--best-dir", str(workdir / "best")], env=env, cwd=REPO, check=True, capture_output=True)
    out = workdir / "ensemble"
    subprocess.run([str(bin_dir / "fgi"), "ensemble", "--experiment", "bench-ensemble", "--sweep", "bench-ensemble",
                    "--top", str(top), "--out", str(out), "--mlflow-uri", uri, "--no-log"], env=env, cwd=REPO,
                   check=True, capture_output=True)
    from fgi.search.ensembles import EnsembleScore

    info = json.loads((out / "ensemble.json").read_text())
    names = [f"trial {m['trial_id']}" for m in info["members"]]
    return f"{table(names, EnsembleScore.from_record(info))}; {trials} trials at budget {budget}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", action="store_true", help="a synthetic sweep, then fgi ensemble of it")
    source.add_argument("--members", nargs="+", type=Path, help="checkpoint folders to ensemble")
    ap.add_argument("--budget", default="cpu", help="budget of the synthetic sweep")
    ap.add_argument("--trials", type=int, default=4, help="trials of the synthetic sweep")
    ap.add_argument("--top", type=int, default=3, help="members taken from the synthetic sweep")
    args = ap.parse_args()
    if args.members:
        print(from_members(args.members))
        return
    with tempfile.TemporaryDirectory(prefix="fgi-bench-ensemble-") as tmp:
        print(from_sweep(args.budget, args.trials, args.top, Path(tmp)))


if __name__ == "__main__":
    main()
