"""How far two runs' neurons and results are apart (e.g. bfloat16 against float32, or two IG rules).

    neuronjax bench agreement RUN_A RUN_B [--json OUT]

For every method both runs saved: the overlap of the good sets and of the bad sets (shared
neurons over the set size, and Jaccard), and the rank agreement of the scores on the union of
the two sets (Spearman). For every (method, mode) both runs evaluated: accuracy in each run and
the difference. The sets are read with `neuronjax.report.load_run_sets`, the evaluations with
`neuronjax.evaluation.Evaluation`.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from neuronjax.evaluation.results import write_json


def set_overlap(a: np.ndarray, b: np.ndarray) -> dict:
    """Shared neurons of two bool masks: count, share of the larger set, Jaccard."""
    shared = int((a & b).sum())
    union = int((a | b).sum())
    size = max(int(a.sum()), int(b.sum()), 1)
    return {"shared": shared, "size_a": int(a.sum()), "size_b": int(b.sum()), "share": shared / size,
            "jaccard": shared / union if union else 1.0}  # fmt: skip


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1]) if len(x) > 1 else 1.0


def compare(run_a: str, run_b: str) -> dict:
    from neuronjax.report import load_evaluation, load_run_sets

    sets_a, sets_b = load_run_sets(run_a), load_run_sets(run_b)
    out = {"run_a": run_a, "run_b": run_b, "sets": {}, "accuracy": []}
    for name in [n for n in sets_a if n in sets_b]:
        a, b = sets_a[name], sets_b[name]
        union = (a.good | a.bad | b.good | b.bad).reshape(-1)
        out["sets"][name] = {"good": set_overlap(a.good, b.good), "bad": set_overlap(a.bad, b.bad),
                             "spearman_on_union": spearman(a.scores.reshape(-1)[union], b.scores.reshape(-1)[union])}  # fmt: skip
    ev_a, ev_b = load_evaluation(run_a), load_evaluation(run_b)
    for row in ev_a.sets():
        other = ev_b.find(row.method, row.mode, row.k)
        if other is not None:
            out["accuracy"].append({"method": row.method, "mode": row.mode, "a": row.accuracy.value,
                                    "b": other.accuracy.value, "difference": other.accuracy.value - row.accuracy.value,
                                    "a_interval": row.accuracy.to_json(), "b_interval": other.accuracy.to_json()})  # fmt: skip
    base_a, base_b = ev_a.baseline.accuracy.value, ev_b.baseline.accuracy.value
    out["accuracy"].insert(0, {"method": "none", "mode": "none", "a": base_a, "b": base_b, "difference": base_b - base_a})
    return out


def describe(out: dict) -> str:
    a, b = os.path.basename(out["run_a"].rstrip("/")), os.path.basename(out["run_b"].rstrip("/"))
    lines = [f"sets of {a} against {b}:", "| method | good shared | good Jaccard | bad shared | bad Jaccard | "
             "Spearman of scores on the union |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, s in out["sets"].items():
        g, d = s["good"], s["bad"]
        lines.append(f"| {name} | {g['shared']} / {max(g['size_a'], g['size_b'])} | {g['jaccard']:.3f} | "
                     f"{d['shared']} / {max(d['size_a'], d['size_b'])} | {d['jaccard']:.3f} | {s['spearman_on_union']:.3f} |")  # fmt: skip
    lines += ["", f"held-out accuracy, {a} and {b}:", f"| method | mode | {a} | {b} | difference |", "|---|---|---:|---:|---:|"]
    for r in out["accuracy"]:
        lines.append(f"| {r['method']} | {r['mode']} | {r['a']:.3f} | {r['b']:.3f} | {r['difference']:+.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="neuronjax bench agreement", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("run_a", help="run directory (identified and evaluated)")
    ap.add_argument("run_b", help="run directory to compare with")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    out = compare(args.run_a, args.run_b)
    print(describe(out))
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
