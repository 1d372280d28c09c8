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


def _true_labels(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()


def test_distillation_at_weight_zero_is_plain_training():
    recipe = TrainConfig(epochs=3, lr=0.1, batch_size=16, distill=True, distill_weight=0.0)
    teacher = fit(model(), loader(), TrainConfig(epochs=6, lr=0.1))
    plain = fit(model(), loader(), TrainConfig(epochs=3, lr=0.1, batch_size=16))
    distilled = fit(model(), loader(), recipe, teacher=teacher)
    for a, b in zip(plain.state_dict().values(), distilled.state_dict().values()):
        assert torch.equal(a, b)


def test_distillation_teaches_what_the_labels_do_not():
    """Labels replaced by noise: alone they teach nothing, but a teacher trained on the true
    labels passes its function on through its outputs (weight 1: the teacher only)."""
    teacher = fit(model(), loader(), TrainConfig(epochs=8, lr=0.1))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 6, generator=g)
    noise = torch.randint(0, 4, (256,), generator=g)
    noisy = DataLoader(TensorDataset(x, noise), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    test_x = torch.randn(512, 6, generator=g)
    truth = DataLoader(TensorDataset(test_x, _true_labels(test_x)), batch_size=128)
    assert evaluate(teacher, truth).accuracy > 0.85
    recipe = dict(epochs=8, lr=0.05, batch_size=16)
    on_noise = fit(model(), noisy, TrainConfig(**recipe))
    taught = fit(model(), noisy, TrainConfig(**recipe, distill=True, distill_weight=1.0, distill_temperature=2.0),
                 teacher=teacher)
    assert evaluate(on_noise, truth).accuracy < 0.5
    assert evaluate(taught, truth).accuracy > 0.8


def test_distillation_settings_are_checked_and_reach_the_fine_tune_recipe():
    from lcp_tune.errors import LcpTuneError
    from lcp_tune.run.settings import resolve_config

    config = resolve_config({"finetune.distill": True, "finetune.distill_weight": 0.5, "data": "fashion-mnist"})
    assert (config.finetune.distill, config.finetune.distill_weight, config.finetune.epochs) == (True, 0.5, 5)
    assert config.base_train.distill is False
    with pytest.raises(LcpTuneError, match=r"--distill-weight must be in \[0, 1\], got 1.5"):
        resolve_config({"finetune.distill_weight": 1.5})
    with pytest.raises(LcpTuneError, match=r"--distill-temperature must be in \(0, 100\], got 0"):
        resolve_config({"finetune.distill_temperature": 0})


class _Always(torch.nn.Module):
    """A teacher that is sure of one class whatever it sees."""

    def __init__(self, label: int, classes: int = 10):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))   # gives it a device to follow
        self.label, self.classes = label, classes

    def forward(self, x):
        out = torch.full((x.shape[0], self.classes), -10.0, device=x.device) + self.anchor
        out[:, self.label] = 10.0
        return out


def test_the_final_fine_tune_distils_the_teacher_it_is_given():
    """finetune_model with the recipe's distill on follows its teacher (here a teacher that
    always says 3), and ignores it with distill off."""
    from lcp_tune.data import load_experiment_data
    from lcp_tune.models import build_model
    from lcp_tune.run.finetune import finetune_model

    config = ExperimentConfig().replace(**{"arch": "resnet20_tiny", "device": "cpu", "finetune.epochs": 2,
                                           "finetune.distill_weight": 1.0, "search.bn_batches": 2})
    data = load_experiment_data(config)
    results = {}
    for distill in (False, True):
        torch.manual_seed(0)
        student = build_model("resnet20_tiny", 10, 1)
        cfg = config.replace(**{"finetune.distill": distill})
        results[distill] = finetune_model(student, cfg, data, teacher=_Always(3))
    assert results[False].accuracy > 0.5
    assert results[True].accuracy < 0.2      # about the tenth of the test images that are 3s


def test_an_interrupted_base_training_resumes_at_its_last_finished_epoch(tmp_path, monkeypatch):
    """A base model's training (days on ImageNet) saves every epoch: a kill loses at most one,
    and the resumed run ends with the weights an uninterrupted one has."""
    from lcp_tune import training
    from lcp_tune.config import TrainConfig
    from lcp_tune.data import load_data
    from lcp_tune.run.base_model import train_base

    data = load_data("digits")
    recipe = TrainConfig(epochs=3, lr=0.05)
    reference = train_base("resnet20_tiny", data, recipe, 0, device="cpu")
    real, epochs_run = training.train_steps, []

    def stopped_in_epoch_two(*args, **kwargs):
        epochs_run.append(kwargs["start"])
        if len(epochs_run) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_steps", stopped_in_epoch_two)
    checkpoint = tmp_path / "base.partial.pt"
    with pytest.raises(KeyboardInterrupt):
        train_base("resnet20_tiny", data, recipe, 0, device="cpu", checkpoint=checkpoint)
    assert checkpoint.is_file()
    epochs_run.clear()
    monkeypatch.setattr(training, "train_steps", lambda *a, **k: epochs_run.append(k["start"]) or real(*a, **k))
    resumed = train_base("resnet20_tiny", data, recipe, 0, device="cpu", checkpoint=checkpoint)
    per_epoch = len(data.loader("train", recipe.batch_size, shuffle=True))
    assert epochs_run == [per_epoch, 2 * per_epoch]          # epochs 2 and 3 only: epoch 1 was kept
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
