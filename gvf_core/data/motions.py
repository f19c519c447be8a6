"""Random, smooth motions of procedural assets: the motion families of the data engine.

Every family is a function ``family(asset, rng, times, info=None) -> vertices [T, V, 3]``
(float64, the asset's units). ``times`` are the frame times in seconds (any T >= 1, any
frame rate); the motion is a function of ``tau = times - times[0]``, so it does not depend
on how densely it is sampled. Each call draws its own parameters from ``rng`` and, when
``info`` is a dict, records them there (JSON-able). :func:`random_motion` picks a family.

Guarantees (checked on every draw; a failing draw is re-drawn with the same generator):
- frame 0 is the rest mesh exactly (all time curves vanish at ``tau = 0``);
- finite values; the mesh moves: mean vertex displacement / bbox diagonal
  (the motion-magnitude label) >= :data:`MIN_MAGNITUDE`;
- no collapse: every face keeps >= :data:`MIN_AREA_RATIO` of its rest area;
- smooth in time: vertex acceleration <= :data:`MAX_ACCEL` bbox diagonals / s^2 on the
  given frames (so |x[t+1] - 2 x[t] + x[t-1]| <= MAX_ACCEL * diag * dt^2). Time curves are
  sines, smootherstep ramps and cubic splines of random keyframes, and amplitudes are
  capped from each curve's own peak second derivative, so re-draws are rare.

Amplitudes are relative to the rest bounding-box diagonal, frequencies are in Hz (cycles
per second of clip), and a random envelope (delayed start, early stop) varies how long
each motion lasts. docs/data.md lists the parameter ranges.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from gvf_core.data.jsonable import to_jsonable
from gvf_core.data.shapes import ProceduralAsset
from gvf_core.data.skeleton import axis_angle_to_matrix, linear_blend_skinning

MIN_MAGNITUDE = 0.005
"""Smallest accepted mean displacement / bbox diagonal."""
MIN_AREA_RATIO = 0.01
"""Smallest accepted posed / rest face area (faces with non-negligible rest area)."""
MAX_ACCEL = 50.0
"""Largest accepted vertex acceleration, bbox diagonals per second squared."""
COMPONENT_ACCEL = 20.0
"""Acceleration budget per motion component (several components add up)."""
MAX_TRIES = 12

FAMILY_PROBS: dict[str, float] = {
    "rigid": 0.12,
    "bend": 0.08,
    "twist": 0.06,
    "taper": 0.05,
    "squash_stretch": 0.07,
    "wave": 0.07,
    "random_field": 0.09,
    "articulated": 0.28,
    "combo": 0.18,
}
"""Default family probabilities (articulated is dropped and the rest renormalized for
assets without a skeleton)."""

Op = Callable[[np.ndarray], np.ndarray]  # [T, V, 3] -> [T, V, 3]


# =========================================================================== context
class _Ctx:
    """Rest-pose constants shared by the draws of one motion."""

    def __init__(self, asset: ProceduralAsset, times: np.ndarray):
        self.asset = asset
        self.rest = asset.mesh.vertices  # [V, 3]
        self.faces = asset.mesh.faces
        self.tau = times - times[0]  # [T]
        self.D = float(self.tau[-1])
        lo, hi = self.rest.min(0), self.rest.max(0)
        self.center = 0.5 * (lo + hi)
        self.lo, self.hi = lo, hi
        self.diag = float(np.linalg.norm(hi - lo))
        c = self.rest - self.rest.mean(0)
        _, sv, vt = np.linalg.svd(c, full_matrices=False)
        self.axes = vt  # rows: principal axes, longest first
        self.fine = np.linspace(0.0, self.D, max(int(self.D * 240), 16) + 1)  # for accelerations

    def peak_accel(self, fn: Callable) -> float:
        """max |f''| of a scalar time curve on [0, D] (finite differences at 240 Hz)."""
        v = np.asarray(fn(self.fine), dtype=np.float64)
        dt = self.fine[1] - self.fine[0]
        if len(v) < 3:
            return 0.0
        return float(np.abs(v[2:] - 2 * v[1:-1] + v[:-2]).max(initial=0.0)) / dt**2

    def cap(self, amp: float, fn: Callable, lever: float, gain: float = 1.0) -> float:
        """``amp`` reduced so that amp * lever * |fn''| <= gain * COMPONENT_ACCEL (lever in diagonals)."""
        a2 = self.peak_accel(fn) * max(lever, 1e-6)
        return float(min(amp, gain * COMPONENT_ACCEL / a2)) if a2 > 0 else float(amp)

    def pick_axis(self, rng) -> np.ndarray:
        """A deformation axis: the longest principal axis, up (+Z), or another principal axis."""
        r = rng.random()
        if r < 0.45:
            return self.axes[0].copy()
        if r < 0.75:
            return np.array([0.0, 0.0, 1.0])
        return self.axes[int(rng.integers(1, 3))].copy()

    def coords(self, X: np.ndarray, u: np.ndarray):
        """Coordinates along ``u`` of [T, V, 3] points relative to the rest centre."""
        return (X - self.center) @ u


def _loguniform(rng, a: float, b: float) -> float:
    return float(math.exp(rng.uniform(math.log(a), math.log(b))))


def _perp(rng, u: np.ndarray) -> np.ndarray:
    """A random unit vector perpendicular to ``u``."""
    v = rng.normal(size=3)
    v -= np.dot(v, u) * u
    n = np.linalg.norm(v)
    if n < 1e-9:
        return _perp(rng, u)
    return v / n


def _smootherstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def _smootherstep_integral(x):
    """Integral of smootherstep from 0 to x (x >= 0 continues linearly past 1)."""
    xc = np.clip(x, 0.0, 1.0)
    return xc**6 - 3 * xc**5 + 2.5 * xc**4 + np.maximum(x - 1.0, 0.0)


# =========================================================================== time curves
def _envelope(rng, D: float, ramp_in: bool) -> tuple[Callable, dict]:
    """Random activity window: optional delayed start (always when ``ramp_in``), optional early stop."""
    p: dict = {}
    delayed = ramp_in or rng.random() < 0.3
    if delayed:
        p["start"] = float(rng.uniform(0.0, 0.3 * D)) if rng.random() < 0.5 else 0.0
        p["ramp_in"] = float(rng.uniform(0.2, 0.6))
    if rng.random() < 0.25 and D > 0.5:
        p["stop"] = float(rng.uniform(0.5 * D, 0.9 * D))
        p["ramp_out"] = float(rng.uniform(0.25, 0.6))

    def env(tau):
        e = np.ones_like(np.asarray(tau, dtype=np.float64))
        if "ramp_in" in p:
            e = e * _smootherstep((tau - p["start"]) / p["ramp_in"])
        if "stop" in p:
            e = e * (1.0 - _smootherstep((tau - p["stop"]) / p["ramp_out"]))
        return e

    return env, p


def _curve(rng, D: float, fmin: float = 0.3, fmax: float = 2.0, kinds=("osc", "keys", "ramp"), probs=(0.5, 0.3, 0.2)) -> tuple[Callable, dict]:
    """A smooth scalar time curve c(tau) with c(0) = 0 and |c| <~ 1, times a random envelope."""
    kind = str(rng.choice(kinds, p=np.asarray(probs) / np.sum(probs)))
    p: dict = {"kind": kind}
    if kind == "osc":
        f = _loguniform(rng, fmin, fmax)
        phi = float(rng.uniform(0, 2 * math.pi))
        p.update(freq=f, phase=phi)
        norm = 1.0 + abs(math.sin(phi))

        def g(tau):
            return (np.sin(2 * math.pi * f * tau + phi) - math.sin(phi)) / norm

    elif kind == "keys":
        from scipy.interpolate import CubicSpline

        K = int(rng.integers(1, 5))
        kt = np.linspace(0.0, max(D, 1e-3), K + 1)
        kv = np.concatenate([[0.0], rng.uniform(-1, 1, K)])
        p.update(key_times=kt.tolist(), key_values=kv.tolist())
        spline = CubicSpline(kt, kv, bc_type="natural") if K >= 2 else None

        def g(tau):
            if spline is None:
                return kv[1] * np.asarray(tau) / kt[1]
            return spline(np.clip(tau, 0.0, kt[-1]))

    else:
        a = float(rng.uniform(0.0, 0.5 * D))
        w = float(rng.uniform(0.25, 0.9))
        sgn = float(rng.choice([-1.0, 1.0]))
        p.update(start=a, duration=w, sign=sgn)

        def g(tau):
            return sgn * _smootherstep((np.asarray(tau) - a) / w)

    env, pe = _envelope(rng, D, ramp_in=False)
    if pe:
        p["envelope"] = pe
    return (lambda tau: env(tau) * g(tau)), p


def _osc_curve(f: float, phase: float, env: Callable, offset: float = 0.0) -> Callable:
    """env(tau) * sin(2 pi f tau + phase) (+ offset inside the envelope)."""
    return lambda tau: env(tau) * (np.sin(2 * math.pi * f * np.asarray(tau) + phase) + offset)


# =========================================================================== deformation ops
def _rotate(X: np.ndarray, axis: np.ndarray, angle: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """Rotate [T, V, 3] points about ``axis`` through ``pivot`` by per-frame ``angle`` [T]."""
    R = axis_angle_to_matrix(angle[:, None] * axis[None])  # [T, 3, 3]
    return np.einsum("tab,tvb->tva", R, X - pivot) + pivot


def _draw_rigid(ctx: _Ctx, rng, gain: float) -> tuple[Op, dict]:
    pivot_kind = str(rng.choice(["center", "bottom", "vertex"], p=[0.5, 0.3, 0.2]))
    if pivot_kind == "center":
        pivot = ctx.center.copy()
    elif pivot_kind == "bottom":
        pivot = np.array([ctx.center[0], ctx.center[1], ctx.lo[2]])
    else:
        pivot = ctx.rest[int(rng.integers(len(ctx.rest)))].copy()
    lever = float(np.linalg.norm(ctx.rest - pivot, axis=1).max()) / ctx.diag
    rots = []
    for _ in range(1 if rng.random() < 0.7 else 2):
        axis = np.array([0.0, 0.0, 1.0]) if rng.random() < 0.4 else _unit(rng.normal(size=3))
        fn, pc = _curve(rng, ctx.D)
        amp = ctx.cap(gain * _loguniform(rng, 0.05, 2.0), fn, lever)
        pc.update(axis=axis.tolist(), amplitude_rad=amp)
        rots.append((axis, fn, amp, pc))
    trans = []
    if rng.random() < 0.75:
        scale = gain * _loguniform(rng, 0.01, 0.8)
        for k in range(3):
            fn, pc = _curve(rng, ctx.D)
            amp = ctx.cap(scale * float(rng.uniform(0.3, 1.0)), fn, 1.0)
            pc["amplitude"] = amp
            trans.append((k, fn, amp, pc))
    params = {"pivot": pivot_kind, "rotations": [r[3] for r in rots], "translation": [t[3] for t in trans]}

    def op(X):
        for axis, fn, amp, _ in rots:
            X = _rotate(X, axis, amp * fn(ctx.tau), pivot)
        if trans:
            shift = np.zeros((len(ctx.tau), 3))
            for k, fn, amp, _ in trans:
                shift[:, k] = amp * ctx.diag * fn(ctx.tau)
            X = X + shift[:, None]
        return X

    return op, params


def _unit(v):
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _axis_frame(ctx: _Ctx, rng):
    """(axis u, perpendicular n, pivot coordinate s0, length L) for a deformation."""
    u = ctx.pick_axis(rng)
    n = _perp(rng, u)
    s = ctx.coords(ctx.rest, u)
    base = str(rng.choice(["min", "max", "center"], p=[0.45, 0.2, 0.35]))
    s0 = {"min": float(s.min()), "max": float(s.max()), "center": 0.0}[base]
    L = max(float(s.max() - s.min()), 1e-6 * ctx.diag)
    return u, n, s0, L, base


def _draw_bend(ctx: _Ctx, rng, gain: float) -> tuple[Op, dict]:
    u, n, s0, L, base = _axis_frame(ctx, rng)
    d = ctx.coords(ctx.rest, n)
    sig = ctx.coords(ctx.rest, u) - s0
    reach = float(np.abs(sig).max())
    fold = 0.8 * L / max(float(np.abs(d).max()), 1e-9)  # |k| * max|d| <= 0.8 keeps the inside from folding
    fn, pc = _curve(rng, ctx.D)
    amp = min(gain * _loguniform(rng, 0.1, 2.5), fold)
    amp = ctx.cap(amp, fn, reach / ctx.diag)
    pc.update(axis=u.tolist(), direction=n.tolist(), base=base, angle_rad=amp)

    def op(X):
        k = (amp * fn(ctx.tau) / L)[:, None]  # [T, 1] curvature
        s = ctx.coords(X, u) - s0
        dd = ctx.coords(X, n)
        x = k * s
        new_s = s0 + s * np.sinc(x / math.pi) - dd * np.sin(x)
        new_d = s * np.sin(0.5 * x) * np.sinc(x / (2 * math.pi)) + dd * np.cos(x)
        Xc = X - ctx.center
        rest = Xc - (s + s0)[..., None] * u - dd[..., None] * n
        return ctx.center + rest + new_s[..., None] * u + new_d[..., None] * n

    return op, pc


def _draw_twist(ctx: _Ctx, rng, gain: float) -> tuple[Op, dict]:
    u, _, s0, L, base = _axis_frame(ctx, rng)
    Xc = ctx.rest - ctx.center
    radial = float(np.linalg.norm(Xc - np.outer(Xc @ u, u), axis=1).max())
    fn, pc = _curve(rng, ctx.D)
    amp = ctx.cap(gain * _loguniform(rng, 0.1, 3.0), fn, radial / ctx.diag)
    pc.update(axis=u.tolist(), base=base, angle_rad=amp)

    def op(X):
        s = ctx.coords(X, u) - s0  # [T, V]
        ang = amp * fn(ctx.tau)[:, None] * s / L
        Xc = X - ctx.center
        along = (Xc @ u)[..., None] * u
        perp = Xc - along
        cross = np.cross(u, perp)
        return ctx.center + along + perp * np.cos(ang)[..., None] + cross * np.sin(ang)[..., None]

    return op, pc


def _draw_taper(ctx: _Ctx, rng, gain: float) -> tuple[Op, dict]:
    u, _, s0, L, base = _axis_frame(ctx, rng)
    sig = ctx.coords(ctx.rest, u) - s0
    span = float(np.abs(sig).max()) / L  # <= 1
    Xc = ctx.rest - ctx.center
    radial = float(np.linalg.norm(Xc - np.outer(Xc @ u, u), axis=1).max())
    fn, pc = _curve(rng, ctx.D)
    amp = min(gain * _loguniform(rng, 0.05, 1.2), 0.65 / max(span, 1e-6))  # scale factor stays >= 0.35
    amp = ctx.cap(amp, fn, radial / ctx.diag)
    pc.update(axis=u.tolist(), base=base, amount=amp)

    def op(X):
        s = ctx.coords(X, u) - s0
        f = 1.0 + amp * fn(ctx.tau)[:, None] * s / L
        Xc = X - ctx.center
        along = (Xc @ u)[..., None] * u
        return ctx.center + along + (Xc - along) * f[..., None]

    return op, pc


def _draw_squash(ctx: _Ctx, rng, gain: float) -> tuple[Op, dict]:
    u = np.array([0.0, 0.0, 1.0]) if rng.random() < 0.6 else ctx.axes[int(rng.integers(0, 3))].copy()
    s = ctx.coords(ctx.rest, u)
    base = str(rng.choice(["min", "center"], p=[0.6, 0.4]))
    s0 = float(s.min()) if base == "min" else 0.0
    fn, pc = _curve(rng, ctx.D)
    amp = ctx.cap(gain * _loguniform(rng, 0.03, 0.6), fn, 1.0)
    pc.update(axis=u.tolist(), base=base, log_stretch=amp)

    def op(X):
        lam = np.exp(amp * fn(ctx.tau))[:, None, None]  # [T, 1, 1] stretch along u
        Xc = X - ctx.center
        along = (Xc @ u)[..., None] * u
        perp = Xc - along
        o = s0 * u
        return ctx.center + o + (along - o) * lam + perp / np.sqrt(lam)

    return op, pc


def _draw_wave(ctx: _Ctx, rng, gain: float) -> tuple[Op, dict]:
    u, n, s0, L, base = _axis_frame(ctx, rng)
    waves = float(rng.uniform(0.3, 2.0))
    kappa = 2 * math.pi * waves / L
    f = _loguniform(rng, 0.3, 2.0) * float(rng.choice([-1.0, 1.0]))
    phi = float(rng.uniform(0, 2 * math.pi))
    growth = float(rng.choice([0.0, 1.0, 2.0], p=[0.5, 0.3, 0.2]))  # amplitude ~ (|s - s0| / L)^growth
    env, pe = _envelope(rng, ctx.D, ramp_in=rng.random() < 0.5)
    amp = gain * _loguniform(rng, 0.01, 0.2) * ctx.diag  # in asset units
    amp = min(amp, 0.8 / kappa / (1.0 + growth))  # peak slope of the displacement along u <= ~0.8
    fn = _osc_curve(abs(f), phi, env)
    amp = ctx.cap(amp / ctx.diag, fn, 2.0) * ctx.diag
    params = {"axis": u.tolist(), "direction": n.tolist(), "base": base, "waves": waves, "freq": f, "phase": phi, "growth": growth, "amplitude": amp / ctx.diag, "envelope": pe}

    def op(X):
        s = ctx.coords(X, u) - s0
        g = (np.abs(s) / L) ** growth if growth > 0 else 1.0
        t = ctx.tau[:, None]
        w = np.sin(kappa * s - 2 * math.pi * f * t + phi) - np.sin(kappa * s + phi)
        disp = amp * env(ctx.tau)[:, None] * g * w
        return X + disp[..., None] * n

    return op, params


def _draw_field(ctx: _Ctx, rng, gain: float) -> tuple[Op, dict]:
    K = int(rng.integers(2, 7))
    centers = ctx.rest[rng.integers(0, len(ctx.rest), K)]
    sig = rng.uniform(0.15, 0.5, K) * ctx.diag
    ratio = gain * _loguniform(rng, 0.1, 1.5)  # amplitude / width per centre
    comps = []
    for k in range(K):
        curves = [_curve(rng, ctx.D) for _ in range(3)]
        amps = []
        for fn, pc in curves:
            a = ctx.cap(ratio * sig[k] / ctx.diag * float(rng.uniform(0.3, 1.0)), fn, 1.0)
            pc["amplitude"] = a
            amps.append(a)
        comps.append((curves, np.array(amps)))
    # fold safety: total displacement gradient sum_k |a_k| * 0.61 / sigma_k <= 0.8
    grad = sum(np.linalg.norm(a) * ctx.diag * 0.61 / s for (_, a), s in zip(comps, sig))
    shrink = min(1.0, 0.8 / max(grad, 1e-12))
    params = {"centers": centers.tolist(), "sigma": (sig / ctx.diag).tolist(), "shrink": shrink, "curves": [[c[1] for c in cs] for cs, _ in comps]}

    def op(X):
        out = X.copy()
        for k, (curves, amps) in enumerate(comps):
            phi = np.exp(-0.5 * ((X - centers[k]) ** 2).sum(-1) / sig[k] ** 2)  # [T, V]
            vec = np.stack([a * fn(ctx.tau) for (fn, _), a in zip(curves, amps)], 1) * ctx.diag * shrink  # [T, 3]
            out = out + phi[..., None] * vec[:, None]
        return out

    return op, params


# =========================================================================== articulated
def _draw_articulated(ctx: _Ctx, rng, gain: float) -> tuple[Op, dict]:
    asset = ctx.asset
    skel = asset.skeleton
    if skel is None:
        raise ValueError("articulated motion needs an asset with a skeleton")
    J = skel.num_joints
    T = len(ctx.tau)
    fwd, left, up = asset.frame[:, 0], asset.frame[:, 1], asset.frame[:, 2]
    reach = _joint_reach(asset) / ctx.diag  # [J]
    bone = skel.bone_directions()
    env, pe = _envelope(rng, ctx.D, ramp_in=True)
    rot_vecs: list[tuple[int, np.ndarray, Callable]] = []  # (joint, axis, angle curve)
    chains = skel.chains
    comps_avail = [r for r in ("leg", "wing", "tail", "neck", "spine", "stem", "branch", "antenna", "wheel", "arm_chain", "chain") if chains.get(r)]
    chosen = [c for c in comps_avail if rng.random() < 0.75]
    if not chosen and comps_avail:
        chosen = [str(rng.choice(comps_avail))]
    if "arm" in chains and ("leg" in chosen or rng.random() < 0.5):
        chosen.append("arm")
    use_pose = rng.random() < 0.35 or not chosen
    params: dict = {"components": chosen + (["pose"] if use_pose else []), "envelope": pe}
    root_shift: list[Callable] = []

    def add(j: int, axis: np.ndarray, amp: float, curve: Callable, lever_joint: int | None = None) -> float:
        lj = j if lever_joint is None else lever_joint
        a = ctx.cap(gain * amp, curve, reach[lj])
        rot_vecs.append((j, _unit(axis), (lambda tau, a=a, c=curve: a * c(tau))))
        return a

    gait_f = _loguniform(rng, 0.6, 2.0)
    leg_phase: dict[int, float] = {}
    if "leg" in chosen:
        legs = chains["leg"]
        style = "run" if gait_f > 1.3 and rng.random() < 0.6 else "walk"
        hip_amp = float(rng.uniform(0.2, 0.5) if style == "walk" else rng.uniform(0.35, 0.8))
        knee_amp = float(rng.uniform(0.2, 0.7) if style == "walk" else rng.uniform(0.4, 1.1))
        phases, gait = _gait_phases(skel, legs, fwd, left, rng)
        params["gait"] = {"style": style, "freq": gait_f, "pattern": gait, "hip_rad": hip_amp, "knee_rad": knee_amp}
        for leg, ph in zip(legs, phases):
            leg_phase[leg[0]] = ph
            side = 1.0 if np.dot(skel.positions[leg[0]] - skel.positions[0], left) >= 0 else -1.0
            w = 2 * math.pi * ph
            vertical = abs(float(np.dot(bone[leg[0]], up))) > 0.6
            if vertical:
                add(leg[0], left, hip_amp, _osc_curve(gait_f, w, env))
                if len(leg) > 1:
                    add(leg[1], left, 0.5 * knee_amp, _osc_curve(gait_f, w + math.pi / 2, env, offset=1.0), leg[0])
                if len(leg) > 2:
                    add(leg[2], left, -0.25 * knee_amp, _osc_curve(gait_f, w + math.pi / 2, env, offset=1.0), leg[0])
            else:  # sprawled (insect) leg: swing about up, lift about (bone x up)
                add(leg[0], up * side, hip_amp, _osc_curve(gait_f, w, env))
                lift = np.cross(bone[leg[0]], up)
                if np.linalg.norm(lift) > 1e-6:
                    add(leg[0], lift, 0.25 * knee_amp, _osc_curve(gait_f, w + math.pi / 2, env, offset=1.0))
        if rng.random() < 0.6:  # body bob at twice the gait frequency
            bob = float(rng.uniform(0.005, 0.03))
            c = _osc_curve(2 * gait_f, -math.pi / 2, env, offset=1.0)
            bob = ctx.cap(gain * bob, c, 1.0)
            root_shift.append(lambda tau, b=bob, c=c: np.outer(b * ctx.diag * c(tau), up))
            params["gait"]["bob"] = bob
    if "arm" in chosen:
        arm_amp = float(rng.uniform(0.15, 0.6))
        elbow = float(rng.uniform(0.1, 0.7))
        f = gait_f if leg_phase else _loguniform(rng, 0.3, 2.0)
        for arm in chains["arm"]:
            side = 1.0 if np.dot(skel.positions[arm[0]] - skel.positions[0], left) >= 0 else -1.0
            same = [ph for j, ph in leg_phase.items() if np.dot(skel.positions[j] - skel.positions[0], left) * side > 0]
            ph = (same[0] + 0.5) if same else float(rng.uniform(0, 1))
            add(arm[0], left, -arm_amp, _osc_curve(f, 2 * math.pi * ph, env))
            if len(arm) > 1:
                add(arm[1], left, -elbow / 2.5, _osc_curve(f, 2 * math.pi * ph + math.pi / 2, env, offset=1.5), arm[0])
        params["arms"] = {"swing_rad": arm_amp, "elbow_rad": elbow, "freq": f}
    if "wing" in chosen:
        f = _loguniform(rng, 0.5, 2.5)
        amp = float(rng.uniform(0.3, 1.1))
        lag = float(rng.uniform(0.3, 1.2))
        phi = float(rng.uniform(0, 2 * math.pi))
        for wing in chains["wing"]:
            side = 1.0 if np.dot(skel.positions[wing[0]] - skel.positions[0], left) >= 0 else -1.0
            add(wing[0], fwd * side, amp, _osc_curve(f, phi, env))
            for k, j in enumerate(wing[1:], 1):
                add(j, fwd * side, 0.5 * amp, _osc_curve(f, phi - k * lag, env), wing[0])
        params["wings"] = {"freq": f, "flap_rad": amp, "lag_rad": lag}
    for role, amp_rng in (("tail", (0.1, 0.5)), ("antenna", (0.05, 0.3)), ("spine", (0.05, 0.35)), ("chain", (0.05, 0.4))):
        if role not in chosen:
            continue
        if role == "spine" and "leg" in chains:  # legged bodies: gentle flex only
            amp_rng = (0.02, 0.12)
        f = _loguniform(rng, 0.3, 2.0)
        delay = float(rng.uniform(0.2, 1.2))
        amp = float(rng.uniform(*amp_rng))
        phi = float(rng.uniform(0, 2 * math.pi))
        pitch = rng.random() < 0.4
        for chain in chains[role]:
            n = len(chain)
            for k, j in enumerate(chain):
                yaw_axis = up if abs(float(np.dot(bone[j], up))) < 0.8 else left
                if role == "chain":
                    yaw_axis = _perp(rng, bone[j])
                ramp = (0.4 + 0.6 * k / max(n - 1, 1)) if role in ("spine", "chain") else 1.0
                add(j, yaw_axis, amp * ramp / math.sqrt(n), _osc_curve(f, phi - k * delay, env), chain[0])
                if pitch:
                    pa = np.cross(bone[j], yaw_axis)
                    if np.linalg.norm(pa) > 1e-6:
                        add(j, pa, 0.5 * amp / math.sqrt(n), _osc_curve(f, phi - k * delay + 1.0, env), chain[0])
        params[role] = {"freq": f, "delay_rad": delay, "amplitude_rad": amp, "pitch": pitch}
    if "neck" in chosen:
        nod, pn = _curve(rng, ctx.D)
        turn, pt = _curve(rng, ctx.D, kinds=("keys", "ramp"), probs=(0.6, 0.4))
        nod_amp = float(rng.uniform(0.1, 0.6))
        turn_amp = float(rng.uniform(0.0, 0.8))
        for chain in chains["neck"]:
            n = len(chain)
            for j in chain:
                add(j, left, nod_amp / n, lambda tau, c=nod: env(tau) * c(tau), chain[0])
                add(j, up, turn_amp / n, lambda tau, c=turn: env(tau) * c(tau), chain[0])
        params["neck"] = {"nod_rad": nod_amp, "turn_rad": turn_amp, "nod": pn, "turn": pt}
    if "stem" in chosen or "branch" in chosen:
        f = _loguniform(rng, 0.3, 1.5)
        phi = float(rng.uniform(0, 2 * math.pi))
        az = float(rng.uniform(0, 2 * math.pi))
        sway = math.cos(az) * fwd + math.sin(az) * left
        amp = float(rng.uniform(0.1, 0.6))
        delay = float(rng.uniform(0.1, 0.6))
        if "stem" in chosen:
            for chain in chains["stem"]:
                for k, j in enumerate(chain):
                    add(j, sway, amp / len(chain), _osc_curve(f, phi - k * delay, env), chain[0])
        if "branch" in chosen:
            for chain in chains["branch"]:
                ax = _perp(rng, bone[chain[0]])
                add(chain[0], ax, float(rng.uniform(0.1, 0.5)), _osc_curve(f * float(rng.uniform(0.8, 1.6)), float(rng.uniform(0, 6.3)), env))
        params["sway"] = {"freq": f, "amplitude_rad": amp, "delay_rad": delay, "azimuth": az}
    if "wheel" in chosen:
        omega = float(rng.uniform(1.0, 8.0)) * float(rng.choice([-1.0, 1.0]))
        w_in = pe["ramp_in"]
        start = pe["start"]

        def spin(tau, om=omega):
            return om * w_in * _smootherstep_integral((np.asarray(tau) - start) / w_in)

        radius = float(np.mean([skel.positions[c[0]] @ up for c in chains["wheel"]]) - (ctx.rest @ up).min())
        spin_amp = ctx.cap(1.0, spin, max(radius, 1e-3) / ctx.diag, gain=2.0)
        for chain in chains["wheel"]:
            rot_vecs.append((chain[0], left, (lambda tau, s=spin_amp: s * spin(tau))))
        drive = rng.random() < 0.6
        if drive:
            root_shift.append(lambda tau, s=spin_amp: np.outer(s * radius * spin(tau), fwd))
        params["wheels"] = {"omega_rad_s": omega * spin_amp, "drive": drive}
    if "arm_chain" in chosen:
        amps = []
        for chain in chains["arm_chain"]:
            for k, j in enumerate(chain):
                c, _ = _curve(rng, ctx.D, kinds=("keys", "ramp", "osc"), probs=(0.5, 0.25, 0.25))
                if k == 0:
                    amps.append(add(j, up, float(rng.uniform(0.2, 1.5)), c))
                else:
                    ax = np.cross(bone[j], up)
                    ax = ax if np.linalg.norm(ax) > 1e-6 else left
                    amps.append(add(j, ax, float(rng.uniform(0.1, 0.8)), c))
        params["arm_chain"] = {"amplitudes_rad": amps}
    if use_pose:
        amp = float(rng.uniform(0.05, 0.5))
        n_pose = 0
        for j in range(J):
            if rng.random() < 0.5:
                continue
            n_pose += 1
            ax = _unit(rng.normal(size=3))
            c, _ = _curve(rng, ctx.D, kinds=("keys", "ramp"), probs=(0.7, 0.3))
            add(j, ax, amp * float(rng.uniform(0.3, 1.0)), c)
        params["pose"] = {"amplitude_rad": amp, "joints": n_pose}
    if rng.random() < 0.35 and ("leg" in chosen or "wing" in chosen):  # travel forward
        speed = float(rng.uniform(0.05, 0.8))
        w_in, start = pe["ramp_in"], pe["start"]
        travel = lambda tau: w_in * _smootherstep_integral((np.asarray(tau) - start) / w_in)  # noqa: E731
        root_shift.append(lambda tau: np.outer(speed * ctx.diag * travel(tau), fwd))
        params["travel_speed"] = speed

    def op(X):
        R = np.broadcast_to(np.eye(3), (T, J, 3, 3)).copy()
        for j, axis, curve in rot_vecs:
            R[:, j] = axis_angle_to_matrix(curve(ctx.tau)[:, None] * axis[None]) @ R[:, j]
        shift = sum((f(ctx.tau) for f in root_shift), np.zeros((T, 3)))
        G = skel.forward_kinematics(R, shift)
        return linear_blend_skinning(ctx.rest, asset.weights, skel, G)

    return op, params


def _joint_reach(asset: ProceduralAsset) -> np.ndarray:
    """[J] farthest distance from each joint to a vertex moved by it or its descendants."""
    skel = asset.skeleton
    J = skel.num_joints
    sub = np.eye(J, dtype=bool)
    for j in range(J - 1, 0, -1):
        sub[skel.parents[j]] |= sub[j]
    infl = asset.weights @ sub.T.astype(np.float64)  # [V, J] weight of each joint's subtree
    d = np.linalg.norm(asset.mesh.vertices[:, None] - skel.positions[None], axis=-1)  # [V, J]
    return np.where(infl > 0.02, d, 0.0).max(0)


def _gait_phases(skel, legs, fwd, left, rng) -> tuple[list[float], str]:
    p0 = skel.positions[0]
    side = [1 if np.dot(skel.positions[l[0]] - p0, left) >= 0 else 0 for l in legs]
    along = [float(np.dot(skel.positions[l[0]] - p0, fwd)) for l in legs]
    n = len(legs)
    if n == 2:
        return [0.0 if s else 0.5 for s in side], "alternate"
    if n == 4:
        mid = float(np.median(along))
        front = [a > mid for a in along]
        gait = str(rng.choice(["trot", "pace", "walk", "bound"], p=[0.35, 0.15, 0.35, 0.15]))
        out = []
        for s, fr in zip(side, front):
            if gait == "trot":
                out.append(0.0 if bool(s) == fr else 0.5)
            elif gait == "pace":
                out.append(0.0 if s else 0.5)
            elif gait == "bound":
                out.append(0.0 if fr else 0.5)
            else:
                out.append({(1, False): 0.0, (1, True): 0.25, (0, False): 0.5, (0, True): 0.75}[(s, fr)])
        return out, gait
    out = []
    for i in range(n):  # tripod gait: alternate along each side, sides opposite
        rank = sum(1 for k in range(n) if side[k] == side[i] and along[k] > along[i])
        out.append(0.5 * ((rank + side[i]) % 2))
    return out, "tripod"


# =========================================================================== checks and families
def motion_quality(rest: np.ndarray, faces: np.ndarray, vertices: np.ndarray, times: np.ndarray) -> dict:
    """Magnitude, smallest face-area ratio and peak acceleration of a motion.

    Returns a dict with ``magnitude`` (mean |x_t - x_0| / bbox diagonal over frames and
    vertices), ``min_area_ratio`` (posed / rest area, faces with rest area > 1e-12 diag^2),
    ``max_accel`` (max |second difference| / dt^2 / diag, 0 for T < 3) and ``finite``.
    """
    diag = float(np.linalg.norm(rest.max(0) - rest.min(0)))
    finite = bool(np.isfinite(vertices).all())
    if not finite:
        return {"finite": False, "magnitude": float("nan"), "min_area_ratio": 0.0, "max_accel": float("inf")}
    mag = float(np.linalg.norm(vertices - vertices[:1], axis=-1).mean()) / diag
    e1 = vertices[:, faces[:, 1]] - vertices[:, faces[:, 0]]
    e2 = vertices[:, faces[:, 2]] - vertices[:, faces[:, 0]]
    area = np.linalg.norm(np.cross(e1, e2), axis=-1)  # [T, F] (x2)
    r1, r2 = rest[faces[:, 1]] - rest[faces[:, 0]], rest[faces[:, 2]] - rest[faces[:, 0]]
    a0 = np.linalg.norm(np.cross(r1, r2), axis=-1)
    ok = a0 > 1e-12 * diag**2
    ratio = float((area[:, ok] / a0[ok]).min()) if ok.any() else 1.0
    accel = 0.0
    if len(times) >= 3:
        dt = float(np.mean(np.diff(times)))
        acc = np.linalg.norm(vertices[2:] - 2 * vertices[1:-1] + vertices[:-2], axis=-1).max()
        accel = float(acc) / dt**2 / diag
    return {"finite": True, "magnitude": mag, "min_area_ratio": ratio, "max_accel": accel}


def _acceptable(q: dict) -> bool:
    return q["finite"] and q["magnitude"] >= MIN_MAGNITUDE and q["min_area_ratio"] >= MIN_AREA_RATIO and q["max_accel"] <= MAX_ACCEL


def _run(draw: Callable, name: str, asset: ProceduralAsset, rng: np.random.Generator, times, info: dict | None, gain: float = 1.0) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if len(times) == 0 or not np.isfinite(times).all() or (np.diff(times) <= 0).any():
        raise ValueError(f"{name}: times must be a non-empty, strictly increasing array of seconds, got {times!r}")
    rest = asset.mesh.vertices
    if len(times) == 1:
        if info is not None:
            info.update(family=name, params={}, tries=0)
        return rest[None].copy()
    ctx = _Ctx(asset, times)
    for attempt in range(1, MAX_TRIES + 1):
        op, params = draw(ctx, rng, gain)
        X = op(np.broadcast_to(rest, (len(times),) + rest.shape).copy())
        X[0] = rest  # exact rest frame (curves vanish at tau = 0 up to rounding)
        q = motion_quality(rest, asset.mesh.faces, X, times)
        if _acceptable(q):
            break
    else:  # give up on the family: a gentle, always-valid turn about the vertical axis
        op, params = _fallback(ctx)
        X = op(np.broadcast_to(rest, (len(times),) + rest.shape).copy())
        X[0] = rest
        q = motion_quality(rest, asset.mesh.faces, X, times)
        params = {"fallback_for": name, **params}
    if info is not None:
        info.update(family=name, params=to_jsonable(params), tries=attempt, quality=q)
    return X


def _fallback(ctx: _Ctx) -> tuple[Op, dict]:
    D = max(ctx.D, 1e-3)
    angle = lambda tau: 0.5 * _smootherstep(np.asarray(tau) / D)  # noqa: E731
    lever = float(np.linalg.norm((ctx.rest - ctx.center)[:, :2], axis=1).max()) / ctx.diag
    amp = ctx.cap(1.0, angle, lever)
    z = np.array([0.0, 0.0, 1.0])
    return (lambda X: _rotate(X, z, amp * angle(ctx.tau), ctx.center)), {"turn_rad": 0.5 * amp}


_DEFORMATIONS = {
    "bend": _draw_bend,
    "twist": _draw_twist,
    "taper": _draw_taper,
    "squash_stretch": _draw_squash,
    "wave": _draw_wave,
    "random_field": _draw_field,
}


def _draw_combo(ctx: _Ctx, rng, gain: float) -> tuple[Op, dict]:
    has_skel = ctx.asset.skeleton is not None
    recipes = [["deform", "rigid"], ["deform", "deform"], ["deform", "deform", "rigid"]]
    if has_skel:
        recipes += [["articulated", "rigid"], ["articulated", "deform"], ["articulated", "deform", "rigid"]] * 2
    recipe = recipes[int(rng.integers(len(recipes)))]
    g = 0.65 * gain
    ops, parts = [], []
    for step in recipe:
        if step == "deform":
            name = str(rng.choice(list(_DEFORMATIONS)))
            op, p = _DEFORMATIONS[name](ctx, rng, g)
        elif step == "rigid":
            name = "rigid"
            op, p = _draw_rigid(ctx, rng, g)
        else:
            name = "articulated"
            op, p = _draw_articulated(ctx, rng, g)
        ops.append(op)
        parts.append({"family": name, "params": p})

    def op(X):
        for o in ops:
            X = o(X)
        return X

    return op, {"steps": parts}


def _family(draw: Callable, name: str) -> Callable:
    def family(asset: ProceduralAsset, rng: np.random.Generator, times, info: dict | None = None) -> np.ndarray:
        return _run(draw, name, asset, rng, times, info)

    family.__name__ = name
    family.__qualname__ = name
    family.__doc__ = f"""Random ``{name}`` motion: (asset, rng, times [T] seconds, info=None) -> vertices [T, V, 3].

    Re-draws until the motion is finite, moves, keeps every face and stays smooth (module
    docstring); fills ``info`` (when given) with the family, parameters and quality."""
    return family


rigid = _family(_draw_rigid, "rigid")
bend = _family(_draw_bend, "bend")
twist = _family(_draw_twist, "twist")
taper = _family(_draw_taper, "taper")
squash_stretch = _family(_draw_squash, "squash_stretch")
wave = _family(_draw_wave, "wave")
random_field = _family(_draw_field, "random_field")
articulated = _family(_draw_articulated, "articulated")
combo = _family(_draw_combo, "combo")

MOTION_FAMILIES: dict[str, Callable] = {
    "rigid": rigid,
    "bend": bend,
    "twist": twist,
    "taper": taper,
    "squash_stretch": squash_stretch,
    "wave": wave,
    "random_field": random_field,
    "articulated": articulated,
    "combo": combo,
}
"""Family name -> ``fn(asset, rng, times, info=None) -> [T, V, 3]``."""


def random_motion(asset: ProceduralAsset, rng: np.random.Generator, times, family: str | None = None, weights: dict[str, float] | None = None) -> tuple[np.ndarray, dict]:
    """Draw a family (unless given) and a motion of ``asset`` at ``times`` (seconds).

    Args:
        asset: the asset; ``articulated`` needs a skeleton (it is never drawn without one).
        rng: random generator (same state, same motion).
        times: [T] strictly increasing frame times in seconds.
        family: a key of :data:`MOTION_FAMILIES`, or None to draw one.
        weights: family probabilities overriding :data:`FAMILY_PROBS` (renormalized).

    Returns:
        (vertices [T, V, 3] float64 with frame 0 = rest, info dict: ``family``, ``params``,
        ``tries``, ``quality`` with the ``magnitude`` label; JSON-able).
    """
    if family is None:
        probs = dict(FAMILY_PROBS if weights is None else weights)
        unknown = set(probs) - set(MOTION_FAMILIES)
        if unknown:
            raise ValueError(f"random_motion: unknown families {sorted(unknown)}; choose from {', '.join(MOTION_FAMILIES)}")
        if asset.skeleton is None:
            probs.pop("articulated", None)
        names = [k for k, v in probs.items() if v > 0]
        if not names:
            raise ValueError("random_motion: no family has a positive weight for this asset")
        p = np.array([probs[k] for k in names], dtype=np.float64)
        family = str(rng.choice(names, p=p / p.sum()))
    if family not in MOTION_FAMILIES:
        raise ValueError(f"random_motion: unknown family {family!r}; choose from {', '.join(MOTION_FAMILIES)}")
    if family == "articulated" and asset.skeleton is None:
        raise ValueError("random_motion: 'articulated' needs an asset with a skeleton (use asset_from_mesh(..., skeleton='chain'))")
    info: dict = {}
    X = MOTION_FAMILIES[family](asset, rng, times, info)
    return X, info


