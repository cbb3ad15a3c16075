"""bench/gpu.py --tiny: the GPU-sizing report's lines, with finite positive rates, on the CPU."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu.py"
NUMBER = r"(\d+(?:\.\d+)?)"


def test_tiny_gpu_bench_reports_rates_headroom_and_workers(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--tiny", "--device", "cpu", "--workers", "1", "--work-dir", str(tmp_path)])
    out = capsys.readouterr().out
    per_core = re.search(rf"per-core decode \(1 process, 1 thread\): +{NUMBER} videos/s", out)
    loader = re.search(rf"loader, 1 workers, to cpu: +{NUMBER} videos/s", out)
    assert per_core and loader, out
    models = re.findall(
        rf"model=(\w+) +{NUMBER} videos/s +headroom +{NUMBER} \(target >= 1.5: (met|NOT met)\)"
        rf" +workers for headroom 1.5: (\d+)",
        out,
    )
    assert [m[0] for m in models] == ["nextvlad_paper", "hrnn_paper", "mod_paper"], out
    rates = [float(per_core[1]), float(loader[1])]
    for _, rate, headroom, verdict, workers in models:
        rates += [float(rate), float(headroom)]
        assert (verdict == "met") == (float(headroom) >= 1.5)
        assert int(workers) >= 1
    assert all(math.isfinite(value) and value > 0 for value in rates)
