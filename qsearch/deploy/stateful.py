"""A recurrent policy's C checked step by step against the NumPy engine, the state carried on both sides.

The observations are streams cut into episodes: the state is reset at each episode's start and carried
from step to step, as a control loop does. The NumPy engine runs every episode with its own state
(IntegerModel.run_int), the C runs the same rows through deploy/c/step_row.h (the host harness, or
mcu_harness.c on an emulated core: qsearch/deploy/mcu.py), and every step's integers are compared: the
input x, the output o, the Q1.15 action, the new state h, and the float action of qpolicy_step. One
differing rounding would carry on through the state, so the first differing step is the one named.
"""
from __future__ import annotations

import dataclasses
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qsearch.errors import QsearchError
from qsearch.quant.integer import LUT_ONE, IntegerModel

EPISODE_STEPS = 100  # steps per verification episode: the state is reset this often
PERSISTENCE = 0.9  # a random stream's correlation from one step to the next, as a sensor's


@dataclass(frozen=True)
class Streams:
    """What a verification runs: `checks` (mcu.Checks: random observations, then the special rows) as
    consecutive steps, an episode starting wherever `starts` is true."""

    checks: object  # mcu.Checks
    starts: np.ndarray  # (steps,) bool; the first is true

    @property
    def obs(self) -> np.ndarray:
        return self.checks.obs

    @property
    def episodes(self) -> int:
        return int(self.starts.sum())

    def describe(self) -> str:
        return (f"{self.checks.describe()}, as {self.episodes:,} episodes of up to {EPISODE_STEPS} steps with the "
                "state carried")


def stream_observations(model: IntegerModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """Raw float32 observations that drift as a sensor's do: per entry a stationary random walk around
    the normalization's mean (1.5 of its standard deviations, mcu.random_observations' spread), so the
    state sees inputs that persist as well as ones that change."""
    noise = rng.normal(0, 1.5 * np.sqrt(1 - PERSISTENCE**2), (n, model.obs_dim))
    y = np.empty((n, model.obs_dim))
    prev = rng.normal(0, 1.5, model.obs_dim)
    for t in range(n):
        prev = y[t] = PERSISTENCE * prev + noise[t]
    norm = y.astype(np.float32)
    return (norm * model.obs_norm.std.astype(np.float32) + model.obs_norm.mean.astype(np.float32)).astype(np.float32)


def verification_streams(model: IntegerModel, n: int = 10_000, seed: int = 0) -> Streams:
    """`n` steps of random streams, then the special rows of a stateless verification (rounding ties
    and their neighbours, infinities, NaN, far out of range: mcu.verification_observations), each part
    cut into episodes of EPISODE_STEPS steps."""
    from qsearch.deploy.mcu import verification_observations

    special = verification_observations(model, 0, seed)  # the special rows, the same whatever n
    random = stream_observations(model, n, np.random.default_rng(seed))
    starts = np.concatenate([np.arange(n) % EPISODE_STEPS == 0, np.arange(len(special.obs)) % EPISODE_STEPS == 0])
    checks = dataclasses.replace(special, obs=np.concatenate([random, special.obs]), random=n)
    return Streams(checks, starts)


def engine_steps(model: IntegerModel, obs: np.ndarray, starts: np.ndarray) -> dict[str, np.ndarray]:
    """The NumPy engine over the rows, each episode from the initial state with its own: x, o, the Q1.15
    action a and the new state h per row. The episodes run side by side, one step at a time."""
    if not starts[0]:
        raise ValueError("the first row must start an episode")
    with np.errstate(over="ignore"):  # the largest float32 values overflow to infinity, which saturates
        x = model.quantize_obs(obs)
    begin = np.flatnonzero(starts)
    end = np.append(begin[1:], len(obs))
    o = np.empty((len(obs), model.act_dim), np.int64)
    h = np.empty((len(obs), model.encoder.width), np.int64)
    state = model.initial_state(len(begin))
    for t in range(int((end - begin).max())):
        live = np.flatnonzero(begin + t < end)
        rows = begin[live] + t
        outs = model.run_int(x[rows], state[live])
        state[live] = model.next_state(outs)
        o[rows], h[rows] = outs[-1], state[live]
    return {"x": x, "o": o, "a": model.tanh_lut[o - model.layers[-1].out_min], "h": h}


def row_bytes(model: IntegerModel) -> int:
    """step_row.h's STEP_ROW_BYTES."""
    d, a = model.obs_dim, model.act_dim
    return d + a + 2 * a + 4 * a + model.encoder.width + 1


def parse_rows(model: IntegerModel, raw: np.ndarray) -> dict[str, np.ndarray]:
    """step_row.h's rows (uint8, (steps, row_bytes)) -> x, o, a, action, h, agree."""
    d, a, w = model.obs_dim, model.act_dim, model.encoder.width
    cut = np.cumsum([0, d, a, 2 * a, 4 * a, w, 1])
    part = [raw[:, cut[i]:cut[i + 1]].copy() for i in range(len(cut) - 1)]
    return {"x": part[0].view(np.int8), "o": part[1].view(np.int8), "a": part[2].view("<i2"),
            "action": part[3].view("<f4"), "h": part[4].view(np.int8), "agree": part[5][:, 0] == 1}


def compare(model: IntegerModel, action_scale, action_bias, obs: np.ndarray, starts: np.ndarray, got: dict,
            where: str) -> None:
    """One line naming the first step whose integers (or float action) differ from the NumPy engine's,
    or at which the three stateful entry points left different states."""
    want = engine_steps(model, obs, starts)
    scale, bias = np.asarray(action_scale, np.float32), np.asarray(action_bias, np.float32)
    action = (want["a"].astype(np.float32) / np.float32(LUT_ONE)) * scale + bias
    # a compiler may fuse qpolicy_action_float's multiply and add (one rounding instead of two)
    tolerance = 4 * np.finfo(np.float32).eps * (np.abs(scale) + np.abs(bias))
    bad_int = np.zeros(len(obs), bool)
    for k in ("x", "o", "a", "h"):
        bad_int |= np.any(got[k] != want[k], axis=1)
    bad = bad_int | ~got["agree"] | np.any(~(np.abs(got["action"] - action) <= tolerance), axis=1)
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    episode = int(np.count_nonzero(starts[:i + 1]))
    step = i - int(np.flatnonzero(starts[:i + 1])[-1])
    if bad_int[i]:
        what = (f"C gives x {got['x'][i].tolist()} o {got['o'][i].tolist()} h {got['h'][i].tolist()}, NumPy x "
                f"{want['x'][i].tolist()} o {want['o'][i].tolist()} h {want['h'][i].tolist()}")
    elif not got["agree"][i]:
        what = "qpolicy_step_run, qpolicy_step_q15 and qpolicy_step left different states"
    else:
        what = f"qpolicy_step gives the action {got['action'][i].tolist()}, NumPy {action[i].tolist()}"
    raise QsearchError(f"{where} differs from the NumPy engine at {int(bad.sum())} of {len(bad)} steps; first at step "
                       f"{step} of episode {episode} (row {i}, observation {obs[i].tolist()}): {what}")


def rows_in(obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The harnesses' input: per step the episode-start flag, then the observation, as float32."""
    return np.column_stack([np.asarray(starts, np.float32), obs]).astype(np.float32)


def host_rows(model: IntegerModel, exe: Path, obs: np.ndarray, starts: np.ndarray) -> dict[str, np.ndarray]:
    """The host harness (c_export.compile_harness) over the steps: parse_rows of its output."""
    p = subprocess.run([str(exe), "steps"], input=rows_in(obs, starts).tobytes(), capture_output=True, check=True)
    return parse_rows(model, np.frombuffer(p.stdout, np.uint8).reshape(len(obs), row_bytes(model)))


def core_rows(model: IntegerModel, core, obs: np.ndarray, starts: np.ndarray) -> dict[str, np.ndarray]:
    """The same on an emulated core (mcu.Core), the state carried in the core's memory."""
    return parse_rows(model, core.steps(rows_in(obs, starts), row_bytes(model)))


def verify_host(model: IntegerModel, action_scale, action_bias, src: Path, work: Path, streams: Streams) -> None:
    from qsearch.deploy.c_export import compile_harness

    rows = host_rows(model, compile_harness(src, work / "harness"), streams.obs, streams.starts)
    compare(model, action_scale, action_bias, streams.obs, streams.starts, rows, "the host build")


def verify(model: IntegerModel, action_scale, action_bias, core, streams: Streams) -> None:
    rows = core_rows(model, core, streams.obs, streams.starts)
    compare(model, action_scale, action_bias, streams.obs, streams.starts, rows, f"the {core.t.name} build (emulated)")
