"""The training-overhead benchmark: its FLOP count, and a quick run end to end (no timings
are asserted)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from benchmarks import malloc, report
from benchmarks.train_overhead import CONFIGS, VARIANTS, main, merge_results
from charlm.device import cpu_has_bf16_lstm


def test_the_flop_count_is_the_standard_lstm_count():
    a = CONFIGS["a"]  # V=65, E=64, 2 x 256
    forward = 8 * 256 * (64 + 256) + 8 * 256 * (256 + 256) + 2 * 256 * 65
    assert a.forward_flops_per_token() == forward
    assert a.train_flops_per_token() == 3 * forward


def test_the_gpu_configuration_is_zarembas_medium_lstm():
    d = CONFIGS["d"]
    assert (d.vocab, d.embed, d.hidden, d.layers, d.batch, d.seq) == (10_000, 650, 650, 2, 64, 35)
    assert d.steps % d.warmup == 0  # timing windows start and end on a metrics record


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    args = ["--quick", "--device", "cuda", "--out", str(tmp_path / "overhead.json")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit
    assert "no CUDA GPU" in result.output and "Traceback" not in result.output


def test_quick_run_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "overhead.json"
    result = CliRunner().invoke(main, ["--quick", "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "charlm tok/s" in result.output and "ratio" in result.output
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["threads"] == 1 and len(row["charlm_runs"]) == len(row["bare_runs"]) == 2
    assert row["device"] == data["device"] == "cpu"
    assert row["charlm_tokens_per_s"] > 0 and row["bare_tokens_per_s"] > 0
    assert row["ratio"] == row["charlm_tokens_per_s"] / row["bare_tokens_per_s"]
    low, high = sorted(row["pair_ratios"])
    assert row["pair_ratio_median"] == pytest.approx((low + high) / 2)
    assert 0 < row["charlm_efficiency"] and data["matmul_gflops"]["1"] > 0
    assert data["machine"]["cpu"] and data["machine"]["torch"]
    # The bare loop again, alone in a fresh process, as a user's own script runs it.
    assert len(row["bare_own_process_runs"]) == 2 and row["bare_own_process_tokens_per_s"] > 0
    alone = row["charlm_tokens_per_s"] / row["bare_own_process_tokens_per_s"]
    assert row["ratio_to_own_process"] == alone and "ratio to bare alone" in result.output


@pytest.mark.skipif(not cpu_has_bf16_lstm(), reason="this CPU has no bfloat16 LSTM kernel")
def test_bf16_runs_charlm_and_the_bare_loop_in_bf16_and_the_bare_loop_in_fp32_too(tmp_path):
    out = tmp_path / "overhead.json"
    args = ["--quick", "--threads", "1", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    result = CliRunner().invoke(main, [*args, "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert "quick at bf16: charlm" in result.output and "the bare fp32 loop" in result.output
    fp32, bf16 = json.loads(out.read_text())["rows"]  # the bf16 row does not replace fp32's
    assert fp32["precision"] == "fp32" and "ratio_to_fp32" not in fp32
    assert "ratio_to_own_process" not in bf16  # the fresh process runs the fp32 loop only
    assert bf16["precision"] == "bf16" and bf16["bare_fp32_tokens_per_s"] > 0
    assert bf16["ratio_to_fp32"] == bf16["charlm_tokens_per_s"] / bf16["bare_fp32_tokens_per_s"]


def test_quick_variants_are_timed_step_by_step_against_the_bare_loop(tmp_path):
    out = tmp_path / "overhead.json"
    chosen = ["output layer and loss in cached slices", "Adam fused=True", "charlm's cross-entropy",
              "fused Adam, clipping in its step"]  # fmt: skip
    args = ["--quick", "--threads", "1", "--repeats", "1", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, *(f"--variant={name}" for name in chosen)])
    assert result.exit_code == 0, result.output
    variants = json.loads(out.read_text())["variants"]
    assert [v["variant"] for v in variants] == [v.name for v in VARIANTS if v.name in chosen]
    assert all(v["speedup"] > 0 and v["cpu_speedup"] > 0 and v["steps"] == 10 for v in variants)


def test_a_configuration_measured_again_replaces_only_its_own_rows(tmp_path):
    out = tmp_path / "overhead.json"

    def results(rows, variants, rate):
        return {"quick": False, "matmul_gflops": {"1": rate}, "matmul_rates": {"1": {"x": rate}},
                "rows": rows, "variants": variants}  # fmt: skip

    first = results(
        [{"config": "a", "threads": 1, "ratio": 0.9}, {"config": "c", "threads": 1, "ratio": 0.8}],
        [{"config": "c", "threads": 1, "variant": "fused", "speedup": 1.1}],
        100.0,
    )
    out.write_text(json.dumps(first))
    again = results([{"config": "c", "threads": 1, "ratio": 0.99}], [], 120.0)
    merged = merge_results(out, again)
    assert {(r["config"], r["ratio"]) for r in merged["rows"]} == {("a", 0.9), ("c", 0.99)}
    assert merged["variants"] == first["variants"] and merged["matmul_gflops"] == {"1": 120.0}
    assert merge_results(tmp_path / "absent.json", again) == again
    on_gpu = results([{"config": "c", "threads": 1, "ratio": 0.97, "device": "cuda"}], [], 9e4)
    out.write_text(json.dumps(merged))
    both = merge_results(out, on_gpu)["rows"]  # a GPU row does not replace the CPU's
    assert {(r["config"], r.get("device", "cpu")) for r in both} == {
        ("a", "cpu"), ("c", "cpu"), ("c", "cuda")}  # fmt: skip


def test_malloc_runs_every_setting_in_fresh_processes(tmp_path):
    out = tmp_path / "malloc.json"
    result = CliRunner().invoke(malloc.main, ["--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["rows"]
    assert {setting: len(runs) for setting, runs in row["runs"].items()} == dict.fromkeys(
        malloc.SETTINGS, 1
    )
    rates = row["tokens_per_s"]
    assert row["speedup"]["glibc defaults"] == rates["tuned"] / rates["glibc defaults"] > 0
    assert set(row["speedup"]) == {"glibc defaults", "heap up to 32 MiB"}
    assert all(peak > 0 for peak in row["peak_rss_mib"].values())
    assert "tuned / glibc defaults" in render_malloc(out)


def render_malloc(path) -> str:
    return "\n".join(report.malloc_section([json.loads(path.read_text())]))
