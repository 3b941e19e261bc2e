"""The benchmark scripts run and report what they promise (no speed is asserted here)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_step_benchmark_reports_rates_flops_memory_and_method_overhead(tmp_path):
  out = tmp_path / "bench.json"
  subprocess.run([sys.executable, "benchmarks/train_step.py", "--configs", "tiny,taco_tiny",
                  "--batches", "16", "--frames", "2", "--steps", "1", "--out", str(out)],
                 cwd=ROOT, check=True, capture_output=True, timeout=600)
  report = json.loads(out.read_text())
  assert report["machine"]["matmul_peak_GFLOPs"] > 0
  rows = {(r["config"], r["frames"]): r for r in report["results"]}
  assert sorted(rows) == [("taco_tiny", "2x24^2"), ("tiny", "2x24^2")]
  for row in rows.values():
    assert row["batch"] == 16
    for key in ("steps_per_s", "clips_per_s", "step_GFLOP", "achieved_GFLOPs",
                "fraction_of_matmul_peak", "memory_GiB"):
      assert row[key] > 0, key
    assert abs(row["clips_per_s"] - row["batch"] * row["steps_per_s"]) < 1e-6 * row["clips_per_s"]
  tiny, taco = rows["tiny", "2x24^2"], rows["taco_tiny", "2x24^2"]
  # TACo's step does strictly more work (L2, cascade, 2 x K' x B fused pairs) than L1's alone.
  assert taco["step_GFLOP"] > 2 * tiny["step_GFLOP"]
  assert tiny["overhead"] == 0
  assert taco["overhead"] == taco["step_s"] / tiny["step_s"] - 1


def test_gpu_benchmark_appends_each_row_as_measured_and_keeps_to_its_budget(tmp_path):
  """On CPU, with the tiny configs: a machine line, then one line per row (a failing row says
  why and the next one runs; the end-to-end row converts real clips and trains on them), then,
  with no time left, rows marked skipped."""
  out = tmp_path / "gpu.jsonl"
  run = lambda plan, budget: subprocess.run(
      [sys.executable, "benchmarks/gpu.py", "--plan", plan, "--steps", "1", "--dtype", "float32",
       "--attention", "xla", "--noscan", "--budget_s", str(budget), "--out", str(out),
       "--e2e_clips", "8", "--e2e_steps", "4", "--loader_batches", "2"],
      cwd=ROOT, check=True, capture_output=True, timeout=900)
  run("tiny:16,tiny:7,e2e:tiny:16,taco_tiny:16@full", 100_000)
  machine, tiny, bad, e2e, taco = map(json.loads, out.read_text().splitlines())
  assert "error" not in e2e, e2e
  assert machine["machine"]["peak_TFLOPs"] > 0 and machine["machine"]["jax"]
  for row, remat, utilisation in ((tiny, "none", "mfu"), (taco, "full", "hfu")):
    assert row["batch"] == 16 and row["attention"] == "xla" and row["dtype"] == "float32"
    assert row["clips_per_s"] > 0 and row["compile_s"] > 0 and row["memory_GiB"] > 0
    # Relative: the report stores the peak in TFLOP/s, the benchmark divided by it in FLOP/s.
    assert row["remat"] == remat and row[utilisation] == pytest.approx(
        row["achieved_GFLOPs"] * 1e9 / (machine["machine"]["peak_TFLOPs"] * 1e12), rel=1e-12)
  assert taco["overhead_vs_tiny"] == taco["step_s"] / tiny["step_s"] - 1
  assert "not divisible by the 8 devices" in bad["error"]  # and the plan went on
  assert e2e["config"] == "main.py tiny" and e2e["clips"] == 8
  for key in ("loader_threads_clips_per_s", "loader_workers_clips_per_s", "steps_per_s"):
    assert e2e[key] > 0, key
  assert e2e["of_step_rate"] == e2e["steps_per_s"] * tiny["step_s"]
  run("tiny:16", 0)
  assert json.loads(out.read_text().splitlines()[-1])["skipped"].endswith("left of --budget_s")


def test_input_pipeline_benchmark_reports_every_rate(tmp_path):
  out = tmp_path / "bench.json"
  subprocess.run([sys.executable, "benchmarks/input_pipeline.py", "--clips", "3", "--batches", "2",
                  "--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=600)
  report = json.loads(out.read_text())
  assert [r["source"] for r in report["results"]] == ["bigbuckbunny", "bikes"]
  for row in report["results"]:
    for key in ("converter_clips_per_core_s", "shards_to_batch_clips_per_core_s",
                "on_the_fly_clips_per_core_s", "local_driver_clips_s",
                "beam_direct_driver_clips_s", "tfds_to_batch_clips_per_core_s"):
      assert row[key] > 0, key
    assert row["shards_over_on_the_fly"] == (row["shards_to_batch_clips_per_core_s"]
                                             / row["on_the_fly_clips_per_core_s"])


def test_retrieval_eval_benchmark_reports_speed_and_memory(tmp_path):
  out = tmp_path / "bench.json"
  subprocess.run([sys.executable, "benchmarks/retrieval_eval.py", "--n", "3000", "--block", "512",
                  "--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=600)
  (row,) = json.loads(out.read_text())["results"]
  assert row["n"] == 3000 and row["seconds"] > 0 and row["peak_rss_GiB"] > 0
  assert 0 < row["fraction_of_matmul_peak"] and row["t2v_R@1"] > 0.1  # captions near their clips


def test_contrastive_memory_benchmark_reports_both_forms(tmp_path):
  out = tmp_path / "bench.json"
  subprocess.run([sys.executable, "benchmarks/contrastive_memory.py", "--per_device", "64",
                  "--dim", "8", "--devices", "1,4", "--out", str(out)], cwd=ROOT, check=True,
                 capture_output=True, timeout=600)
  report = json.loads(out.read_text())
  assert [(r["devices"], r["batch"]) for r in report["results"]] == [(1, 64), (4, 256)]
  one, four = report["results"]
  # At a fixed batch per device the global form's blocks grow with the devices; the chunked
  # form's do not.
  assert four["global_MB"] > 2 * one["global_MB"]
  assert four["chunked_MB"] < 1.5 * one["chunked_MB"]
