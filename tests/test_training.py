"""Training recipes: schedules, exact resume of an interrupted fine-tune, top-5."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lcp_tune.config import RECIPES, ExperimentConfig, TrainConfig, recipe_changes
from lcp_tune.store.config_file import load_config, save_config
from lcp_tune.training import evaluate, fit, make_schedule


def loader(seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed))


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


class Interrupt(Exception):
    pass


def test_interrupted_finetune_resumes_at_the_right_epoch_with_identical_result(tmp_path):
    recipe = TrainConfig(epochs=4, lr=0.1, batch_size=16)
    reference = fit(model(), loader(), recipe, val=loader())

    seen: list[int] = []

    def stop_after_two(epoch, loss, val):
        seen.append(epoch)
        if epoch == 1:
            raise Interrupt

    ckpt = tmp_path / "ft.pt"
    with pytest.raises(Interrupt):
        fit(model(), loader(), recipe, val=loader(), progress=stop_after_two, checkpoint=ckpt)
    assert seen == [0, 1] and ckpt.is_file()
    resumed_epochs: list[int] = []
    resumed = fit(model(), loader(), recipe, val=loader(),
                  progress=lambda e, l, v: resumed_epochs.append(e), checkpoint=ckpt)
    assert resumed_epochs == [2, 3]                       # epochs 0-1 were not redone
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)                          # same as never interrupted


def test_training_learns_and_keeps_the_best_validation_epoch():
    trained = fit(model(), loader(), TrainConfig(epochs=6, lr=0.1), val=loader())
    assert evaluate(trained, loader()).accuracy > 0.8


def test_multistep_schedule_drops_at_milestones():
    recipe = TrainConfig(epochs=10, lr=0.1, schedule="multistep", milestones=(3, 6), gamma=0.1, warmup=False)
    schedule = make_schedule(recipe, steps_per_epoch=5)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(3 * 5) == pytest.approx(0.01)
    assert schedule(6 * 5 + 1) == pytest.approx(0.001)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = make_schedule(TrainConfig(epochs=4, lr=0.2), steps_per_epoch=10)
    assert schedule(0) < schedule(9) == pytest.approx(0.2)
    assert schedule(39) < 0.01


def test_top5_is_reported_with_more_than_five_classes():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 10)
    data = DataLoader(TensorDataset(torch.randn(50, 4), torch.randint(0, 10, (50,))), batch_size=10)
    result = evaluate(net, data)
    assert 0 <= result.accuracy <= result.top5 <= 1


def test_recipes_round_trip_through_the_saved_config(tmp_path):
    for name in RECIPES:
        config = ExperimentConfig().replace(**recipe_changes(name))
        save_config(config, tmp_path / "c.yaml")
        assert load_config(tmp_path / "c.yaml") == config
    assert ExperimentConfig().replace(**recipe_changes("cifar")).base_train.milestones == (82, 123)
