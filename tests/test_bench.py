"""The benchmark's training-step section runs the presets' real steps (timings are not asserted)."""
from scratchgen import bench
from scratchgen.bench_steps import STEPS, bench_steps


def test_bench_steps_run_each_preset_without_torch():
    rows = bench_steps(repeats=1, torch=None, warmup=1, per_block=1)
    assert [r[0] for r in rows] == [s[0] for s in STEPS]
    assert all(ours > 0 and theirs is None for _, ours, theirs in rows)


def test_bench_only_steps_prints_a_row_per_preset(capsys, monkeypatch):
    monkeypatch.setattr("scratchgen.bench_steps.bench_steps",
                        lambda repeats, torch: [(name, 12.0, None) for name, *_ in STEPS])
    assert bench.main(["--only", "steps", "--repeats", "1", "--no-torch"]) == 0
    out = capsys.readouterr().out
    for name, *_ in STEPS:
        assert f"train step: {name}" in out
    assert "install PyTorch" in out
