"""A damped, driven pendulum with known equations, simulated in JAX.

The angle theta follows

  theta'' = -damping * theta' - natural_frequency**2 * sin(theta)
            + drive_amplitude * cos(drive_frequency * t + phase),

integrated with the classical fourth-order Runge-Kutta method at `substeps`
steps per observation interval `dt`. Each trajectory draws its initial angle,
angular velocity and drive phase at random. The observation is
(sin theta, cos theta, theta'); the drive phase is not observed, so a model
that sees only the current observation cannot know the force to come and must
infer the phase from the past. With `observe_phase=True` the observation also
holds (sin, cos) of the drive angle, which makes the observed system Markov.

The default parameters (damping 0.5, drive 0.6 at frequency 2/3) lie in the
periodic regime of this pendulum; chaos starts near a drive of 1.07.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from autogan_jax.core import validation


@dataclasses.dataclass(frozen=True)
class PendulumConfig:
  """Physical constants and sampling of the simulated pendulum (time in seconds)."""

  damping: float = 0.5
  natural_frequency: float = 1.0
  drive_amplitude: float = 0.6
  drive_frequency: float = 2.0 / 3.0
  dt: float = 0.1
  substeps: int = 4
  observe_phase: bool = False

  def __post_init__(self):
    validation.check("damping", self.damping, validation.FloatRange(0.0))
    validation.check("natural_frequency", self.natural_frequency,
                     validation.FloatRange(0.0, low_inclusive=False))
    validation.check("drive_amplitude", self.drive_amplitude, validation.FloatRange(0.0))
    validation.check("drive_frequency", self.drive_frequency, validation.FloatRange(0.0))
    validation.check("dt", self.dt, validation.FloatRange(0.0, 1.0, low_inclusive=False))
    validation.check("substeps", self.substeps, validation.IntRange(1, 1000))

  @property
  def observation_dim(self) -> int:
    return 5 if self.observe_phase else 3


def derivatives(config: PendulumConfig, state: jax.Array, time: jax.Array,
                phase: jax.Array) -> jax.Array:
  """Return d/dt of `state` = (theta, theta')."""
  theta, velocity = state[0], state[1]
  drive = config.drive_amplitude * jnp.cos(config.drive_frequency * time + phase)
  acceleration = (-config.damping * velocity
                  - config.natural_frequency ** 2 * jnp.sin(theta) + drive)
  return jnp.stack([velocity, acceleration])


def rk4_step(config: PendulumConfig, state: jax.Array, time: jax.Array, phase: jax.Array,
             h: float) -> jax.Array:
  """Advance `state` by one Runge-Kutta step of length `h`."""
  k1 = derivatives(config, state, time, phase)
  k2 = derivatives(config, state + 0.5 * h * k1, time + 0.5 * h, phase)
  k3 = derivatives(config, state + 0.5 * h * k2, time + 0.5 * h, phase)
  k4 = derivatives(config, state + h * k3, time + h, phase)
  return state + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def simulate(config: PendulumConfig, initial_state: jax.Array, phase: jax.Array,
             num_steps: int) -> tuple[jax.Array, jax.Array]:
  """Return states [num_steps + 1, 2] at times 0, dt, ..., and those times."""
  h = config.dt / config.substeps

  def interval(state, index):
    start = index * config.dt

    def substep(inner_state, sub):
      return rk4_step(config, inner_state, start + sub * h, phase, h), None

    state, _ = jax.lax.scan(substep, state, jnp.arange(config.substeps))
    return state, state

  _, states = jax.lax.scan(interval, initial_state, jnp.arange(num_steps))
  states = jnp.concatenate([initial_state[None], states])
  return states, jnp.arange(num_steps + 1) * config.dt


def observe(config: PendulumConfig, states: jax.Array, times: jax.Array,
            phase: jax.Array) -> jax.Array:
  """Map states [..., 2] to observations [..., observation_dim]."""
  theta, velocity = states[..., 0], states[..., 1]
  parts = [jnp.sin(theta), jnp.cos(theta), velocity]
  if config.observe_phase:
    angle = config.drive_frequency * times + phase
    parts += [jnp.sin(angle), jnp.cos(angle)]
  return jnp.stack(parts, axis=-1)


def energy(config: PendulumConfig, states: jax.Array) -> jax.Array:
  """Return the mechanical energy per unit inertia, 0.5 theta'^2 + w0^2 (1 - cos theta)."""
  theta, velocity = states[..., 0], states[..., 1]
  return 0.5 * velocity ** 2 + config.natural_frequency ** 2 * (1.0 - jnp.cos(theta))


@functools.partial(jax.jit, static_argnames=("config", "count", "length"))
def sample_trajectories(config: PendulumConfig, key: jax.Array, count: int,
                        length: int) -> dict[str, jax.Array]:
  """Simulate `count` trajectories of `length` observations from random starts.

  Initial angles are uniform in [-pi, pi), angular velocities in [-2, 2) and
  drive phases in [0, 2 pi).
  """
  k_theta, k_velocity, k_phase = jax.random.split(key, 3)
  theta = jax.random.uniform(k_theta, (count,), minval=-jnp.pi, maxval=jnp.pi)
  velocity = jax.random.uniform(k_velocity, (count,), minval=-2.0, maxval=2.0)
  phase = jax.random.uniform(k_phase, (count,), maxval=2.0 * jnp.pi)

  def one(start, phi):
    states, times = simulate(config, start, phi, length - 1)
    return states, observe(config, states, times, phi)

  states, observations = jax.vmap(one)(jnp.stack([theta, velocity], axis=1), phase)
  return {"states": states, "observations": observations, "phase": phase}


@dataclasses.dataclass(frozen=True, eq=False)
class PendulumSplits:
  """Observations [count, length, observation_dim] of train, validation and test trajectories."""

  train: np.ndarray
  valid: np.ndarray
  test: np.ndarray
  config: PendulumConfig

  def split(self, name: str) -> np.ndarray:
    validation.check_choice("split", name, ("train", "valid", "test"))
    return getattr(self, name)


@functools.lru_cache(maxsize=4)
def load_pendulum(num_train: int = 512, num_eval: int = 128, length: int = 128, seed: int = 0,
                  config: PendulumConfig = PendulumConfig()) -> PendulumSplits:
  """Simulate train, validation and test trajectories from disjoint random keys."""
  validation.check("num_train", num_train, validation.IntRange(1))
  validation.check("num_eval", num_eval, validation.IntRange(1))
  validation.check("length", length, validation.IntRange(2))
  keys = jax.random.split(jax.random.key(seed), 3)
  made = {}
  for key, (name, count) in zip(keys, (("train", num_train), ("valid", num_eval),
                                       ("test", num_eval))):
    made[name] = np.asarray(sample_trajectories(config, key, count, length)["observations"])
  return PendulumSplits(config=config, **made)
