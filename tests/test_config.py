"""The agent's config is validated at start: bad files exit 2 with the key named."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from common.configfile import ConfigError
from edge_agent.config import load
from tests.conftest import REPO, run_zastava

GOOD = """
checkpoint_id = "CP-1"
[storage]
dir = "state"
[[lanes]]
id = "lane1"
source = "spool:///tmp/zastava-spool"
control = "socket://127.0.0.1:7001"
[[receivers]]
id = "rx1"
source = "rtltcp://127.0.0.1:1234"
center_hz = 433.92e6
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "zastava.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_good_config_loads_and_resolves_relative_paths(tmp_path):
    cfg = load(write(tmp_path, GOOD))
    assert cfg.checkpoint_id == "CP-1"
    assert cfg.storage.dir == tmp_path / "state"
    assert cfg.lanes[0].source.startswith("spool://")
    assert cfg.receivers[0].center_hz == 433.92e6
    assert cfg.console.bind.startswith("127.0.0.1:")  # localhost unless configured


def test_example_config_in_repo_is_valid(tmp_path):
    text = (REPO / "zastava.example.toml").read_text().replace('"/var/lib/zastava"', f'"{tmp_path}/state"')
    cfg = load(write(tmp_path, text))
    assert cfg.lanes and cfg.receivers


@pytest.mark.parametrize(
    "patch, key, problem",
    [
        (GOOD + "\nbogus = 1\n", "bogus", "unknown key"),
        (GOOD.replace('id = "lane1"', 'id = "lane1"\nspeed = 3'), "lanes[0].speed", "unknown key"),
        (GOOD.replace("center_hz = 433.92e6", 'center_hz = "fast"'), "receivers[0].center_hz", "number"),
        (GOOD.replace('"rtltcp://127.0.0.1:1234"', '"gopher://x"'), "receivers[0].source", "no iq driver"),
        (GOOD.replace('zastava-spool"', 'zastava-spool?after=shred"'), "lanes[0].source", "one of move, delete"),
        (GOOD.replace('zastava-spool"', 'zastava-spool?done_days=-1"'), "lanes[0].source", "more than 0"),
        (GOOD.replace('"spool:///tmp/zastava-spool"', '"dicos-scp://0.0.0.0:11112?ae=AN_AE_TITLE_TOO_LONG"'),
         "lanes[0].source", "ae must be 1-16"),
        (GOOD.replace('"spool:///tmp/zastava-spool"', '"dicos-scp://127.0.0.1:11112?aet=X"'), "lanes[0].source",
         "unknown dicos-scp option"),
        (GOOD.replace('checkpoint_id = "CP-1"', ""), "checkpoint_id", "missing key"),
        (GOOD + '\n[central]\nendpoints=["tcp://127.0.0.1:7100"]\nserver_public_key="nope.key"\nsecret_key="no.key_secret"\n',
         "central.server_public_key", "file not found"),
        (GOOD + '\n[xray_detector]\nmodel = "missing.onnx"\n', "xray_detector.model", "file not found"),
        (GOOD.replace('dir = "state"', 'dir = "zastava.toml/sub"'), "storage.dir", "cannot be created"),
    ],
)
def test_bad_config_names_the_key(tmp_path, patch, key, problem):
    p = write(tmp_path, patch)
    with pytest.raises(ConfigError) as ei:
        load(p)
    text = "\n".join(ei.value.problems)
    assert key in text and problem in text.lower(), text
    # and the CLI refuses it with exit code 2, naming the key on stderr
    r = run_zastava("check-config", str(p))
    assert r.returncode == 2, r.stderr
    assert key in r.stderr


def test_check_config_accepts_good_file(tmp_path):
    r = run_zastava("check-config", str(write(tmp_path, GOOD)))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_unreadable_and_non_toml_files_exit_2(tmp_path):
    r = run_zastava("check-config", str(tmp_path / "absent.toml"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("checkpoint_id = \n")
    r = run_zastava("check-config", str(bad))
    assert r.returncode == 2 and "not valid TOML" in r.stderr


def test_a_model_that_does_not_fit_its_layout_is_refused_like_a_bad_key(tmp_path):
    """check-config loads the X-ray model the lanes will run: a YOLO export configured with the
    wrong class count, or thresholds for a class the model lacks, exit 2 naming the key, as the
    agent does at start, instead of a traceback when the first lane starts."""
    from tests.test_xray_detector_decoders import constant_model, yolo_tensor

    model = constant_model(tmp_path / "own.onnx", yolo_tensor([], nc=3))
    base = GOOD + f'\n[xray_detector]\nmodel = "{model}"\nlayout = "yolo"\n'
    p = write(tmp_path, base + 'class_names = ["gun", "knife", "drugs"]\n')
    r = run_zastava("check-config", str(p))
    assert r.returncode == 0, r.stderr
    for extra, key, why in (('class_names = ["gun", "knife"]\n', "xray_detector.model", "3 classes but 2 class names"),
                            ('class_names = ["gun", "knife", "drugs"]\nthresholds = { cash = 0.3 }\n',
                             "xray_detector.thresholds", "unknown classes")):
        p = write(tmp_path, base + extra)
        r = run_zastava("check-config", str(p))
        assert r.returncode == 2 and key in r.stderr and why in r.stderr and "Traceback" not in r.stderr, r.stderr
        # the agent itself refuses it the same way at start
        r = run_zastava("agent", "--config", str(p), timeout=60)
        assert r.returncode == 2 and key in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_threat_categories_are_dicos_terms_for_the_models_own_classes(tmp_path):
    """xray_detector.threat_categories: a word that is not a DICOS category, or a class the model
    does not have, is refused naming the key; the right mapping passes check-config."""
    from tests.test_xray_detector_decoders import constant_model, yolo_tensor

    model = constant_model(tmp_path / "own.onnx", yolo_tensor([], nc=2))
    base = GOOD + f'\n[xray_detector]\nmodel = "{model}"\nlayout = "yolo"\nclass_names = ["knife", "pills"]\n'
    ok = write(tmp_path, base + 'threat_categories = { knife = "PI", pills = "PHARMACEUTICAL" }\n')
    r = run_zastava("check-config", str(ok))
    assert r.returncode == 0, r.stderr
    for extra, why in (('threat_categories = { knife = "WEAPONS" }\n', "PI"),
                       ('threat_categories = { gun = "PI" }\n', "not the model's")):
        p = write(tmp_path, base + extra)
        r = run_zastava("check-config", str(p))
        assert r.returncode == 2 and "xray_detector.threat_categories" in r.stderr and why in r.stderr, r.stderr
