"""The profiles are the one source of budgets: every notebook reads them from
:data:`fer_utils.config.PROFILES` and none forks on a profile's name."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from functools import reduce
from pathlib import Path

import pytest

from fer_utils.config import PROFILES, Profile, get_profile

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RESULTS = ROOT / "results"  # the committed run records (not $FER_RESULTS: tests isolate that)

_NAME = "|".join(map(re.escape, PROFILES))
FORK = re.compile(
    r"(?<!\.)\bprofile\s*[!=]=|(?<!\.profile )[!=]=\s*profile\b"  # profile == x, x != profile
    # (a record's field against the parameter, run.profile == profile, selects; it is no fork)
    r"|\bprofile\s+(?:not\s+)?in\s*[(\[{]"  # profile in ("cpu", "full")
    rf"|[!=]=\s*[\"'](?:{_NAME})[\"']|[\"'](?:{_NAME})[\"']\s*[!=]="  # settings.name == "cpu"
)
"""A comparison of the profile (or anything) with a profile's name."""
PROFILE_NAME = re.compile(rf"[\"'](?:{_NAME})[\"']")
PARAMETER_DEFAULT = re.compile(rf"^profile = [\"'](?:{_NAME})[\"']")
BUDGET_READ = re.compile(r"\bsettings((?:\.[A-Za-z_]\w*)+)")
"""``settings.transfer.size``: the notebooks' ``settings = get_profile(profile)``, read."""
CAPS = {"train_per_class", "eval_per_class"}  # the only budgets that may be None (all rows)


def code_lines(notebook: Path) -> Iterator[tuple[int, str]]:
    """(cell index, line without its comment) of every code line of ``notebook``."""
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        if cell["cell_type"] == "code":
            for line in "".join(cell["source"]).splitlines():
                yield index, line.split("#", 1)[0].rstrip()


def budget_reads() -> set[str]:
    """Every ``settings.<a>.<b>`` path the notebooks read, as ``"a.b"``."""
    return {
        match.lstrip(".")
        for notebook in NOTEBOOKS
        for _, line in code_lines(notebook)
        for match in BUDGET_READ.findall(line)
    }


def leaves(value: object, path: str = "") -> Iterator[tuple[str, object]]:
    """(dotted path, value) of every budget in a profile, nested budgets and the label curve
    (``label_curve.0.25``) flattened."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from leaves(getattr(value, f.name), f"{path}.{f.name}".lstrip("."))
    elif isinstance(value, tuple) and all(isinstance(pair, tuple) for pair in value):
        for key, item in value:  # the label curve's (share, epochs) pairs
            yield from leaves(item, f"{path}.{key}")
    else:
        yield path, value


def budgets(profile: Profile) -> dict[str, object]:
    """The profile's numeric budgets (not its name, description, flag or data profile)."""
    return {
        path: value
        for path, value in leaves(profile)
        if isinstance(value, int) and not isinstance(value, bool)
    }


def test_notebooks_are_found() -> None:
    assert len(NOTEBOOKS) >= 7


@pytest.mark.parametrize(
    "line",
    [
        'transfer_profile = "full" if profile == "full" else "quick"',
        'quick = profile == "quick"',
        '    {0.05: 40} if profile != "quick" else {0.25: 2}',
        'epochs = epochs or (10 if profile == "cpu" else settings.epochs)',
        'if profile == "quick" and members is None:',
        'if "cpu" == profile:',
        'if profile in ("cpu", "full"):',
        'if settings.name != "quick":',
    ],
)
def test_the_fork_pattern_finds_forks(line: str) -> None:
    assert FORK.search(line)


@pytest.mark.parametrize(
    "line",
    [
        'profile = "quick"',
        "settings = get_profile(profile)",
        'runs[name] = train_or_load(config, f"illum-{name}-{profile}", dataset, profile)',
        "if settings.smoke and members is None:",
        "students = [r for r in students if r.profile == profile]",
        "for profile in PROFILES:",
    ],
)
def test_the_fork_pattern_spares_plain_uses(line: str) -> None:
    assert not FORK.search(line)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_no_notebook_forks_on_a_profile_name(notebook: Path) -> None:
    forks = [f"cell {i}: {line}" for i, line in code_lines(notebook) if FORK.search(line)]
    assert not forks, f"{notebook.name} forks on the profile's name:\n" + "\n".join(forks)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_no_notebook_names_a_profile_beyond_its_parameter(notebook: Path) -> None:
    """A profile's name written into code (``profile_data(data, "quick")``) is a hidden fork;
    only the ``parameters`` cell's default may name one."""
    named = [
        f"cell {i}: {line}"
        for i, line in code_lines(notebook)
        if PROFILE_NAME.search(line) and not PARAMETER_DEFAULT.match(line)
    ]
    assert not named, f"{notebook.name} names a profile:\n" + "\n".join(named)


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_budget_the_notebooks_read_is_set(name: str) -> None:
    profile = get_profile(name)
    for path in budget_reads():
        value = reduce(getattr, path.split("."), profile)  # AttributeError: a missing budget
        assert value is not None or path in CAPS, f"{name}: settings.{path} is None"
    unset = [path for path, value in leaves(profile) if value is None and path not in CAPS]
    assert not unset, f"{name}: budgets not set: {unset}"


def test_every_budget_is_read_by_a_notebook() -> None:
    """No budget is dead: each nested budget field and notebook budget is read somewhere."""
    reads = budget_reads()
    profile = get_profile("cpu")
    owned = {p for p, _ in leaves(profile) if "." in p and not p.startswith("label_curve.")}
    owned |= {
        "smoke", "loss_comparison_epochs", "label_curve", "label_seeds", "illumination_epochs"
    }  # fmt: skip
    assert owned <= reads, f"budgets no notebook reads: {sorted(owned - reads)}"


def test_only_quick_is_a_smoke_profile() -> None:
    assert [p.name for p in PROFILES.values() if p.smoke] == ["quick"]


def test_transfer_runs_use_a_known_profile() -> None:
    for profile in PROFILES.values():
        assert profile.transfer.data_profile in PROFILES


def test_transfer_budgets_never_share_run_names() -> None:
    """Each transfer budget has its own run-name tag, so a quick run can never reuse, or
    overwrite, a cpu run trained with another budget on the same data."""
    transfers = {p.transfer for p in PROFILES.values()}
    assert len({t.tag for t in transfers}) == len(transfers)


def test_every_profile_sets_a_known_tta_set() -> None:
    from fer_utils.tta import TTA_SETS

    assert {p.tta for p in PROFILES.values()} <= set(TTA_SETS)


def test_quick_budgets_are_smaller_than_cpus() -> None:
    quick, cpu = budgets(get_profile("quick")), budgets(get_profile("cpu"))
    assert quick.keys() <= cpu.keys() | {"train_per_class", "eval_per_class"}
    larger = {path: (v, cpu[path]) for path, v in quick.items() if path in cpu and v > cpu[path]}
    assert not larger, f"quick budgets above cpu's: {larger}"
    below = {"epochs", "loss_comparison_epochs", "illumination_epochs", "simclr.epochs"}
    below |= {p for p in cpu if p.startswith(("feature_maps.", "explain.", "label_curve."))}
    assert all(quick.get(path, 0) < cpu[path] for path in below)
    assert set(get_profile("cpu").caps().values()) == {None}  # cpu: all rows


CPU_TODAY = {
    "epochs": 30,
    "batch_size": 256,
    "loss_comparison_epochs": 12,
    "transfer.size": 64,
    "transfer.head_epochs": 2,
    "transfer.fine_tune_epochs": 2,
    "transfer.batch_size": 64,
    "simclr.epochs": 32,
    "simclr.batch_size": 256,
    "label_curve.0.05": 40,
    "label_curve.0.1": 30,
    "label_curve.0.25": 12,
    "label_curve.1.0": 48,
    "illumination_epochs": 10,
    "feature_maps.steps": 256,
    "feature_maps.filters": 16,
    "feature_maps.region_faces": 2000,
    "explain.faithfulness_faces": 500,
    "explain.lime_samples": 500,
    "explain.per_class": 200,
}
"""The cpu budgets the committed cpu runs and tables were made with."""

QUICK_TODAY = {
    "train_per_class": 300,
    "eval_per_class": 60,
    "epochs": 2,
    "batch_size": 128,
    "loss_comparison_epochs": 1,
    "transfer.size": 32,
    "transfer.head_epochs": 1,
    "transfer.fine_tune_epochs": 1,
    "transfer.batch_size": 64,
    "simclr.epochs": 1,
    "simclr.batch_size": 64,
    "label_curve.0.25": 1,
    "label_curve.1.0": 1,
    "illumination_epochs": 1,
    "feature_maps.steps": 64,
    "feature_maps.filters": 8,
    "feature_maps.region_faces": 300,
    "explain.faithfulness_faces": 8,
    "explain.lime_samples": 50,
    "explain.per_class": 10,
}
"""The quick profile's smoke budgets: all seven notebooks in about 10 minutes on 2 cores."""


@pytest.mark.parametrize(("name", "today"), [("cpu", CPU_TODAY), ("quick", QUICK_TODAY)])
def test_budgets_are_those_of_the_committed_runs(name: str, today: dict[str, int]) -> None:
    assert budgets(get_profile(name)) == today
    assert get_profile(name).transfer.data_profile == "quick"


def test_full_follows_the_published_recipes() -> None:
    full = get_profile("full")
    assert (full.epochs, full.batch_size) == (300, 64)  # Khaireddin & Chen 2021
    assert (full.transfer.data_profile, full.transfer.size) == ("full", 224)  # ImageNet's
    cpu = budgets(get_profile("cpu"))
    smaller = {p: v for p, v in budgets(full).items() if "batch" not in p and v < cpu[p]}
    assert not smaller, f"full budgets below cpu's: {smaller}"


def record(run: str) -> dict:
    path = RESULTS / f"{run}.json"
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    return json.loads(path.read_text())


def test_cpu_names_and_configs_match_the_committed_records() -> None:
    """The cpu profile's budgets give the committed runs' names and configs, so notebooks
    reload them (``reuse``) or train them again identically."""
    cpu = get_profile("cpu")
    assert cpu.transfer.tag == "quick" and cpu.tta == "shifts"  # transfer-*-quick, *-tta
    assert cpu.label_seeds == (14, 15)  # the committed labels-0.1-*-s14, -s15
    assert record(f"transfer-vgg16-{cpu.transfer.tag}-tta")["tta"] == cpu.tta
    transfer = record(f"transfer-vgg16-{cpu.transfer.tag}")["config"]
    assert transfer["model_kwargs"]["size"] == cpu.transfer.size
    assert (transfer["epochs"], transfer["batch_size"]) == (
        cpu.transfer.fine_tune_epochs,
        cpu.transfer.batch_size,
    )
    assert record(f"transfer-vgg16-head-{cpu.transfer.tag}")["config"]["epochs"] == (
        cpu.transfer.head_epochs
    )
    simclr = record("simclr-fast_cnn-cpu")["pretrain_config"]
    assert (simclr["epochs"], simclr["batch_size"]) == (cpu.simclr.epochs, cpu.simclr.batch_size)
    for fraction, epochs in cpu.label_curve:
        run = "fast_cnn-ls-cpu" if fraction == 1.0 else f"labels-{fraction}-simclr-cpu"
        assert record(run)["config"]["epochs"] == epochs, run
    for loss in ("ce", "class_weights", "focal"):
        assert record(f"five_layer-{loss}-e{cpu.loss_comparison_epochs}-cpu")
    for correction in ("none", "clahe", "lightaug"):
        config = record(f"illum-{correction}-cpu")["config"]
        assert config["epochs"] == cpu.illumination_epochs
        assert config["batch_size"] == cpu.batch_size
