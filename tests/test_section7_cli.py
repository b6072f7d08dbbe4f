"""The command lines of the paper's Section 7 extensions, on real MNIST with
tiny nets and short runs: they check that each tool runs end to end and
writes what it says, not the quality of the results (REPRODUCTION.md)."""

import datetime
import json
import pathlib
import re

import numpy as np
import pytest

from conftest import run_module

TINY = ["--set=g_hidden=32", "--set=d_hidden=16", "--set=d_pieces=2",
        "--set=latent_dim=8", "--batch_size=20", "--epochs=1",
        "--steps_per_epoch=20", "--set=monitor_samples=500", "--verbose=0"]


def run(module, args, mnist_dirs, timeout=400):
  proc = run_module(module, args, mnist_dirs, timeout)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
  return proc.stdout


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, mnist_dirs):
  workdir = tmp_path_factory.mktemp("plain")
  run("adversarial.train", [f"--workdir={workdir}", *TINY], mnist_dirs)
  return workdir


def test_infer_fits_an_encoder_and_writes_its_figure(plain_run, mnist_dirs):
  out = run("adversarial.infer",
            [f"--workdir={plain_run}", "--steps=50", "--num_test=100",
             "--num_candidates=500", "--pixel_weight=1"], mnist_dirs)
  assert "test reconstruction MSE" in out
  result = json.loads((plain_run / "inference" / "inference.json").read_text())
  assert result["num_images"] == 100 and result["num_candidates"] == 500
  assert 0 < result["encoder"] < 1 and 0 < result["best_of_random"] < 1
  assert (plain_run / "inference" / "reconstructions.png").exists()
  assert (plain_run / "inference" / "encoder.weights.h5").exists()


def test_semisup_prints_the_error_table(plain_run, mnist_dirs):
  out = run("adversarial.semisup", [f"--workdir={plain_run}", "--sizes=100",
                                    "--draws=1"], mnist_dirs)
  assert "| raw pixels |" in out and "| untrained D |" in out
  result = json.loads((plain_run / "semi_supervised.json").read_text())
  assert len(result["errors"]) == 3
  for rows in result["errors"].values():
    assert 0.0 < rows["100"][0] < 0.9   # better than chance on 10 classes
  # A size the labels cannot give is named once the labels are read.
  proc = run_module("adversarial.semisup", [f"--workdir={plain_run}",
                                            "--sizes=100,105"], mnist_dirs)
  assert proc.returncode == 1
  assert ("error: --sizes: size=105 is not accepted: expected a positive "
          "multiple of the 10 classes") in proc.stderr


def test_conditional_run_is_scored_by_requested_class(tmp_path, mnist_dirs):
  workdir = tmp_path / "cond"
  run("adversarial.train", [f"--workdir={workdir}", "--conditional", *TINY],
      mnist_dirs)
  assert json.loads((workdir / "config.json").read_text())["conditional"]
  out = run("adversarial.evaluate", [f"--workdir={workdir}",
                                     "--num_samples=1000", "--num_test=1000"],
            mnist_dirs)
  assert ("drawn for a block of each class, recognised as the requested "
          "class") in out
  result = json.loads((workdir / "evaluation.json").read_text())
  assert result["class_shares"] == "uniform"
  assert len(result["conditional"]["per_class"]) == 10
  assert 0.0 <= result["conditional"]["accuracy"] <= 1.0
  # The grid of scored samples has a row per class: 10 of each block.
  from adversarial import images, train_lib
  model = train_lib.restore(str(workdir), "best")[0]
  picked = np.arange(100) * 10
  np.testing.assert_array_equal(model.default_labels(1000)[picked],
                                np.repeat(np.arange(10), 10))
  np.testing.assert_array_equal(
      images.read_png(str(workdir / "evaluation.png")),
      images.grid(model.generate(1000, seed=0)[picked], rows=10))
  # Scored as a model of p(x): labels in the training split's class shares.
  out = run("adversarial.evaluate", [f"--workdir={workdir}",
                                     "--num_samples=1000", "--num_test=1000",
                                     "--class_shares=train", "--draws=2"],
            mnist_dirs)
  assert "drawn for the training set's class shares, recognised" in out
  result = json.loads((workdir / "evaluation.json").read_text())
  assert result["class_shares"] == "train"
  means = result["draws"]["means"]
  assert means[0] == result["mean"] and means[1] != means[0]
  assert (f"over 2 draws of 1000 samples (seeds 0-1): mean "
          f"{result['draws']['mean']:.1f}, standard deviation ") in out
  from adversarial import data, quality
  config = train_lib.restore(str(workdir), "best")[1]
  shares = quality.class_shares(
      data.load_array(config, config.train_split).labels)
  requested = model.labels_in_shares(1000, shares)
  assert np.abs(np.bincount(requested) - 1000 * shares).max() < 1
  assert (requested[picked] != model.default_labels(1000)[picked]).any()
  np.testing.assert_array_equal(
      images.read_png(str(workdir / "evaluation.png")),
      images.grid(model.generate(1000, seed=0, labels=requested)[picked],
                  rows=10))


def test_the_average_asked_of_a_run_without_one_is_named_by_its_flag(
    plain_run, mnist_dirs):
  proc = run_module("adversarial.evaluate", [f"--workdir={plain_run}",
                                             "--generator=average"],
                    mnist_dirs)
  assert proc.returncode == 1
  assert ("error: --generator=average is not accepted: the run keeps no "
          "weight average of G (ema_decay=0); expected --generator=trained "
          "or --generator=default") in proc.stderr
  assert "Traceback" not in proc.stderr


def test_class_shares_other_than_uniform_need_a_conditional_run(plain_run):
  from adversarial import evaluation
  with pytest.raises(ValueError, match="class_shares='train' is for "
                     "conditional runs.*expected 'uniform'"):
    evaluation.evaluate_workdir(str(plain_run), class_shares="train")
  with pytest.raises(ValueError, match="class_shares='prior' is not "
                     "accepted: expected one of uniform, train"):
    evaluation.evaluate_workdir(str(plain_run), class_shares="prior")
  with pytest.raises(ValueError, match="num_test=0 is not accepted: "
                     "expected a positive integer"):
    evaluation.evaluate_workdir(str(plain_run), num_test=0)


def test_draws_are_the_estimates_of_successive_seeds(plain_run, mnist_dirs):
  from adversarial import evaluation
  manual, data_dir = mnist_dirs
  kwargs = dict(num_samples=500, num_val=200, num_test=300, reference=False,
                quality=False, tfds_manual_dir=manual, tfds_data_dir=data_dir)
  result = evaluation.evaluate_workdir(str(plain_run), seed=5, draws=3,
                                       **kwargs)
  draws = result["draws"]
  assert draws["seeds"] == [5, 6, 7]
  # The first draw is the estimate reported; the others are new samples.
  assert draws["means"][0] == result["mean"]
  assert draws["sigmas"][0] == result["sigma"]
  assert len(set(draws["means"])) == 3
  assert draws["mean"] == pytest.approx(np.mean(draws["means"]))
  assert draws["std"] == pytest.approx(np.std(draws["means"], ddof=1))
  # Each draw is the one-draw estimate of its seed.
  last = evaluation.evaluate_workdir(str(plain_run), seed=7, **kwargs)
  assert last["mean"] == pytest.approx(draws["means"][2], abs=1e-9)
  assert last["sigma"] == draws["sigmas"][2] and "draws" not in last
  with pytest.raises(ValueError, match="draws=0 is not accepted: expected "
                     "a positive integer"):
    evaluation.evaluate_workdir(str(plain_run), draws=0, **kwargs)


def test_each_evaluation_is_kept_and_evaluation_json_is_the_latest(
    plain_run, mnist_dirs):
  from adversarial import evaluation, images
  manual, data_dir = mnist_dirs
  kwargs = dict(num_samples=500, num_val=200, num_test=300, reference=False,
                quality=False, tfds_manual_dir=manual, tfds_data_dir=data_dir)
  folder = plain_run / evaluation.HISTORY_FOLDER
  before = set(folder.glob("*.json")) if folder.exists() else set()
  best = evaluation.evaluate_workdir(str(plain_run), **kwargs)
  last = evaluation.evaluate_workdir(str(plain_run), checkpoint="last",
                                     seed=3, **kwargs)
  again = evaluation.evaluate_workdir(str(plain_run), checkpoint="last",
                                      seed=3, **kwargs)
  kept = sorted(set(folder.glob("*.json")) - before)
  assert len(kept) == 3
  paths = [pathlib.Path(r["kept_path"]) for r in (best, last, again)]
  assert sorted(paths) == kept and len(set(paths)) == 3
  # A record as JSON has it (string keys), without the paths added after.
  untracked = lambda r: json.loads(json.dumps(
      {k: v for k, v in r.items()
       if k not in ("path", "kept_path", "samples_png",
                    "kept_samples_png")}))
  # The first record survives the two later evaluations whole.
  assert json.loads(paths[0].read_text()) == untracked(best)
  assert json.loads(paths[1].read_text()) == untracked(last)
  assert last["seed"] == 3 and last["mean"] != best["mean"]
  # evaluation.json is the latest.
  assert json.loads((plain_run / "evaluation.json").read_text()) == (
      untracked(again))
  # So is evaluation.png, and each grid is kept beside its record.
  grids = [images.read_png(r["kept_samples_png"]) for r in (best, last)]
  assert [r["kept_samples_png"] for r in (best, last, again)] == [
      str(p.with_suffix(".png")) for p in paths]
  assert not np.array_equal(*grids)
  np.testing.assert_array_equal(
      images.read_png(str(plain_run / "evaluation.png")),
      images.read_png(again["kept_samples_png"]))
  # Named by the time (UTC) and the checkpoint.
  stamp = datetime.datetime.fromisoformat(best["time"])
  assert stamp.utcoffset() == datetime.timedelta(0)
  assert re.fullmatch(
      stamp.strftime("%Y%m%d-%H%M%S") + rf"-epoch-{best['epoch']:04d}"
      r"(-\d+)?\.json", paths[0].name)


def test_one_sigma_fixes_it_and_a_grid_is_chosen_from(plain_run,
                                                      mnist_dirs):
  from adversarial import evaluation
  manual, data_dir = mnist_dirs
  kwargs = dict(num_samples=500, num_val=200, num_test=300, reference=False,
                quality=False, tfds_manual_dir=manual, tfds_data_dir=data_dir)
  grid = evaluation.evaluate_workdir(str(plain_run), **kwargs)
  assert list(grid["validation"]) == list(evaluation.PAPER_SIGMAS)
  best = grid["sigma"]
  assert grid["validation"][best] == max(grid["validation"].values())
  fixed = evaluation.evaluate_workdir(str(plain_run), sigmas=[best], **kwargs)
  assert list(fixed["validation"]) == [best]
  assert fixed["mean"] == pytest.approx(grid["mean"], abs=1e-9)
  # Another sigma, fixed, is the one scored, worse on the validation images.
  other = next(s for s in evaluation.PAPER_SIGMAS if s != best)
  forced = evaluation.evaluate_workdir(str(plain_run), sigmas=[other],
                                       **kwargs)
  assert forced["sigma"] == other
  assert forced["validation"][other] == pytest.approx(
      grid["validation"][other], abs=1e-9)
  assert forced["validation"][other] < grid["validation"][best]
  assert forced["mean"] != pytest.approx(grid["mean"], abs=1e-3)


def test_masked_run_completes_digits(tmp_path, mnist_dirs):
  workdir = tmp_path / "masked"
  run("adversarial.train", [f"--workdir={workdir}", "--masked", *TINY],
      mnist_dirs)
  out = run("adversarial.complete", [f"--workdir={workdir}",
                                     "--num_test=200", "--completions=2"],
            mnist_dirs)
  assert "mean-image fill" in out
  result = json.loads((workdir / "completion" / "completion.json").read_text())
  assert set(result["scores"]) == {"bottom_half", "right_half", "block"}
  for kind in result["scores"]:
    assert (workdir / "completion" / f"{kind}.png").exists()
  # Completions are scored by the MNIST classifier: a run on other images
  # is refused, by name, before any data is read.
  config = json.loads((workdir / "config.json").read_text())
  config["dataset"] = "fashion_mnist"
  (workdir / "config.json").write_text(json.dumps(config))
  proc = run_module("adversarial.complete", [f"--workdir={workdir}"],
                    mnist_dirs)
  assert proc.returncode != 0
  assert ("trained on dataset='fashion_mnist'" in proc.stderr
          and "expected a run on dataset='mnist'" in proc.stderr), proc.stderr


def test_clustered_run_is_scored_in_its_clusters_shares(
    tmp_path, mnist_dirs, monkeypatch):
  workdir = tmp_path / "clustered"
  run("adversarial.train", [f"--workdir={workdir}", "--conditional",
                            "--set=clusters=4",
                            "--set=train_split=train[:2000]", *TINY],
      mnist_dirs)
  from adversarial import data, evaluation, images, quality, train_lib
  prior = train_lib.cluster_prior(str(workdir))
  assert prior.k == 4 and abs(prior.shares.sum() - 1) < 1e-9
  manual, data_dir = mnist_dirs
  # The scores take the test images' distances kept in the data folder.
  kept, given = [], []
  nearest, sample_quality = (quality.nearest_test_distances,
                             quality.sample_quality)
  def keep(*args):
    kept.append((args[2], nearest(*args)))
    return kept[-1][1]
  def score(*args, **kwargs):
    given.append(kwargs["test_distances"])
    return sample_quality(*args, **kwargs)
  monkeypatch.setattr(evaluation.quality_lib, "nearest_test_distances", keep)
  monkeypatch.setattr(evaluation.quality_lib, "sample_quality", score)
  result = evaluation.evaluate_workdir(
      str(workdir), num_samples=1000, num_test=1000, reference=False,
      tfds_manual_dir=manual, tfds_data_dir=data_dir)
  (cache_dir, distances), = kept
  assert cache_dir == data.cache_root(data_dir) and len(given) == 1
  assert given[0] is distances and distances.shape == (10000,)
  # By default the model of p(x): clusters drawn in their training shares.
  assert result["class_shares"] == "train" and result["clusters"] == 4
  # Cluster numbers are not digits: no recognition score.
  assert "conditional" not in result and "quality" in result
  model = train_lib.restore(str(workdir), "best")[0]
  requested = model.labels_in_shares(1000, prior.shares)
  picked = np.arange(100) * 10
  assert (requested[picked] != model.default_labels(1000)[picked]).any()
  np.testing.assert_array_equal(
      images.read_png(result["samples_png"]),
      images.grid(model.generate(1000, seed=0, labels=requested)[picked],
                  rows=10))


# Bad flags of each binary (the bounds not tried here are the same absl
# bounds).
@pytest.mark.parametrize("module,flag,message", [
    ("adversarial.infer", "--learning_rate=0", "expected Adam's step size, a "
     "number > 0"),
    ("adversarial.semisup", "--sizes=0,100", "--sizes=0,100 is not "
     "accepted: expected positive integers"),
    ("adversarial.semisup", "--sizes=100,1e3", "--sizes=100,1e3 is not "
     "accepted: expected integers separated by commas"),
    ("adversarial.semisup", "--l2=-1", "-1.0 is not a non-negative"),
    ("adversarial.complete", "--completions=0", "0 is not a positive integer"),
    ("adversarial.evaluate", "--num_test=0", "0 is not a positive integer"),
    ("adversarial.evaluate", "--sigmas=0.2,abc", "--sigmas=0.2,abc is not "
     "accepted: expected numbers separated by commas"),
    ("adversarial.evaluate", "--sigmas=0.2,-1", "sigmas=[0.2, -1.0] is not "
     "accepted: expected one or more positive, finite kernel widths"),
])
def test_bad_flags_are_named_before_anything_runs(tmp_path, module, flag,
                                                  message):
  proc = run_module(module, [f"--workdir={tmp_path / 'none'}", flag])
  assert proc.returncode != 0
  assert message in proc.stdout + proc.stderr
  assert "Traceback" not in proc.stderr


# The flags every binary that reads a run shares (`cli`) are listed by its
# --helpshort, beside its own.
@pytest.mark.parametrize("module,data_flags", [
    ("adversarial.evaluate", True), ("adversarial.figures", True),
    ("export", False)])
def test_helpshort_lists_the_shared_flags(module, data_flags):
  proc = run_module(module, ["--helpshort"])
  assert "--workdir:" in proc.stdout
  assert "--checkpoint: best (the best epoch by the validation" in proc.stdout
  assert ("--tfds_manual_dir:" in proc.stdout) == data_flags
