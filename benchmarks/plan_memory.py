"""OpenVINO plan memory: one dynamic-shape plan (before) against a static plan per input shape (now).

    .venv/bin/python benchmarks/plan_memory.py [--engine openvino-bf16] [--shapes 2048x1024,2048x1408,2048x2560]

The full U-Net ResNet34 (random weights, ``benchmarks/inference.py``) is exported once; then each case runs
in a fresh process, so one case's buffers never count in another's: it compiles the graph the way the runner
does (softmax, argmax, top-2 gap and entropy appended) and runs one input of the shape twice. Reported: the
process RSS growth from before compiling to after the second run (the plan's buffers plus its weights), its
peak, and the second run's time. Cases: "dynamic" (one plan for every shape, all outputs: the runner before),
"static" (reshaped to the input first, all outputs: what a scene prediction uses), "static stats" (no
probability output: what live regions use).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

CHILD = r"""
import json, resource, sys, time
import numpy as np, psutil
from flair_viz.predict import openvino_engine as oe
path, engine, case, h, w = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
core = oe._core()
model = core.read_model(path)
if case != "dynamic":
    model.reshape([1, 5, h, w])
model = oe._with_outputs(model)
if case == "static stats":
    kept = [r for r in model.get_results() if r.output(0).get_names() & {"argmax", "gap", "entropy"}]
    model = oe.ov().Model(kept, model.get_parameters(), "stats")
before = psutil.Process().memory_info().rss
config = {"INFERENCE_PRECISION_HINT": oe.PRECISION[engine], "INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY"}
req = core.compile_model(model, "CPU", config).create_infer_request()
x = np.random.default_rng(0).standard_normal((1, 5, h, w), dtype=np.float32)
req.infer({0: x})
t = time.perf_counter()
req.infer({0: x})
secs = time.perf_counter() - t
print(json.dumps({"grow_mb": (psutil.Process().memory_info().rss - before) / 2**20, "s": secs,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="openvino-bf16", choices=("openvino", "openvino-bf16"))
    ap.add_argument("--shapes", default="2048x1024,2048x1408,2048x2560")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="flair-viz-plans-") as tmp:
        os.environ["FLAIR_VIZ_MODELS"] = str(Path(tmp) / "models")
        os.environ["FLAIR_VIZ_CACHE"] = str(Path(tmp) / "cache")
        os.environ["FLAIR_VIZ_INT8_BUILD"] = "0"
        (Path(tmp) / "models").mkdir()
        from inference import write_model

        from flair_viz.predict import models

        path = models.load_model(write_model(Path(tmp) / "models"), "cpu", "openvino").runner.path
        print(f"full U-Net ResNet34, {args.engine}, one input (N=1), RSS growth over compile + 2 runs, fresh process each")
        for shape in args.shapes.split(","):
            h, w = (int(v) for v in shape.split("x"))
            row = []
            for case in ("dynamic", "static", "static stats"):
                out = subprocess.run([sys.executable, "-c", CHILD, str(path), args.engine, case, str(h), str(w)],
                                     capture_output=True, text=True, cwd=REPO, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                row.append(f"{case} +{r['grow_mb']:.0f} MB ({r['grow_mb'] * 2**20 / (h * w):.0f} B/px), "
                           f"peak {r['peak_mb']:.0f} MB, {r['s']:.2f} s")
            print(f"{h}x{w} ({h * w / 1e6:.2f} Mpx): " + " | ".join(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
