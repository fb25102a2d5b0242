"""meterline.faults: the grammar of METERLINE_FAULTS, in-process arming, and a real SIGKILL at a point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from meterline import faults


def test_parse_reads_actions_and_hit_numbers() -> None:
    assert faults.parse("a.b=kill@3, c=on,d=raise") == {"a.b": ("kill", 3), "c": ("on", None), "d": ("raise", None)}
    assert faults.parse("") == {}
    for bad in ("a", "a=explode", "a=kill@x", "a=kill@0", "=kill"):
        with pytest.raises(ValueError, match="METERLINE_FAULTS"):
            faults.parse(bad)


def test_unarmed_points_do_nothing_and_switches_are_off() -> None:
    faults.point("nowhere", x=1)
    assert not faults.switch("nowhere")
    assert faults.hits("nowhere") == 0


def test_arm_runs_a_hook_on_the_chosen_hit_only_and_disarms() -> None:
    seen: list[dict[str, object]] = []
    with faults.arm("p", lambda **ctx: seen.append(ctx), at=2):
        for i in range(4):
            faults.point("p", i=i)
        assert faults.hits("p") == 4
    assert seen == [{"i": 1}]
    faults.point("p", i=9)
    assert faults.hits("p") == 0


def test_raise_and_switch_in_process() -> None:
    with faults.arm("q", "raise"), pytest.raises(faults.FaultInjected, match="fault point q fired: raise"):
        faults.point("q", token="t/0/0-5")
    with faults.arm("s", "on"):
        assert faults.switch("s")
    assert not faults.switch("s")


def test_env_kill_sigkills_the_process_at_the_nth_hit_after_saying_so() -> None:
    code = "from meterline import faults\nfor i in range(5):\n    print(i, flush=True)\n    faults.point('w', i=i)\n"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "METERLINE_FAULTS": "w=kill@3"},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split() == ["0", "1", "2"]
    assert "fault point w fired: kill (hit 3 i=2)" in proc.stderr
