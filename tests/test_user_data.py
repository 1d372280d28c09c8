"""Your own data: `--data package.module:factory` and `lcp_tune.search(data=fn)`, checked before
any Ray worker starts, then searched like a built-in dataset."""
from __future__ import annotations

import textwrap

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import lcp_tune
from lcp_tune.cli import main
from lcp_tune.data import load_data
from lcp_tune.errors import LcpTuneError
from lcp_tune.testing import assert_one_line_error
from lcp_tune.trust import trust

# A learnable task the project has never seen: three 8x8 one-channel blob patterns plus noise.
MODULE = textwrap.dedent('''
    import torch
    from torch.utils.data import Dataset, TensorDataset

    def _blobs(n, seed):
        g = torch.Generator().manual_seed(seed)
        centres = torch.zeros(3, 1, 8, 8)
        centres[0, :, :4, :4] = 2.0
        centres[1, :, 4:, 4:] = 2.0
        centres[2, :, 2:6, 2:6] = 2.0
        y = torch.arange(n) % 3
        x = centres[y] + torch.randn(n, 1, 8, 8, generator=g)
        return TensorDataset(x, y)

    def make():
        return _blobs(240, 0), _blobs(90, 1)

    def make_with_val(data_dir=None):
        return {"train": _blobs(200, 0), "test": _blobs(60, 1), "val": _blobs(30, 2),
                "classes": ["square", "corner", "centre"]}

    class Pairs(Dataset):
        def __init__(self, image, label): self.image, self.label = image, label
        def __len__(self): return 4
        def __getitem__(self, i): return self.image, self.label

    def raises():
        raise RuntimeError("no such bucket")

    class CorruptAfterFirst(Dataset):
        """A validation split with a corrupt image: sample 0 reads, every other one fails."""
        def __init__(self, base): self.base, self.targets = base, base.tensors[1].tolist()
        def __len__(self): return len(self.base)
        def __getitem__(self, i):
            if i > 0:
                raise ValueError(f"image val/{i}.jpg cannot be decoded")
            return self.base[i]

    def corrupt_val():
        return _blobs(240, 0), _blobs(90, 1), CorruptAfterFirst(_blobs(60, 2))

    def not_datasets():
        return [1, 2, 3], [4]

    def not_images():
        return Pairs([[0.0]], 0), Pairs([[0.0]], 0)

    def float_labels():
        return Pairs(torch.zeros(1, 8, 8), 0.5), Pairs(torch.zeros(1, 8, 8), 0)

    def one_class():
        return Pairs(torch.zeros(1, 8, 8), 0), Pairs(torch.zeros(1, 8, 8), 0)

    def label_out_of_range():
        return {"train": Pairs(torch.zeros(1, 8, 8), 7), "test": Pairs(torch.zeros(1, 8, 8), 0),
                "classes": ["a", "b"]}
''')


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    """blobs_data.py in the current folder, as a user's module would be."""
    (tmp_path / "blobs_data.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "blobs_data"


def test_factory_gives_splits_with_a_carved_validation_set(user_module):
    with pytest.raises(LcpTuneError, match="names code to run"):   # a name from a file would not run
        load_data(f"{user_module}:make")
    trust([f"{user_module}:make", f"{user_module}:make_with_val"])   # as the CLI does for --data
    splits = load_data(f"{user_module}:make", seed=3, val_fraction=0.25)
    assert splits.input_shape == (1, 8, 8) and splits.num_classes == 3
    assert len(splits.train) + len(splits.val) == 240 and len(splits.val) == 60 and len(splits.test) == 90
    again = load_data(f"{user_module}:make", seed=3, val_fraction=0.25)
    assert torch.equal(next(iter(splits.loader("val", 60)))[0], next(iter(again.loader("val", 60)))[0])
    named = load_data(f"{user_module}:make_with_val")
    assert (len(named.train), len(named.val), named.classes) == (200, 30, ("square", "corner", "centre"))


@pytest.mark.parametrize("factory, fragments", [
    ("no_module_here:make", ["cannot import module 'no_module_here'"]),
    ("blobs_data:missing", ["has no callable 'missing'"]),
    ("blobs_data:raises", ["the factory raised RuntimeError: no such bucket"]),
    ("blobs_data:not_datasets", ["train must be a torch.utils.data.Dataset"]),
    ("blobs_data:not_images", ["train images must be float tensors of shape (C, H, W)"]),
    ("blobs_data:float_labels", ["train labels must be integers"]),
    ("blobs_data:label_out_of_range", ["train label 7 is outside [0, 2)"]),
    ("blobs_data:one_class", ["has 1 class; classification needs at least 2"]),
])
def test_bad_factory_is_one_line_before_any_worker(user_module, tmp_path, factory, fragments):
    import ray

    trust([factory])
    with pytest.raises(LcpTuneError):
        load_data(factory)
    result = CliRunner().invoke(main, ["search", "--data", factory, "--out", str(tmp_path / "exp")])
    assert_one_line_error(result, f"--data '{factory}'", *fragments)
    assert not ray.is_initialized() and not (tmp_path / "exp").exists()


SMALL = ["--arch", "resnet20_tiny", "--budget", "0.4", "--num-samples", "3", "--tau-hat", "4",
         "--finetune-epochs", "1", "--quiet"]


@pytest.mark.ray
@pytest.mark.slow
def test_search_on_a_dataset_factory_from_the_cli(user_module, tmp_path):
    """The Ray workers import the factory by name (the current folder travels with the driver)."""
    result = CliRunner().invoke(main, ["search", "--data", f"{user_module}:make", *SMALL, "--out", "exp"])
    assert result.exit_code == 0, result.output
    report = lcp_tune.load_result(tmp_path / "exp").report
    assert report["data"] == f"{user_module}:make" and report["num_trials"] == 3 and report["failed_trials"] == 0
    assert report["base_test_acc"] > 0.6   # three blob patterns are learnable: chance is 1/3
    assert len(pd.read_parquet(tmp_path / "exp" / "trials.parquet").query("rung == 0")) == 3   # the race rows: rung 1+


@pytest.mark.ray
@pytest.mark.slow
def test_search_on_a_factory_function_from_python(tmp_path):
    """A function defined in a notebook cannot be imported by name: it is shipped to the workers."""
    def notebook_blobs():
        g = torch.Generator().manual_seed(0)
        y = torch.arange(300) % 2
        x = torch.randn(300, 1, 8, 8, generator=g) + 2.0 * y.view(-1, 1, 1, 1).float()
        return (torch.utils.data.TensorDataset(x[:240], y[:240]),
                torch.utils.data.TensorDataset(x[240:], y[240:]))

    result = lcp_tune.search(data=notebook_blobs, arch="resnet20_tiny", budget=0.4, num_samples=3, tau_hat=4,
                             finetune_epochs=1, out=tmp_path / "exp", log=None)
    assert isinstance(result, lcp_tune.SearchResult)
    assert result.report["num_trials"] == 3 and result.report["failed_trials"] == 0
    assert len(result.trials) == 3 and set(result.trials["status"]) == {"finished"}
    assert result.compensation and all(k.startswith("beta:") for k in result.compensation)
    assert result.model(torch.randn(5, 1, 8, 8)).shape == (5, 2)
    assert result.report["methods"]["lcp"]["flops_ratio"] <= 0.4 + 1e-9


@pytest.mark.ray
@pytest.mark.slow
def test_a_deterministic_trial_error_is_reported_once_never_retried(user_module, tmp_path):
    """A corrupt validation image fails every trial the same way: each trial runs once, says why
    and where its log is, and the run ends in one line instead of retries and tracebacks."""
    result = CliRunner().invoke(main, ["search", "--data", f"{user_module}:corrupt_val", *SMALL[:-1],
                                       "--out", "exp"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert sum("FAILED: ValueError: image val/" in line and "trial_errors/" in line for line in lines) == 3, result.output
    assert "all 3 search trials failed: ValueError: image val/" in lines[-1] and "Traceback" not in result.output
    logs = list((tmp_path / "exp" / "trial_errors").glob("*.txt"))
    assert len(logs) == 3 and all("cannot be decoded" in p.read_text() for p in logs)
    assert not list((tmp_path / "exp" / "search").glob("trial_*/error.txt"))   # Tune saw no raise: no retry
