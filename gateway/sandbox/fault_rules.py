"""The sandbox's fault rules: what each rule picks and does, read from config, and the injector that
draws which requests they break and counts them. The middleware that breaks them is in faults.py,
whose docstring describes each fault.
"""

from __future__ import annotations

import fnmatch
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import ConfigError

FAULT_KINDS = ("error", "reset", "stall", "truncate", "latency")
_COMMON_KEYS = {"fault", "method", "path", "caller", "probability", "times"}
_KEYS_OF_KIND = {
    "error": {"status", "after", "retry_after_seconds"},
    "reset": {"after"},
    "stall": {"after", "stall_seconds"},
    "truncate": {"keep_fraction"},
    "latency": {"delay_ms"},
}
_VALUE_KINDS = {
    "fault": "text", "method": "text", "path": "text", "caller": "text", "after": "true or false",
    "times": "a whole number", "status": "a whole number", "retry_after_seconds": "a whole number",
    "probability": "a number", "stall_seconds": "a number", "keep_fraction": "a number", "delay_ms": "a number",
}


@dataclass(frozen=True)
class FaultRule:
    """One rule; gateway/sandbox/faults.py says what each fault does."""

    fault: str
    method: str = "*"
    path: str = "*"
    # The organisation a request is made for (its access token's consumer, or its HTTP Basic user name), as a
    # pattern: one gateway's requests apart from the automatic peers' on the same paths.
    caller: str = "*"
    probability: float = 1.0
    times: int | None = None
    status: int = 500
    after: bool = False
    retry_after_seconds: int | None = None
    stall_seconds: float = 30.0
    keep_fraction: float = 0.5
    delay_ms: float = 0.0

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        if self.fault not in FAULT_KINDS:
            return f"unknown fault {self.fault!r}; the faults are {', '.join(FAULT_KINDS)}"
        if not isinstance(self.method, str) or not isinstance(self.path, str) or not self.path:
            return "method and path must be text (a method name or '*', a path pattern such as /broker/*)"
        if not isinstance(self.caller, str) or not self.caller:
            return "caller must be text (an organisation number, or a pattern such as '*')"
        if not 0.0 <= self.probability <= 1.0:
            return f"probability must be between 0 and 1, not {self.probability!r}"
        if self.times is not None and self.times < 1:
            return f"times must be at least 1 (or left out for no limit), not {self.times!r}"
        if not 400 <= self.status <= 599:
            return f"status must be an HTTP error status (400-599), not {self.status!r}"
        if self.retry_after_seconds is not None and self.retry_after_seconds < 0:
            return f"retry_after_seconds must be 0 or more, not {self.retry_after_seconds!r}"
        if self.stall_seconds <= 0:
            return f"stall_seconds must be more than 0, not {self.stall_seconds!r}"
        if self.delay_ms < 0:
            return f"delay_ms must be 0 or more, not {self.delay_ms!r}"
        if not 0.0 <= self.keep_fraction < 1.0:
            return f"keep_fraction must be at least 0 and less than 1, not {self.keep_fraction!r}"
        return None

    def matches(self, method: str, path: str, caller: str = "") -> bool:
        return (
            (self.method == "*" or self.method.upper() == method.upper())
            and fnmatch.fnmatchcase(path, self.path)
            and (self.caller == "*" or fnmatch.fnmatchcase(caller, self.caller))
        )

    def as_dict(self) -> dict[str, Any]:
        """The rule in its config form, with only the keys its fault uses."""
        keys = _COMMON_KEYS | _KEYS_OF_KIND[self.fault]
        return {key: value for key, value in asdict(self).items() if key in keys}


@dataclass(frozen=True)
class FaultPlan:
    """Rules in order, and the seed of the RNG that draws their probabilities."""

    rules: tuple[FaultRule, ...] = ()
    seed: int | None = None


def fault_rule_from_dict(raw: Mapping[str, Any], where: str = "fault rule") -> FaultRule:
    """A rule from its config (or JSON) form; ConfigError naming `where` and the key when it is wrong."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping such as {{fault: error, path: /broker/*}}, not {raw!r}")
    kind = raw.get("fault")
    if kind not in FAULT_KINDS:
        raise ConfigError(f"{where}: fault must be one of {', '.join(FAULT_KINDS)}, not {kind!r}")
    allowed = _COMMON_KEYS | _KEYS_OF_KIND[kind]
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}: {key!r} does not apply to {kind} faults; their keys are "
                              f"{', '.join(sorted(allowed))}")
    for key, value in raw.items():
        expected = _VALUE_KINDS[key]
        if not (value is None and key in ("times", "retry_after_seconds")) and not _is_value_of_kind(value, expected):
            raise ConfigError(f"{where}: {key} must be {expected}, not {value!r}")
    try:
        return FaultRule(**raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _is_value_of_kind(value: Any, expected: str) -> bool:
    if expected == "text":
        return isinstance(value, str)
    if expected == "true or false":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if expected == "a whole number" else isinstance(value, int | float)


def fault_plan_from_dict(raw: Any, where: str = "faults") -> FaultPlan:
    """A plan from `{"seed": 7, "rules": [...]}` or a bare list of rules."""
    if isinstance(raw, list):
        raw = {"rules": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'rules' (a list) and optionally 'seed', not {raw!r}")
    unknown = set(raw) - {"rules", "seed"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; the keys are rules and seed")
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"{where}: seed must be a whole number, not {seed!r}")
    rules = raw.get("rules") or []
    if not isinstance(rules, list):
        raise ConfigError(f"{where}: rules must be a list of rules, not {rules!r}")
    return FaultPlan(tuple(fault_rule_from_dict(r, f"{where}, rule {i + 1}") for i, r in enumerate(rules)), seed)


def load_fault_plan(path: Path) -> FaultPlan:
    """A plan from a YAML (or JSON) file."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such faults file; give the path of a YAML file with the fault rules") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return fault_plan_from_dict(raw if raw is not None else [], where=str(path))


FIRED_AT_KEPT = 1000  # the times of a rule's latest requests kept for GET /_faults


@dataclass
class _RuleState:
    rule: FaultRule
    remaining: int | None
    injected: int = 0
    fired_at: deque[float] = field(default_factory=lambda: deque(maxlen=FIRED_AT_KEPT))


@dataclass(frozen=True)
class _Choice:
    delay_ms: float = 0.0
    fault: FaultRule | None = None


@dataclass
class FaultInjector:
    """The rules in force and how often each fired; shared by the middleware (the server's thread), the
    control endpoint and the Python API (a test's thread), hence the lock."""

    plan: FaultPlan = field(default_factory=FaultPlan)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._releasing = threading.Event()
        self.set_plan(self.plan)

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace every rule, restart the counters and reseed the RNG."""
        with self._lock:
            self.plan = plan
            self._states = [_RuleState(rule, rule.times) for rule in plan.rules]
            self._random = random.Random(plan.seed)

    def set_rules(self, *rules: FaultRule, seed: int | None = None) -> None:
        self.set_plan(FaultPlan(tuple(rules), seed))

    def add_rule(self, rule: FaultRule) -> None:
        """Add a rule after the others, keeping their counters."""
        with self._lock:
            self.plan = FaultPlan((*self.plan.rules, rule), self.plan.seed)
            self._states.append(_RuleState(rule, rule.times))

    def clear(self) -> None:
        self.set_plan(FaultPlan(seed=self.plan.seed))

    def injected(self) -> dict[str, int]:
        """How many requests each fault kind broke (latency included), since the rules were last set."""
        with self._lock:
            totals = dict.fromkeys(FAULT_KINDS, 0)
            for state in self._states:
                totals[state.rule.fault] += state.injected
            return totals

    def describe(self) -> dict[str, Any]:
        """The rules with their counters, as the control endpoint shows them; `fired_at` holds when each of a
        rule's latest requests came (epoch seconds, the sandbox's clock), oldest first."""
        with self._lock:
            rules = [{**s.rule.as_dict(), "injected": s.injected, "remaining": s.remaining,
                      "fired_at": list(s.fired_at)} for s in self._states]
            seed = self.plan.seed
        return {"seed": seed, "rules": rules, "injected": self.injected()}

    def choose(self, method: str, path: str, caller: str = "") -> _Choice:
        delay_ms = 0.0
        now = round(time.time(), 3)  # one moment per request: every rule it fires says the same
        with self._lock:
            for state in self._states:
                if state.remaining == 0 or not state.rule.matches(method, path, caller):
                    continue
                if state.rule.probability < 1.0 and self._random.random() >= state.rule.probability:
                    continue
                state.injected += 1
                state.fired_at.append(now)
                if state.remaining is not None:
                    state.remaining -= 1
                if state.rule.fault == "latency":
                    delay_ms += state.rule.delay_ms
                else:
                    return _Choice(delay_ms, state.rule)
        return _Choice(delay_ms)

    # Stalled requests end when the server stops, so that uvicorn's shutdown does not wait for them.
    def release_stalls(self) -> None:
        self._releasing.set()

    def arm_stalls(self) -> None:
        self._releasing.clear()

    @property
    def releasing(self) -> bool:
        return self._releasing.is_set()


__all__ = [
    "FAULT_KINDS",
    "FaultInjector",
    "FaultPlan",
    "FaultRule",
    "fault_plan_from_dict",
    "fault_rule_from_dict",
    "load_fault_plan",
]
