import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from kws_okd.evaluate.compare import (MethodRuns, compare_table, difference, mean_std, plot_comparison,
                                      render_markdown, welch_p)
from kws_okd.train.config import RECIPES, load_recipe
from kws_okd.train.run import train
from tests.test_train import overrides

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("compare_methods", ROOT / "tools" / "compare_methods.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- statistics -------------------------------------------------------------------------

def test_mean_std_is_population_std():
    m, s = mean_std([0.5, 0.6, 0.7])
    assert m == pytest.approx(0.6) and s == pytest.approx(math.sqrt(0.02 / 3))
    assert mean_std([]) is None and mean_std([None]) is None


def test_welch_p_matches_hand_computation():
    # b has no variance, so t = 0.2 / (0.1 / sqrt 3) = 2 sqrt 3 with 2 degrees of freedom;
    # Student's t CDF at 2 dof is 1/2 + t / (2 sqrt(2 + t^2)).
    t = 2 * math.sqrt(3)
    p_hand = 2 * (1 - (0.5 + t / (2 * math.sqrt(2 + t * t))))
    assert welch_p([0.5, 0.6, 0.7], [0.4, 0.4, 0.4]) == pytest.approx(p_hand, rel=1e-6)
    assert welch_p([0.5], [0.4, 0.3]) is None                 # one seed: undefined
    assert welch_p([0.4, 0.4], [0.4, 0.4]) is None            # no variance at all


def test_difference_beyond_spread_only_when_intervals_do_not_overlap():
    d = difference([0.5, 0.6, 0.7], [0.4, 0.4, 0.4])
    assert d["delta"] == pytest.approx(0.2) and d["beyond_spread"]
    assert d["spread"] == pytest.approx(math.sqrt(0.02 / 3))
    near = difference([0.50, 0.70], [0.55, 0.65])           # same mean, wide spread
    assert near["delta"] == pytest.approx(0.0) and not near["beyond_spread"]
    assert difference([], [0.1]) is None
    one = difference([0.9], [0.4, 0.4])                     # one seed: no spread to exceed
    assert one["delta"] == pytest.approx(0.5) and one["beyond_spread"] is None


def runs_fixture():
    return {
        "erm": MethodRuns("erm", [0, 1, 2], {"id_acc": [0.8, 0.8, 0.8], "ood_acc": [0.4, 0.5, 0.6]},
                          [50.0, 50.0, 50.0], ["best validation accuracy"] * 3),
        "kd": MethodRuns("kd", [0, 1, 2], {"id_acc": [0.7, 0.7, 0.7], "ood_acc": [0.5, 0.5, 0.5]},
                         [100.0, 100.0, 100.0], ["best validation accuracy"] * 3),
        "okd": MethodRuns("okd", [0, 1], {"id_acc": [0.6, 0.6], "ood_acc": [0.7, 0.8]},
                          [200.0, 160.0], ["best validation accuracy"] * 2),
    }


def test_compare_table_costs_and_differences(tmp_path):
    table = compare_table(runs_fixture(), reference="kd")
    rows = table["methods"]
    assert rows["erm"]["cost_vs_reference"] == pytest.approx(0.5)
    assert rows["okd"]["cost_vs_reference"] == pytest.approx(1.8)
    assert rows["kd"]["vs_reference"] == {}
    assert rows["erm"]["vs_reference"]["id_acc"]["beyond_spread"]          # 0.8 vs 0.7, no spread
    assert not rows["erm"]["vs_reference"]["ood_acc"]["beyond_spread"]     # 0.5 +- 0.08 vs 0.5
    assert rows["okd"]["vs_reference"]["ood_acc"]["delta"] == pytest.approx(0.25)
    assert rows["okd"]["metrics"]["suite_acc"] is None
    text = render_markdown(table, "T", labels={"okd": "OKD"})
    assert "| OKD | 2 | 60.0 ± 0.0 | 75.0 ± 5.0 | 180 | 1.80× |" in text
    assert "| train s | cost vs kd |" in text
    assert "shifted suite" not in text                     # no suite scores: no column
    assert "| erm | +10.0 **beyond spread** | +0.0, p=1.00 |" in text
    assert "| OKD | -10.0 **beyond spread** | +25.0, p=0.13 **beyond spread** |" in text
    solo = render_markdown(compare_table({**runs_fixture(), "hard": MethodRuns(
        "hard", [0], {"id_acc": [0.9], "ood_acc": [0.9]}, [300.0], ["x"])}), "T")
    assert "| hard | +20.0 (one seed) | +40.0 (one seed) |" in solo
    plot_comparison(table, tmp_path / "c.png", teacher={"id_acc": 0.9})
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


# -- the method group and the compare recipe ------------------------------------------------

EXPECTED = {"erm": ("erm", "none"), "kd": ("kd", "none"), "okd": ("okd", "none"),
            "okd_real": ("okd", "none"), "okd_rnc": ("okd", "none"),
            "wakd": ("wakd", "wakd"), "wakd_noavg": ("wakd", "none"), "okd_swad": ("okd", "swad"),
            "okd_sma": ("okd", "sma"), "hard": ("hard", "none"), "hard_okd": ("hard_okd", "none"),
            "ctkd": ("ctkd", "none"), "bdkd": ("bdkd", "none")}
RUN_TAG = {"okd_real": "+real", "okd_rnc": "+rnc"}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_each_method_picks_its_groups_in_both_recipes(method):
    distill, averaging = EXPECTED[method]
    student = load_recipe("student", [f"+method={method}", "seed=1"])
    compare = load_recipe("compare", [f"method={method}", "seed=1", "epochs=7"])
    for cfg in (student, compare):
        assert (cfg.distill.name, cfg.averaging.name, cfg.method_name) == (distill, averaging, method)
    assert compare.exp_dir.endswith(f"compare/synth_default_task12/e7/{method}/seed1")
    stepped = load_recipe("compare", [f"method={method}", "seed=1", "steps=300", "budget=s300"])
    assert stepped.steps == 300 and stepped.exp_dir.endswith(f"compare/synth_default_task12/s300/{method}/seed1")
    assert student.exp_dir.endswith(f"-{distill}{'' if averaging == 'none' else '+' + averaging}"
                                    f"{RUN_TAG.get(method, '')}+context0.5/seed1")


def test_compare_sweep_is_twelve_methods_by_three_seeds():
    sweep = OmegaConf.load(RECIPES / "kws" / "compare.yaml").hydra.sweeper.params
    methods = str(sweep.method).split(",")
    assert sorted(methods) == sorted(set(EXPECTED) - {"okd_real"}) and str(sweep.seed) == "0,1,2"
    tool = load_tool()
    assert tool.default_methods() == methods
    assert set(methods) <= set(tool.known_methods())


def test_okd_rnc_keeps_its_run_folder():
    cfg = load_recipe("student", ["+method=okd_rnc"])
    assert cfg.augment.name == "policy" and cfg.exp_dir.endswith("bcresnet2-okd+rnc+context0.5/seed0")


# -- the tool, end to end on a tiny corpus -------------------------------------------------

def test_tool_refuses_unknown_methods_and_a_missing_teacher(tmp_path, capsys):
    tool = load_tool()
    with pytest.raises(SystemExit):
        tool.main(["--methods", "kd,nope"])
    assert "unknown methods ['nope']" in capsys.readouterr().err
    rc = tool.main(["--methods", "kd", "--collect-only", f"results_dir={tmp_path}"])
    assert rc == 2 and "teacher missing" in capsys.readouterr().err


def test_tool_trains_in_parallel_resumes_and_tabulates(tiny_corpus, tmp_path):
    base = [o for o in overrides(tiny_corpus, tmp_path) if not o.startswith("epochs=")]
    train(load_recipe("teacher", base + ["epochs=1"]))
    tool = load_tool()
    # A lock left by a dead process does not block the run.
    stale = tool.recipe("kd", 1, 1, base)
    Path(stale.exp_dir).mkdir(parents=True)
    (Path(stale.exp_dir) / ".lock").write_text("999999999")
    rc = tool.main(["--methods", "erm,kd", "--seeds", "0,1", "--epochs", "1", "--jobs", "2",
                    "--suite", "none", *base])
    assert rc == 0
    out = Path(stale.exp_dir).parents[1]
    table = json.loads((out / "compare.json").read_text())
    assert set(table["methods"]) == {"erm", "kd"}
    assert table["methods"]["kd"]["seeds"] == [0, 1]
    assert table["methods"]["erm"]["vs_reference"]["id_acc"]["n"] == [2, 2]
    assert not (Path(stale.exp_dir) / ".lock").exists()
    assert (out / "compare.png").stat().st_size > 1000
    assert "| ERM | 2 |" in (out / "compare.md").read_text()
    # Collecting again reuses each run's cached evaluation instead of recomputing it.
    cached = Path(stale.exp_dir) / "eval" / "report.json"
    mtime = cached.stat().st_mtime
    assert tool.main(["--methods", "erm,kd", "--seeds", "0,1", "--epochs", "1", "--collect-only",
                      "--suite", "none", *base]) == 0
    assert cached.stat().st_mtime == mtime


def test_run_lock_is_exclusive_while_its_process_lives(tmp_path):
    from kws_okd.train.sweep import take_lock
    run = tmp_path / "run"
    assert take_lock(run)
    assert (run / ".lock").read_text() == str(os.getpid())
    assert not take_lock(run)                               # held by us, alive
    (run / ".lock").write_text("999999999")                 # a process that is gone
    assert take_lock(run)


def test_condition_table_means_over_seeds():
    from kws_okd.evaluate.compare import render_conditions
    runs = {"kd": MethodRuns("kd", [0, 1], {"suite:clean": [0.9, 0.7], "suite:gsm": [0.5, 0.5]})}
    text = render_conditions(runs, ["clean", "gsm", "babble"], {"kd": "KD"})
    assert text.splitlines()[0] == "| method | clean | gsm | babble |"
    assert text.splitlines()[2] == "| KD | 80.0 ± 10.0 | 50.0 ± 0.0 | – |"
