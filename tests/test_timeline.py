"""benchmarks/timeline.py: its chunks, its slow-chunk test and its summary."""

import pytest

from convgrad import bench
from tests.helpers import benchmark_script


def test_slow_chunks_compare_with_the_fastest_chunk():
    timeline = benchmark_script("timeline")
    assert timeline.slow_chunks([2.0, 2.5, 2.6, 4.0], factor=1.3) == [False, False, True, True]
    assert timeline.slow_chunks([1.0, 1.0], factor=1.3) == [False, False]


def test_summary_of_hand_written_runs():
    timeline = benchmark_script("timeline")
    # ours is slow in the third chunk of the first run and the first chunk of the second; native
    # is slow with it only in the first run, so its ratios there are 2.0 (first run, median 1.0)
    # and 1.0 (second run, median 3.0).
    runs = [{"ours": [1.0, 1.0, 2.0], "native": [1.0, 1.0, 2.0]},
            {"ours": [2.0, 1.0, 1.0, 1.0], "native": [3.0, 3.0, 3.0, 3.0]}]
    rows = timeline.summary(runs, factor=1.5)
    assert rows["ours"]["slow_share"] == pytest.approx(2 / 7)
    assert rows["native"]["slow_share"] == pytest.approx(1 / 7)
    assert rows["ours"]["during_ours_slow"] == pytest.approx(2.0)
    assert rows["native"]["during_ours_slow"] == pytest.approx(1.5)  # median of 2.0 and 1.0
    assert rows["ours"]["median_s"] == pytest.approx(1.0)
    assert rows["native"]["median_s"] == pytest.approx(3.0)
    steady = timeline.summary([{"ours": [1.0, 1.1], "native": [2.0, 2.0]}])
    assert steady["native"]["during_ours_slow"] is None


def test_chunk_medians_run_every_step_in_every_chunk():
    timeline = benchmark_script("timeline")
    calls = {"ours": 0, "native": 0}

    def counter(name):
        def step():
            calls[name] += 1
        return step

    series = timeline.chunk_medians({name: counter(name) for name in calls}, seconds=0.0, chunk=4)
    # One warm-up call each, then at least one chunk of four rounds.
    assert len(series["ours"]) == len(series["native"]) >= 1
    assert calls["ours"] == calls["native"] == 1 + 4 * len(series["ours"])
    assert all(value >= 0 for value in series["ours"] + series["native"])


def test_markdown_lists_every_process_and_the_summary():
    timeline = benchmark_script("timeline")
    runs = [{"ours": [0.020, 0.030], "native": [0.090, 0.091]}]
    text = timeline.markdown(runs, "video 3-D 3x3x3", "float32", 3, bench.environment())
    assert "Process 1:" in text
    assert "    ours     20.0  30.0" in text
    assert "| ours | 25.0 | 50% | 1.20 |" in text
    assert "| native | 90.5 | 0% | 1.01 |" in text


@pytest.mark.parametrize("argv", [["no such shape"], ["resnet"], ["video", "--chunk", "0"],
                                  ["video", "--seconds", "0"]])
def test_bad_arguments_exit_with_code_2(monkeypatch, argv):
    timeline = benchmark_script("timeline")
    monkeypatch.setattr("sys.argv", ["timeline.py", *argv])
    with pytest.raises(SystemExit) as raised:
        timeline.main()
    assert raised.value.code == 2
