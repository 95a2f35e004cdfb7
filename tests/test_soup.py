"""A fine-tune's spare time (composer.training.soup): more runs, averaged greedily."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from click.testing import CliRunner
from helpers import small_corpus

from composer.cli.main import main
from composer.cli.report import train_summary
from composer.model.checkpoint import load_checkpoint, save_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.training import soup
from composer.training.config import TrainConfig, TrainRequest
from composer.training.loop import evaluate, train
from composer.training.recipe import train_model

TINY = ModelConfig.preset("tiny", vocab_size=20)


def filled(value: float) -> ComposerLSTM:
    net = ComposerLSTM(TINY).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
    return net


def distance_to(target: float):
    """A validation loss: how far a model's weights are from ``target``."""
    return lambda net: float(sum((p.detach() - target).abs().sum() for p in net.parameters()))


def test_average_is_the_mean_of_each_weight():
    mean = soup.average([filled(1.0), filled(2.0), filled(6.0)])
    assert all(torch.all(t == 3.0) for t in mean.values())


def test_the_average_is_kept_only_when_it_validates_better_than_every_run():
    runs, validate = [filled(1.0), filled(2.0), filled(9.0)], distance_to(4.0)
    losses = [validate(r) for r in runs]
    model, kept, loss = soup.choose(runs, losses, validate)  # their mean 4.0 is closest
    assert kept == [0, 1, 2] and all(model is not r for r in runs)
    assert all(torch.allclose(p, torch.tensor(4.0)) for p in model.parameters())
    assert loss == pytest.approx(validate(model)) and loss < min(losses)
    near_two = distance_to(2.0)  # the mean 4.0 is worse than the run of 2.0
    alone, kept, loss = soup.choose(runs, [near_two(r) for r in runs], near_two)
    assert alone is runs[1] and kept == [1] and loss == 0.0


def test_a_fine_tune_at_its_pass_cap_averages_further_runs(tmp_path, monkeypatch):
    corpus = small_corpus(tmp_path / "data")
    config = TrainConfig(batch_size=16, seq_len=64, eval_seq_len=128, eval_max_batches=4,
                         warmup_steps=2)
    base = train(corpus, tmp_path / "base", dataclasses.replace(
        TINY, vocab_size=corpus.events.size), dataclasses.replace(config, steps=2),
                 device="cpu")
    monkeypatch.setattr(soup, "SOUP_MEMBERS", 3)  # a minute leaves time for many more
    given: list = []
    real_choose = soup.choose

    def every_run(models, losses, validate):  # the plumbing, whichever choose would keep
        given.append((models, real_choose(models, losses, validate)[1]))
        net = ComposerLSTM(models[0].config).eval()
        net.load_state_dict(soup.average(models))
        return net, [0, 1, 2], validate(net)

    monkeypatch.setattr(soup, "choose", every_run)
    notes: list[str] = []
    request = TrainRequest(str(corpus.cache_dir), str(tmp_path / "run"), config=config,
                           minutes=1.0, init_from=str(base.out_dir / "best"), device="auto",
                           threads=1)
    result = train_model(request, soup_callbacks(notes))
    first = load_checkpoint(tmp_path / "run" / "latest")
    assert result.stopped == "done" and result.step == first.train_config["steps"]  # the cap
    assert len(notes) == 2 and "fine-tuning again (seed 1)" in notes[0]
    assert notes[1].startswith("Fine-tuning again (seed 2;")
    runs = [tmp_path / "run" / "soup" / k / "best" for k in "12"]
    assert not (tmp_path / "run" / "soup" / "3").exists()
    assert [load_checkpoint(r).train_config["seed"] for r in runs] == [1, 2]
    (models, kept), = given
    assert len(models) == 3 and kept[0] in (0, 1, 2)
    for model, run in zip(models[1:], runs, strict=True):  # each run's best, as written
        written = load_checkpoint(run).model.state_dict()
        assert all(torch.equal(t, written[k]) for k, t in model.state_dict().items())
    best = load_checkpoint(tmp_path / "run" / "best")
    mean = soup.average(models)
    assert all(torch.allclose(best.model.state_dict()[k], mean[k]) for k in mean)
    assert result.soup == (0, 1, 2) and best.metrics["soup"] == [0, 1, 2]
    assert "average of the fine-tunes of seeds 0, 1, 2" in train_summary(result)
    info = CliRunner().invoke(main, ["info", str(tmp_path / "run")])
    assert "the average of the runs of seeds 0, 1, 2" in info.output
    loss = evaluate(best.model, corpus, "valid", config, torch.device("cpu"))["loss"]
    assert loss == pytest.approx(best.metrics["loss"], rel=1e-5)
    assert result.best_valid_loss == pytest.approx(loss, rel=1e-5)
    assert result.recall == best.model_config.recall  # recall fitted on the average
    assert first.step == result.step  # latest stays the first run's, resumable
    again = train_model(dataclasses.replace(request, resume=True, minutes=None,
                                            init_from="auto"), soup_callbacks(notes))
    assert again.stopped == "already complete" and len(notes) == 2  # no more runs
    more = train_model(dataclasses.replace(request, resume=True, minutes=None, init_from="auto",
                                           steps=result.step + 40), soup_callbacks(notes))
    assert more.step == result.step + 40 and len(notes) == 2
    after = load_checkpoint(tmp_path / "run" / "best")  # replaced only by a better model
    assert after.metrics["loss"] <= best.metrics["loss"]
    assert ("soup" in after.metrics) == (after.metrics["loss"] == best.metrics["loss"])
    train_model(dataclasses.replace(request, force=True, minutes=0.001), soup_callbacks([]))
    assert (tmp_path / "run" / "previous-1" / "soup" / "1").exists()  # set aside whole


def soup_callbacks(notes: list[str]):
    from composer.training.recipe import TrainCallbacks

    return TrainCallbacks(plan=lambda line: notes.append(line) if "again (seed" in line else None)


def test_a_resumed_run_replaces_best_only_with_a_better_model(tmp_path):
    corpus = small_corpus(tmp_path / "data")
    config = TrainConfig(steps=6, batch_size=8, seq_len=32, eval_seq_len=64, eval_every=3,
                         warmup_steps=1, eval_max_batches=2)
    train(corpus, tmp_path / "run", dataclasses.replace(TINY, vocab_size=corpus.events.size),
          config, device="cpu")
    b = load_checkpoint(tmp_path / "run" / "best")  # as if an average of runs beat the run
    save_checkpoint(tmp_path / "run" / "best", b.model, b.model_config, b.event_config,
                    train_config=b.train_config, step=b.step, data=b.data,
                    metrics={**b.metrics, "loss": 0.1 * b.metrics["loss"], "soup": [0, 1]})
    train(corpus, tmp_path / "run", None, dataclasses.replace(config, steps=12), device="cpu",
          resume=True)
    assert load_checkpoint(tmp_path / "run" / "latest").step == 12
    assert load_checkpoint(tmp_path / "run" / "best").metrics["soup"] == [0, 1]
