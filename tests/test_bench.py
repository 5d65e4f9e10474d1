"""The benchmark runs the presets' real steps and records their real shapes (timings are not asserted)."""
import numpy as np
from numba import njit

from scratchgen import bench, bench_presets
from scratchgen.bench_steps import STEPS, format_rows, measure_step, run_in_process
from scratchgen.kernels.compile_time import compile_stats


def test_a_step_is_measured_in_this_process_with_its_memory():
    result = measure_step("scratchgen", "vae", threads=1, steps=2, warmup=1, memory_steps=2)
    assert len(result["ms"]) == len(result["cpu_ms"]) == 2 and min(result["ms"]) > 0
    assert result["params"] == 784 * 400 + 400 + 2 * (400 * 20 + 20) + 20 * 400 + 400 + 400 * 784 + 784
    assert result["peak_rss_mb"] > 10 and np.isfinite(result["growth_kb_per_step"])


def test_a_worker_reports_its_own_peak_memory_not_that_of_the_process_that_started_it():
    import subprocess
    import sys
    big = np.ones(60_000_000)                                  # 480 MB touched in this process
    code = "from scratchgen.bench_steps import _peak_rss_mb; print(_peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout.split()[-1])
    assert 10 < child < 400 < big.nbytes / 2**20                # importing scratchgen: ~100 MB


def test_a_step_is_measured_in_a_process_of_its_own():
    result = run_in_process("scratchgen", "vae", threads=1, steps=1, warmup=0)
    assert len(result["ms"]) == 1 and result["params"] > 600_000
    assert result["threaded_share"] is None                   # one thread: no call site is timed


def test_the_table_names_each_step_threads_and_the_time_ratio():
    rows = [{"name": name, "threads": t, "scratchgen": [12.0, 14.0], "torch": [10.0, 10.0],
             "cpu": {"scratchgen": [12.0], "torch": [6.0]}, "params": {"scratchgen": 5, "torch": 5},
             "peak_rss_mb": {"scratchgen": 100.0, "torch": 500.0},
             "growth_kb_per_step": {"scratchgen": 0.0, "torch": 0.5}} for name, *_ in STEPS for t in (1, 2)]
    rows[0]["torch"], rows[0]["params"]["torch"] = None, 6     # a preset whose twin no longer matches
    rows[1]["torch"], rows[1]["differs"] = None, ["codebook_size"]   # same parameters, other options
    text = "\n".join(format_rows(rows))
    assert "13.0 (12.0-14.0)" in text and " 1.30 " in text and " 2.00 " in text
    assert "no PyTorch twin (6 vs 5 parameters)" in text
    assert "no PyTorch twin (preset changed: codebook_size)" in text
    assert "memory growth, KiB per step: PyTorch 0.50, scratchgen 0.00" in text
    assert "thread settings, T threads: " in text and "MKL_NUM_THREADS = T for both" in text   # says which
    rows[-1]["threaded_share"] = 0.25
    assert "ran 25% of its timed parallel kernels' time on 2 threads" in "\n".join(format_rows(rows))


def test_bench_only_steps_prints_a_row_per_step_and_thread_count(capsys, monkeypatch):
    def fake(rounds, threads, steps, torch):
        return [{"name": name, "threads": t, "scratchgen": [12.0], "torch": None, "cpu": {"scratchgen": [1.0]},
                 "params": {"scratchgen": 5}, "peak_rss_mb": {"scratchgen": 100.0},
                 "growth_kb_per_step": {"scratchgen": None}} for name, *_ in STEPS for t in threads]
    monkeypatch.setattr("scratchgen.bench_steps.bench_steps", fake)
    assert bench.main(["--only", "steps", "--threads", "1,2", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert out.count("PyTorch not found") == 2 * len(STEPS) and "load average" in out


def test_the_presets_products_and_conv_layers_are_recorded_from_real_steps(monkeypatch):
    recorded = bench_presets.record(["vae", "dcgan"])
    assert (128, 784, 400, 1, "C", "T") in recorded["matmul"]["vae"]    # the encoder's first layer, x @ Wᵀ
    assert bench_presets.describe((128, 784, 400, 1, "C", "T")) == "128x784 @ 784x400ᵀ"
    # a product computed as its transpose (Cᵀ = BᵀAᵀ) is recorded once, as the caller asked for it
    monkeypatch.setattr("scratchgen.kernels.matmul_numba.dispatch.transpose_pays", lambda a, b: False)
    assert bench_presets.record(["vae"])["matmul"]["vae"] == recorded["matmul"]["vae"]
    kinds = {layer["kind"] for layer in recorded["conv"]["dcgan"]}
    assert kinds == {"conv2d", "conv_transpose2d"} and "vae" not in recorded["conv"]
    times = bench_presets.time_products([(3, 5, 7, 2), (3, 5, 7, 2, "T", "S"), (3, 5, 7, 2, "C1", "C")], threads=1,
                                        repeats=1)
    assert len(times) == 3 and min(times[0] + times[1] + times[2]) > 0
    # a convolution's weights, one matrix for all its images: recorded, described and timed as shared
    conv_products = recorded["matmul"]["dcgan"]
    assert any(p[3] > 1 and p[4] == "C1" for p in conv_products), conv_products
    assert bench_presets.describe((32, 16, 196, 64, "C1", "C")) == "32x16 @ 16x196 x64, a shared"
    assert bench_presets.laid_out(np.ones((4, 3, 2)), "T1").shape == (1, 3, 2)
    # a few-feature convolution's weight gradient: the images' products summed, timed against np.tensordot
    assert any(len(p) == 7 and p[6] for p in conv_products), conv_products
    assert bench_presets.describe((64, 196, 16, 64, "C", "T", True)) == "64x196 @ 196x16ᵀ x64, summed"
    summed = bench_presets.time_products([(3, 5, 7, 2, "C", "T", True)], threads=1, repeats=1, library="scratchgen")
    assert len(summed) == 1 and summed[0] > 0
    alone = bench_presets.time_products([(3, 5, 7, 2)], threads=1, repeats=1, library="scratchgen")
    assert len(alone) == 1 and isinstance(alone[0], float) and alone[0] > 0
    x = np.arange(12.0).reshape(1, 3, 4)
    for layout in "CTS":
        y = bench_presets.laid_out(x, layout)
        assert np.array_equal(y, x) and bench_presets.layout_of(y) == layout
    cpu, wall = bench_presets.time_convs(recorded["conv"]["dcgan"][:1], 1, "scratchgen", repeats=1)
    assert len(cpu) == len(wall) == 1 and min(cpu + wall) > 0


def test_a_conv_layers_forward_and_backward_passes_are_timed_apart_on_request():
    layers = [dict(kind="conv2d", x=(4, 3, 8, 8), w=(5, 3, 3, 3), stride=(1, 1), padding=(1, 1), output_padding=0),
              dict(kind="conv_transpose2d", x=(4, 5, 4, 4), w=(5, 1, 4, 4), stride=(2, 2), padding=(1, 1),
                   output_padding=(0, 0))]
    cpu, wall = bench_presets.time_convs(layers, 1, "scratchgen", repeats=1, parts=True)
    assert len(cpu) == len(wall) == 3 * len(layers) and min(cpu + wall) > 0    # whole, forward, backward


def test_bench_conv_verbose_prints_each_layers_two_passes_with_the_rounds_asked_for(capsys, monkeypatch):
    layer = dict(kind="conv2d", x=(64, 32, 14, 14), w=(64, 32, 4, 4), stride=(2, 2), padding=(1, 1))
    asked = []

    def fake(threads, torch_python, rounds, parts=False):
        asked.append((rounds, parts))
        # (ours, PyTorch's, our wall, PyTorch's wall) for the whole layer, its forward and its backward pass
        by_t = {t: [(s / t, None, s / t, None) for s in (2e-3, 0.5e-3, 1.5e-3)][:3 if parts else 1]
                for t in threads}
        return {"dcgan": [(layer, by_t)]}
    monkeypatch.setattr("scratchgen.bench_presets.bench_conv_layers", fake)
    monkeypatch.setattr("scratchgen.bench.core_speeds", lambda: None)
    assert bench.main(["--only", "conv", "--threads", "1,2", "--no-torch", "--rounds", "3", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert asked == [(3, True)]
    forward = next(line for line in out.splitlines() if "forward alone" in line)
    assert "-/0.5" in forward and "-/0.2" in forward and forward.rstrip().endswith("0.50")
    assert "backward alone" in out
    # one thread only: no column comparing thread counts, and no sentence about it
    assert bench.main(["--only", "conv", "--threads", "1", "--no-torch", "--verbose"]) == 0
    assert "threads gain" not in capsys.readouterr().out


def test_a_conv_rows_threads_gain_shows_pytorchs_own_gain_beside_ours():
    # ours: 2.0 -> 1.0 ms wall on 2 threads (0.50); PyTorch's: 3.0 -> 2.1 ms (0.70)
    times = {1: (2e-3, 3e-3, 2e-3, 3e-3), 2: (1e-3, 2.1e-3, 1e-3, 2.1e-3)}
    cells = bench._conv_cells((1, 2), times)
    assert cells[-1] == "0.50 / 0.70"
    assert cells[0].startswith("3.0/2.0") and cells[1].startswith("2.1/1.0")
    # PyTorch not timed: our gain alone
    assert bench._conv_cells((1, 2), {t: (a, None, c, None) for t, (a, _, c, _) in times.items()})[-1] == "0.50"


def test_compile_stats_count_a_new_compilation_and_not_a_second_call():
    @njit
    def twice(x):
        return 2 * x
    before = compile_stats()
    twice(1.0)
    middle = compile_stats()
    twice(2.0)
    assert middle["signatures"] == before["signatures"] + 1 and middle["seconds"] > before["seconds"]
    assert compile_stats() == middle


def test_bench_only_epoch_prints_seconds_per_epoch_and_their_ratio(capsys, monkeypatch):
    def fake(rounds, threads, python=None):
        ours = [{"train_s": [4.0], "wall_s": 9.0}, {"train_s": [6.0], "wall_s": 11.0}]
        theirs = [{"train_s": [4.0], "test_s": [0.5], "wall_s": 6.0}] * 2
        return [{"threads": t, "scratchgen": ours, "torch": theirs if t == 1 else None} for t in threads]
    monkeypatch.setattr("scratchgen.bench_epochs.bench_epochs", fake)
    monkeypatch.setenv("SCRATCHGEN_DATA", "/nowhere")
    assert bench.main(["--only", "epoch", "--threads", "1,2", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "4.00 / 5.00" in out and "  1.25  " in out and "6.0 / 10.0" in out     # medians, ratio 5/4
    assert "- / 5.00" in out                                                      # no PyTorch on 2 threads
    monkeypatch.delenv("SCRATCHGEN_DATA")
    assert bench.main(["--only", "epoch", "--no-torch"]) == 0
    assert "skipped, they read MNIST" in capsys.readouterr().out


def test_core_speeds_name_every_core_relative_to_the_fastest_and_give_the_thread_its_cores_back():
    import os
    import pytest
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        assert bench.core_speeds() is None
        pytest.skip("one core, or no way to pin a thread here: nothing to compare")
    before = os.sched_getaffinity(0)
    speeds = bench.core_speeds(seconds=0.005)
    assert os.sched_getaffinity(0) == before              # pinned to each core in turn, then restored
    assert set(speeds) == before and max(speeds.values()) == 1.0 and min(speeds.values()) > 0
    assert bench.core_speeds_line(speeds).startswith("core speeds now")


def test_the_core_speeds_line_says_when_the_cores_run_unequally():
    assert "unequally" in bench.core_speeds_line({0: 1.0, 1: 0.6})
    assert "unequally" not in bench.core_speeds_line({0: 1.0, 1: 0.95})
    assert "not measured" in bench.core_speeds_line(None)


def test_the_autograd_overhead_row_gives_medians_with_the_collector_on_and_off_and_leaves_it_on():
    import gc
    rows = bench.autograd_overhead(n_ops=200, repeats=3)
    assert [on for on, _, _ in rows] == [True, False]
    assert all(build > 0 and back > 0 for _, build, back in rows) and gc.isenabled()
