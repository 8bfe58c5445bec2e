"""What the plots show: pareto.png (metric label, zoom, final architecture, colour bar) and curves.png
(integer epoch ticks, markers for few points, the title's plural), checked on the matplotlib objects."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from goldnas_fast.search.pareto import _pareto_figure, plot_pareto
from goldnas_fast.text import plural
from goldnas_fast.train.plots import _curves_figure, plot_curves

pytestmark = pytest.mark.usefixtures("single_thread")

NB201_YLABEL = "NAS-Bench-201 CIFAR-10 test accuracy (200 epochs, %)"


# ------------------------------------------------------------------------------------------ plural
def test_plural() -> None:
    assert plural(1, "epoch") == "1 epoch"
    assert plural(2, "epoch") == "2 epochs"
    assert plural(0, "epoch") == "0 epochs"
    assert plural(15625, "architecture") == "15,625 architectures"
    assert plural(3, "index", "indices") == "3 indices" and plural(1, "index", "indices") == "1 index"
    for bad in (1.0, True, "1"):
        with pytest.raises(ValueError, match="count"):
            plural(bad, "epoch")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ pareto.png
def _text(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def _collection(ax, label: str):
    found = [c for c in ax.collections if c.get_label() == label]
    assert found, f"no {label!r} in {[c.get_label() for c in ax.collections]}"
    return found[0]


@pytest.fixture(scope="module")
def benchmark_like() -> tuple[np.ndarray, np.ndarray]:
    """A benchmark-shaped cloud: most architectures between 80 and 94%, a tenth diverged at 10%."""
    rng = np.random.default_rng(0)
    acc = np.concatenate([rng.uniform(80, 94.4, 900), np.full(100, 10.0)])
    return acc, rng.uniform(8, 220, acc.size)


def test_pareto_zooms_on_the_band_and_counts_what_is_left_out(benchmark_like) -> None:
    rng = np.random.default_rng(1)
    pts = np.stack([rng.uniform(86, 94, 12), rng.uniform(10, 200, 12)], axis=1)
    pts[0] = (10.0, 8.0)  # a diverged recorded architecture
    fig = _pareto_figure(pts, None, "t", benchmark_like, "FLOPs (M)", NB201_YLABEL, final=11)
    main = fig.axes[0]
    assert main.get_ylabel() == NB201_YLABEL
    low, high = main.get_ylim()
    assert 60 < low < 85 and 94.4 < high < 96  # the 85-95 band fills most of the axes; 10% is outside
    side = fig.axes[1]
    assert side.get_ylim()[0] < 10  # the full range is still shown, beside
    note = _text(fig)
    assert f"Below {low:.1f}%" in note
    assert "1 of 12 recorded" in note and "100 of 1,000 benchmark" in note


def test_pareto_marks_the_final_architecture(benchmark_like) -> None:
    pts = [(92.0, 50.0), (93.0, 60.0), (91.5, 40.0)]
    fig = _pareto_figure(pts, None, "", benchmark_like, "FLOPs (M)", NB201_YLABEL, final=1)
    star = _collection(fig.axes[0], "final architecture")
    assert star.get_offsets().tolist() == [[60.0, 93.0]]
    assert "final: 93.00%" in _text(fig)
    with pytest.raises(ValueError, match="final"):
        _pareto_figure(pts, None, "", None, "x", "y", final=3)


@pytest.mark.parametrize("n", [2, 3, 5, 40])
def test_pareto_colour_bar_has_integer_ticks(n: int) -> None:
    pts = np.stack([np.linspace(80, 90, n), np.linspace(10, 100, n)], axis=1)
    fig = _pareto_figure(pts, None, "", None, "FLOPs (M)", "accuracy (%)", final=n - 1)
    bar_axes = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bar_axes) == 1
    fig.canvas.draw()
    ticks = [t for t in bar_axes[0].get_yticks() if 1 <= t <= n]
    assert ticks and all(float(t).is_integer() for t in ticks)
    if n <= 5:
        assert ticks == list(range(1, n + 1))


def test_pareto_without_outliers_shows_everything(tmp_path: Path) -> None:
    pts = [(16.0, 300.0), (22.0, 250.0), (25.0, 220.0), (31.0, 180.0)]
    fig = _pareto_figure(pts, None, "", None, "FLOPs (M)", "proxy (%)", final=3)
    assert [ax.get_label() for ax in fig.axes].count("<colorbar>") == 1 and len(fig.axes) == 2  # no side panel
    low, high = fig.axes[0].get_ylim()
    assert low < 16 and high > 31
    out = plot_pareto(pts, None, tmp_path / "p.png", ylabel="proxy (%)", final=3)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_search_plots_the_benchmark_metric_and_its_final_architecture(tmp_path: Path, monkeypatch) -> None:
    """The NAS-Bench-201 search names the metric on the y-axis and stars the architecture it returned."""
    import goldnas_fast.search.pareto as pareto
    from goldnas_fast.cli import main

    calls = []
    real = pareto._pareto_figure  # spied on here, whichever way the caller imported plot_pareto

    def spy(points, front, title, background, xlabel, ylabel, final):
        calls.append((np.asarray(points), ylabel, final))
        return real(points, front, title, background, xlabel, ylabel, final)

    monkeypatch.setattr(pareto, "_pareto_figure", spy)
    out = tmp_path / "run"
    argv = ["search", "--algo", "darts", "--C", "4", "--N", "1", "--max-train", "32", "--batch-size", "16",
            "--epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    (points, ylabel, final_index), = calls
    assert ylabel == NB201_YLABEL
    final = json.loads((out / "result.json").read_text())["final"]
    assert tuple(points[final_index]) == (final["cifar10_test_acc_200"], final["flops_m"])


def test_search_stars_the_final_architecture_where_it_was_first_recorded(tmp_path: Path, monkeypatch) -> None:
    """A final architecture recorded earlier (e.g. DARTS' argmax coming back) is one point, and that point
    gets the star, not the last point."""
    import goldnas_fast.search.pareto as pareto
    from goldnas_fast.runs import RunDir
    from goldnas_fast.search.results import finish_nb201_result

    calls = []
    real = pareto._pareto_figure

    def spy(points, front, title, background, xlabel, ylabel, final):
        calls.append((np.asarray(points), final))
        return real(points, front, title, background, xlabel, ylabel, final)

    monkeypatch.setattr(pareto, "_pareto_figure", spy)
    a = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    b = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    cfg = {"algo": "darts"}
    result = finish_nb201_result(RunDir(tmp_path / "run", "search", cfg), cfg, a,
                                 [{"epoch": 1, "arch": a}, {"epoch": 2, "arch": b}], 1.0)
    (points, final_index), = calls
    assert len(points) == 2 and final_index == 0
    assert tuple(points[final_index]) == (result["final"]["cifar10_test_acc_200"], result["final"]["flops_m"])


# ------------------------------------------------------------------------------------------ curves.png
def _history(n: int) -> list[dict]:
    return [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 10.0 * e,
             "eval": {"x-valid": {"loss": 2.1 / e, "acc": 9.0 * e}}} for e in range(1, n + 1)]


def test_curves_of_one_epoch_have_one_integer_tick_and_markers() -> None:
    fig = _curves_figure(_history(1), "a (1 epoch)")
    for ax in fig.axes:
        assert list(ax.get_xticks()) == [1]
        low, high = ax.get_xlim()
        assert low < 1 < high
        assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines())


def test_curves_of_many_epochs_have_integer_ticks_and_no_markers() -> None:
    fig = _curves_figure(_history(200), "")
    fig.canvas.draw()
    for ax in fig.axes:
        assert all(float(t).is_integer() for t in ax.get_xticks())
        assert all(line.get_marker() in (None, "None", "") for line in ax.get_lines())
    with pytest.raises(ValueError, match="empty"):
        _curves_figure([], "")


def test_train_titles_curves_with_the_right_plural(tmp_path: Path, monkeypatch) -> None:
    import goldnas_fast.train.plots as plots
    from goldnas_fast.cli import main

    titles = []
    monkeypatch.setattr(plots, "plot_curves", lambda history, path, title="": titles.append(title))
    argv = ["train", "--space", "nb201", "--arch", "1835", "--protocol", "nb201-12", "--batch-size", "32",
            "--max-train", "32", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    (title,) = titles
    assert "(1 epoch)" in title and "epochs" not in title
    plot_curves(_history(1), tmp_path / "c.png", title=title)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
