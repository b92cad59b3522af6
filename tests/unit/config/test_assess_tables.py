"""The [assess] and [[baselines]] tables and [[groups]] baseline: defaults, values, one ConfigError per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.assess import SEVERITIES, AssessSettings, BaselineSettings
from orchestrator.config.loader import load_settings
from orchestrator.config.settings import Settings
from orchestrator.errors import ConfigError
from orchestrator.vulns.severity import SCALE
from tests.support.paths import REPO

EXAMPLE_ENV = {"VCENTER_PASSWORD": "v", "VSPHERE_GUEST_PASSWORD": "g", "PVE_TOKEN": "t", "PVE_PASSWORD": "p"}
SITE = '[providers.lab]\nkind = "libvirt"\nuri = "qemu:///system"\n'
BASELINES = """
[[baselines]]
name = "deb-prod"
os = "debian"
classification = "security"
min_severity = "important"
approve_after = "7d"
approve_kev = "immediately"
approved = ["openssl*", "tzdata=2025b-0+deb12u1"]
rejected = ["linux-image-*"]
holds = ["postgresql-15"]

[[baselines]]
name = "rhel-all"
os = "rhel"
classification = "all"
approve_kev = "1d"
"""


def load(tmp_path: Path, body: str) -> Settings:
    path = tmp_path / "patchwave.toml"
    path.write_text(SITE + body)
    return load_settings(path, environ={})


def test_no_schedule_no_baseline_and_internet_facing_exposure_by_default(tmp_path: Path) -> None:
    s = load(tmp_path, "")
    assert s.assess == AssessSettings() and s.assess.every_s == 0 and s.assess.batch_size == 500
    assert s.assess.exposure_tags == ("internet-facing",) and s.baselines == ()
    assert s.baseline_for("default", "debian") is None


def test_the_tables_are_read_and_relative_feed_paths_follow_the_config_file(tmp_path: Path) -> None:
    s = load(tmp_path, '[assess]\nfeeds = ["feeds/debian.zip", "https://x.example/kev.json", "/srv/t.json"]\n'
                       'releases = ["bookworm"]\nevery = "6h"\nrefresh_feeds = "12h"\nstale = "3d"\n'
                       'exposure_tags = ["dmz"]\nnotify_severity = "important"\nbatch_size = 100\nparallel = 4\n')  # fmt: skip
    assert s.assess == AssessSettings(
        feeds=(str(tmp_path / "feeds/debian.zip"), "https://x.example/kev.json", "/srv/t.json"),
        releases=("bookworm",), every_s=6 * 3600, refresh_feeds_s=12 * 3600, stale_s=3 * 86400,
        exposure_tags=("dmz",), notify_severity="important", batch_size=100, parallel=4,
    )  # fmt: skip


def test_baselines_are_read_and_groups_pick_one_per_os_family(tmp_path: Path) -> None:
    s = load(tmp_path, BASELINES + '[[groups]]\nname = "web"\nmatch = { names = ["web-*"] }\n'
                                   'baseline = ["deb-prod", "rhel-all"]\n'
                                   '[[groups]]\nname = "db"\nmatch = { names = ["db-*"] }\nbaseline = "deb-prod"\n')  # fmt: skip
    deb, rhel = s.baselines
    assert deb == BaselineSettings(
        name="deb-prod", os="debian", classification="security", min_severity="important",
        approve_after_s=7 * 86400, approve_kev_s=0, approved=("openssl*", "tzdata=2025b-0+deb12u1"),
        rejected=("linux-image-*",), holds=("postgresql-15",),
    )  # fmt: skip
    assert (rhel.classification, rhel.approve_kev_s, rhel.approve_after_s, rhel.min_severity) == (
        "all",
        86400,
        0,
        "",
    )
    assert s.baseline_for("web", "debian") == deb and s.baseline_for("web", "rhel") == rhel
    assert s.baseline_for("db", "rhel") is None and s.baseline_for("default", "debian") is None


def test_baselines_are_part_of_the_digest_and_assess_is_not(tmp_path: Path) -> None:
    plain = load(tmp_path, "").digest
    assert load(tmp_path, '[assess]\nevery = "6h"\nexposure_tags = ["dmz"]\n').digest == plain
    assert load(tmp_path, BASELINES).digest != plain


def test_the_config_severities_are_the_vulnerability_scale() -> None:
    assert SEVERITIES == SCALE[:-1]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('[assess]\nfeeds = ["http://x.example/kev.json"]', "assess.feeds", "plain http is refused"),
        ('[assess]\nfeeds = "x.json"', "assess.feeds", "list of strings"),
        ('[assess]\nevery = "-6h"', "assess.every", "negative"),
        ("[assess]\nbatch_size = 501", "assess.batch_size", "between 1 and 500"),
        ('[assess]\nnotify_severity = "high"', "assess.notify_severity", "unknown value"),
        ('[assess]\nevrey = "6h"', "assess.evrey", "unknown key"),
        ('[[baselines]]\nname = "b"\nos = "windows"', "baselines[0].os", "unknown value"),
        ('[[baselines]]\nname = "b"', "baselines[0].os", "is required"),
        ('[[baselines]]\nname = "b"\nos = "debian"\nclassification = "bugs"', "baselines[0].classification",
         "unknown value"),
        ('[[baselines]]\nname = "b"\nos = "debian"\nmin_severity = "high"', "baselines[0].min_severity",
         "unknown value"),
        ('[[baselines]]\nname = "b"\nos = "debian"\napprove_kev = "soon"', "baselines[0].approve_kev", ""),
        ('[[baselines]]\nname = "b"\nos = "debian"\nholds = ["pg=15"]', "baselines[0].holds", "not a package"),
        ('[[baselines]]\nname = "b"\nos = "debian"\nrejected = ["bad name"]', "baselines[0].rejected",
         "not a package"),
        ('[[baselines]]\nname = "b"\nos = "debian"\n[[baselines]]\nname = "b"\nos = "rhel"', "baselines[1].name",
         "defined twice"),
        ('[[groups]]\nname = "g"\nmatch = { names = ["x"] }\nbaseline = "nope"', "groups[0].baseline",
         "unknown baseline"),
        (('[[baselines]]\nname = "a"\nos = "debian"\n[[baselines]]\nname = "b"\nos = "debian"\n'
          '[[groups]]\nname = "g"\nmatch = { names = ["x"] }\nbaseline = ["a", "b"]'), "groups[0].baseline",
         "both for os 'debian'"),
    ],
)  # fmt: skip
def test_mistakes_name_the_field_and_the_fix(tmp_path: Path, body: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body)
    assert caught.value.field == field and words in caught.value.message and caught.value.fix


def test_the_example_config_shows_assess_and_baselines() -> None:
    s = load_settings(REPO / "config" / "patchwave.example.toml", environ=EXAMPLE_ENV)
    assert s.assess.every_s == 6 * 3600 and len(s.assess.feeds) == 3
    assert [(b.name, b.os) for b in s.baselines] == [("debian-prod", "debian"), ("rhel-prod", "rhel")]
    assert (
        s.baseline_for("databases", "rhel") == s.baselines[1] and s.baseline_for("canary", "debian") is None
    )
