import subprocess
import sys

import pytest

from harness.config import Config, ConfigError, available_profiles, load_config


def test_profiles_load_into_typed_config():
    assert {"tiny", "smoke"} <= set(available_profiles())
    for name in ("tiny", "smoke"):
        cfg = load_config(name)
        assert isinstance(cfg, Config)
        assert cfg.profile == name
        assert cfg.eval.temperature == 0.6 and cfg.eval.top_p == 0.95  # the paper's sampling
        assert cfg.eval.k == {"smoke": 16, "tiny": 8}[name]  # tiny halves the paper's 16 for time


def test_every_profile_field_has_a_comment_above_it():
    from harness.config import PROFILES_DIR

    for path in PROFILES_DIR.glob("*.yaml"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            stripped = line.strip()
            if not stripped or stripped.startswith(("#", "-", "config:")) or ":" not in stripped:
                continue
            assert lines[i - 1].strip().startswith("#"), f"{path.name}:{i + 1} '{stripped}' has no comment above it"


def test_dotted_overrides_apply_with_types():
    cfg = load_config("tiny", ["eval.k=4", "bootstrap.learning_rate=1e-3", "rollout.device=cpu", "seed=7"])
    assert cfg.eval.k == 4
    assert cfg.bootstrap.learning_rate == pytest.approx(1e-3)
    assert cfg.rollout.device == "cpu"
    assert cfg.seed == 7


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("foo.bar=1", "'foo.bar'"),
        ("eval.kk=1", "'eval.kk'"),
        ("eval.k=0", "'eval.k'"),
        ("eval.k=abc", "'eval.k'"),
        ("eval.top_p=1.5", "'eval.top_p'"),
        ("rollout.engine=nope", "valid: hf"),
        ("eval.k.x=1", "'eval.k.x'"),
        ("bootstrap.model.num_attention_heads=3", "num_attention_heads"),
        ("eval.k", "key=value"),
    ],
)
def test_bad_overrides_are_rejected_with_one_line(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config("tiny", [override])
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_profile_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("eval:\n  k: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("eval:\n  kk: 3\n")
    with pytest.raises(ConfigError, match="'eval.kk'"):
        load_config(str(unknown))


def test_unknown_reasoning_gym_task_is_rejected():
    from suites import check_suites

    cfg = load_config("tiny", ["suites.reasoning_gym.tasks=[{name: chain_summ}]"])  # names are the suites' to check
    with pytest.raises(ConfigError, match="unknown reasoning-gym task 'chain_summ'"):
        check_suites(cfg.suites)


def test_cli_unknown_task_name_exits_2_before_writing(tmp_path):
    out = tmp_path / "run"
    done = _cli("train", "prorl", "--profile", "tiny", "--out", str(out), "suites.math.tasks=[{name: calculus}]")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "suites.math.tasks[0].name" in lines[0] and "'calculus'" in lines[0]
    assert not out.exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_bad_override_exits_2_naming_the_key(tmp_path):
    done = _cli("eval", str(tmp_path), "--profile", "smoke", "foo.bar=1")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "foo.bar" in lines[0]


def test_cli_missing_checkpoint_exits_2_with_one_line():
    done = _cli("eval", "does/not/exist", "--profile", "smoke")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "does/not/exist" in lines[0]


def test_cli_unknown_suite_exits_2(tmp_path):
    done = _cli("eval", str(tmp_path), "--profile", "smoke", "--suites", "poetry")
    assert done.returncode == 2 and "poetry" in done.stderr


def test_procedural_suites_must_share_one_heldout_fraction():
    """A problem two suites ask must land in one split: the split boundary is the fraction."""
    with pytest.raises(ConfigError, match="share one heldout_fraction.*suites.math.heldout_fraction=0.5"):
        load_config("tiny", ["suites.math.heldout_fraction=0.5"])
    load_config("tiny", ["suites.math.heldout_fraction=0.5", "suites.enabled=[math]"])  # alone it is fine
    load_config("tiny", [f"suites.{s}.heldout_fraction=0.4" for s in ("math", "code", "reasoning_gym")])


def test_every_user_error_derives_from_the_one_base_the_cli_catches():
    from harness.checkpoint import CheckpointError
    from harness.config import UserError
    from harness.config.errors import ConfigError as FromErrors
    from harness.report import ReportError
    from suites.jsonl import DatasetError

    assert FromErrors is ConfigError
    for error in (ConfigError, CheckpointError, DatasetError, ReportError):
        assert issubclass(error, UserError), error


def test_the_errors_module_imports_nothing_of_the_project():
    import ast

    import harness.config.errors as errors

    tree = ast.parse(open(errors.__file__).read())
    imported = [n.module if isinstance(n, ast.ImportFrom) else a.name
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in (n.names if isinstance(n, ast.Import) else [None])]
    assert not [m for m in imported if m and m.split(".")[0] in ("harness", "suites", "trainers", "results")]


def test_vllm_engine_without_vllm_is_one_line_exit_2(tmp_path):
    from harness.rollout.vllm import vllm_installed

    if vllm_installed():
        pytest.skip("vLLM is installed here (tox -e vllm)")
    out = tmp_path / "run"
    for args in (["eval", "base", "--profile", "tiny", "rollout.engine=vllm"],
                 ["train", "prorl", "--profile", "smoke", "--out", str(out), "rollout.engine=vllm"]):
        done = _cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert "'rollout.engine': 'vllm' needs vLLM" in lines[0] and 'pip install "rollout-scaling-harness[vllm]"' in lines[0]
    assert not out.exists()
