"""One searched parameter of a search-space YAML: W&B's distributions, as Optuna samples and models them.

Where Optuna has the distribution (uniform, integer, log-uniform, stepped), TPE models the value itself.
Where it has none (normal, log-normal, categories with probabilities), Optuna samples a quantile u in
[0, 1) and the parameter maps it through the distribution's inverse CDF: a random u gives a draw with
W&B's distribution, and TPE models u, a monotone image of the value. W&B's `q` rounds the value.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import optuna.distributions as od

from sweep.spec.reader import SpecReader
from text_recognizer.config import Flag

# Which keys each W&B distribution takes (besides `distribution`), as in W&B's sweep configuration reference.
DISTRIBUTION_KEYS = {
    "constant": ("value",),
    "categorical": ("values", "probabilities"),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "log_uniform": ("min", "max"),  # min and max are natural logs of the bounds
    "log_uniform_values": ("min", "max"),
    "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
    "inv_log_uniform": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma", "q"),
}
ALIASES = {"categorical_w_probabilities": "categorical"}  # W&B's schema name for values with probabilities
QUANTILE = od.FloatDistribution(0.0, 1.0)  # what Optuna samples where it has no such distribution
NORMAL_TAIL = 1e-9  # quantiles are kept within [1e-9, 1 - 1e-9]: draws beyond 6 sigma are cut


@dataclass(frozen=True)
class NormalQuantile:
    """u -> mu + sigma * Phi^-1(u), and its exp for W&B's log_normal."""

    mu: float
    sigma: float
    log: bool

    def __call__(self, u: float) -> float:
        x = NormalDist(self.mu, self.sigma).inv_cdf(min(max(u, NORMAL_TAIL), 1 - NORMAL_TAIL))
        return math.exp(x) if self.log else x

    def quantile(self, value: float) -> float | None:
        """The u that gives `value`; None where no u does (a log-normal's value is above 0)."""
        if self.log and value <= 0:
            return None
        u = NormalDist(self.mu, self.sigma).cdf(math.log(value) if self.log else value)
        return min(max(u, NORMAL_TAIL), 1 - NORMAL_TAIL)


@dataclass(frozen=True)
class WeightedChoice:
    """u -> the value whose slice of [0, 1) holds u: values[i] with probability probabilities[i]."""

    values: tuple
    cumulative: tuple  # running sums of the probabilities, the last one 1

    def __call__(self, u: float) -> Any:
        return self.values[min(bisect.bisect_right(self.cumulative, u), len(self.values) - 1)]

    def quantile(self, value: Any) -> float | None:
        """The middle of `value`'s slice; None where it has none (not listed, or probability 0)."""
        for i, listed in enumerate(self.values):
            low, high = (self.cumulative[i - 1] if i else 0.0), self.cumulative[i]
            if same(listed, value) and high > low:
                return (low + high) / 2
        return None


@dataclass(frozen=True)
class IndexedChoice:
    """i -> values[i]: a program's categorical values that Optuna cannot hold (lists, mappings)."""

    values: tuple

    def __call__(self, index: int) -> Any:
        return self.values[index]

    def quantile(self, value: Any) -> int | None:
        return next((i for i, listed in enumerate(self.values) if same(listed, value)), None)


@dataclass(frozen=True)
class Param:
    """A searched flag: what Optuna samples, and how a sample becomes the flag's value."""

    flag: Flag
    distribution: od.BaseDistribution  # what Optuna samples and TPE models
    source: str  # the W&B definition, for messages and sweep.yaml
    from_quantile: NormalQuantile | WeightedChoice | IndexedChoice | None = None  # where Optuna samples a stand-in
    q: float | None = None  # W&B's q: the value is rounded to a multiple of q

    @property
    def name(self) -> str:
        return self.flag.name

    def value(self, sampled: Any) -> Any:
        """The flag's value for Optuna's sample, not yet checked against the flag's bounds."""
        if self.from_quantile is not None:
            sampled = self.from_quantile(sampled)
        if self.q is not None:
            sampled = float(f"{round(sampled / self.q) * self.q:.12g}")  # 0.30000000000000004 -> 0.3
        return self.typed(sampled)

    def typed(self, value: Any) -> Any:
        """Only where the flag takes one of the two: `limit_train_batches: int | float` keeps 8 and 0.5 apart."""
        if isinstance(value, float) and takes_int(self.flag):
            return int(round(value))
        if type(value) is int and int not in self.flag.options and float in self.flag.options:
            return float(value)
        return value

    def sample_of(self, value: Any) -> Any:
        """The sample of Optuna's that gives `value` (a value a trial ran with, maybe under another spec), or
        None where this parameter cannot give it: how a rebuilt, edited or warm-started study holds
        earlier trials. `value(sample_of(v)) == v` for every value this parameter gives."""
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(self.from_quantile, NormalQuantile):
            if not numeric or (self.q is not None and not on_step(value, self.q)):
                return None
            if self.q is not None and self.from_quantile.log and value == 0:  # rounded down from (0, q/2)
                value = self.q / 4
            return self.from_quantile.quantile(value)
        if self.from_quantile is not None:
            return self.from_quantile.quantile(value)
        if isinstance(self.distribution, od.CategoricalDistribution):
            return next((c for c in self.distribution.choices if same(self.typed(c), value)), None)
        if not numeric:
            return None
        low, high, step = self.distribution.low, self.distribution.high, self.distribution.step
        if step is not None and not on_step(value - low, step):
            return None
        # A q-rounded draw of a range without steps (q_log_uniform) may lie up to q/2 past either end.
        slack = self.q / 2 if self.q is not None and step is None else 0.0
        if self.q is not None and step is None and not on_step(value, self.q):
            return None
        tolerance = 1e-9 * max(1.0, abs(low), abs(high))
        if not low - slack - tolerance <= value <= high + slack + tolerance:
            return None
        sample = min(max(value, low), high)
        return int(round(sample)) if isinstance(self.distribution, od.IntDistribution) else float(sample)

    @property
    def values(self) -> list | None:
        """Every value a trial can get, where they are listed; None for a range."""
        if isinstance(self.from_quantile, (WeightedChoice, IndexedChoice)):
            return [self.typed(v) for v in self.from_quantile.values]
        if isinstance(self.distribution, od.CategoricalDistribution):
            return [self.typed(v) for v in self.distribution.choices]
        return None

    @property
    def types(self) -> list[str]:
        """The names of the types the flag takes, in the order a command line reads them."""
        return ["any" if t is Any else "null" if t is type(None) else t.__name__ for t in self.flag.options]

    def check(self, value: Any) -> Any:
        """`value()`'s result, checked: a draw outside what the flag accepts (a normal's tail) fails this trial
        only."""
        try:
            return self.flag.check(value)
        except ValueError as exc:
            raise ValueError(
                f"parameters.{self.name}: {value!r}, drawn from {self.source}, is not a value of --{self.name}: {exc}"
            ) from None


def same(a: Any, b: Any) -> bool:
    """Equal as values and as booleans: 1 is not True, 1.0 is 1."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def on_step(value: float, step: float) -> bool:
    """Whether value is a whole multiple of step, up to rounding."""
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-6


def takes_int(flag: Flag) -> bool:
    return int in flag.options and float not in flag.options


def takes_float(flag: Flag) -> bool:
    return float in flag.options


def program_flag(name: str, distribution: str, pdef: dict) -> Flag:
    """A program's parameter has no flag to check it: its type is the one W&B's distribution gives (an
    integer for int_uniform and a q_ distribution with a whole q, a float for the others, any value that
    is listed)."""
    if distribution == "categorical":
        kind = Any
    elif distribution == "int_uniform" or (distribution.startswith("q_") and isinstance(pdef.get("q", 1), int)):
        kind = int
    else:
        kind = float
    return Flag(name, kind, None, "program")


def read_param(reader: SpecReader, key: str, pdef: dict, flag: Flag | None, method: str, name: str = "") -> Param:
    """A parameter's W&B definition (neither a constant, a fixed setting, nor nested) -> Param. `flag`:
    the flag of our trainer it sets, or None for a program's parameter `name`."""
    distribution = pdef.get("distribution")
    if distribution is None:  # W&B infers it from the keys given
        if "values" in pdef:
            distribution = "categorical"
        elif "min" in pdef and "max" in pdef:
            ints = all(isinstance(pdef[k], int) and not isinstance(pdef[k], bool) for k in ("min", "max"))
            distribution = "int_uniform" if ints else "uniform"
        else:
            reader.fail(key, "give 'values: [...]', 'value: x', 'min' and 'max', or a 'distribution'")
    distribution = ALIASES.get(distribution, distribution)
    if distribution not in DISTRIBUTION_KEYS:
        reader.fail(
            f"{key}.distribution", f"unknown distribution {distribution!r}: use one of {', '.join(DISTRIBUTION_KEYS)}"
        )
    allowed = DISTRIBUTION_KEYS[distribution]
    for sub in pdef:
        if sub != "distribution" and sub not in allowed:
            indented = " (a parameter indented into this one by mistake?)" if isinstance(pdef[sub], dict) else ""
            reader.fail(
                f"{key}.{sub}", f"distribution {distribution} takes {' and '.join(allowed)}, not {sub!r}{indented}"
            )
    if flag is None:
        flag = program_flag(name, distribution, pdef)
    if distribution == "constant":
        reader.fail(f"{key}.value", "a constant needs 'value'")  # with 'value', it is a fixed setting
    if distribution == "categorical":
        return _categorical(reader, key, pdef, flag, method)
    if not takes_int(flag) and not takes_float(flag):  # a str or bool flag: no numeric distribution
        reader.fail(f"{key}.distribution", f"--{flag.name} takes {flag.type_name}: use values")
    if distribution.endswith("normal"):
        return _normal(reader, key, pdef, flag, method, distribution)
    return _uniform(reader, key, pdef, flag, method, distribution)


def _checked(reader: SpecReader, key: str, flag: Flag, value: Any) -> Any:
    try:
        return flag.check(value)
    except ValueError as exc:
        reader.fail(key, f"--{flag.name} takes {flag.type_name}: {exc}")


def _read_q(reader: SpecReader, key: str, pdef: dict, flag: Flag, distribution: str) -> float | None:
    if not distribution.startswith("q_"):
        return None
    q = reader.number(pdef.get("q", 1), f"{key}.q")  # W&B's default q is 1
    if q <= 0:
        reader.fail(f"{key}.q", f"must be above 0, got {q:g}")
    if takes_int(flag) and not q.is_integer():
        reader.fail(f"{key}.q", f"--{flag.name} takes int: q must be a whole number, got {q:g}")
    return int(q) if takes_int(flag) else q


def _categorical(reader: SpecReader, key: str, pdef: dict, flag: Flag, method: str) -> Param:
    values = pdef.get("values")
    if not isinstance(values, list) or not values:
        reader.fail(f"{key}.values", "expected a non-empty list")
    values = [_checked(reader, f"{key}.values", flag, v) for v in values]
    if not all(v is None or isinstance(v, (bool, int, float, str)) for v in values):  # a list or a mapping
        if "probabilities" in pdef:
            reader.fail(f"{key}.probabilities", "are taken with values that are numbers or strings only")
        indices = od.CategoricalDistribution(list(range(len(values))))
        return Param(flag, indices, source=f"values {values}", from_quantile=IndexedChoice(tuple(values)))
    if "probabilities" not in pdef or method == "grid":  # a grid tries every value: W&B's grid ignores them too
        return Param(flag, od.CategoricalDistribution(values), source=f"values {values}")
    probabilities = pdef["probabilities"]
    if not isinstance(probabilities, list) or len(probabilities) != len(values):
        reader.fail(f"{key}.probabilities", f"expected a list of {len(values)} numbers, one per value")
    probabilities = [reader.number(p, f"{key}.probabilities", minimum=0) for p in probabilities]
    if not math.isclose(sum(probabilities), 1.0, abs_tol=1e-6):
        reader.fail(f"{key}.probabilities", f"must sum to 1, got {sum(probabilities):g}")
    cumulative = list(itertools.accumulate(probabilities))
    cumulative[-1] = 1.0  # no quantile may fall past the last value through rounding
    return Param(
        flag,
        QUANTILE,
        source=f"values {values} with probabilities {probabilities}",
        from_quantile=WeightedChoice(tuple(values), tuple(cumulative)),
    )


def _normal(reader: SpecReader, key: str, pdef: dict, flag: Flag, method: str, distribution: str) -> Param:
    if method == "grid":
        reader.fail(f"{key}.distribution", f"method 'grid' enumerates values; {distribution} has none: give 'values'")
    mu = reader.number(pdef.get("mu", 0.0), f"{key}.mu")
    sigma = reader.number(pdef.get("sigma", 1.0), f"{key}.sigma")
    if sigma <= 0:
        reader.fail(f"{key}.sigma", f"must be above 0, got {sigma:g}")
    q = _read_q(reader, key, pdef, flag, distribution)
    if takes_int(flag) and q is None:
        reader.fail(f"{key}.distribution", f"--{flag.name} takes int: use q_{distribution} (q: 1 rounds to integers)")
    source = f"{distribution}(mu={mu:g}, sigma={sigma:g}{f', q={q:g}' if q else ''})"
    log = "log" in distribution
    return Param(flag, QUANTILE, source=source, from_quantile=NormalQuantile(mu, sigma, log), q=q)


def _uniform(reader: SpecReader, key: str, pdef: dict, flag: Flag, method: str, distribution: str) -> Param:
    for sub in ("min", "max"):
        if sub not in pdef:
            reader.fail(f"{key}.{sub}", f"distribution {distribution} needs 'min' and 'max'")
    low, high = reader.number(pdef["min"], f"{key}.min"), reader.number(pdef["max"], f"{key}.max")
    if low >= high:
        reader.fail(key, f"min ({low}) must be below max ({high})")
    if distribution == "int_uniform" and not (low.is_integer() and high.is_integer()):
        reader.fail(key, f"int_uniform needs whole numbers for min and max, got {low:g} and {high:g}")
    if distribution.endswith("_values") and low <= 0:
        reader.fail(f"{key}.min", f"{distribution} needs min > 0, got {low:g}")
    # The range of values, from W&B's definitions: log_uniform's bounds are natural logs; inv_log_uniform
    # draws X with log(1/X) uniform in [min, max], i.e. log-uniform X in [exp(-max), exp(-min)].
    if distribution in ("log_uniform", "q_log_uniform"):
        low, high = math.exp(low), math.exp(high)
    elif distribution == "inv_log_uniform":
        low, high = math.exp(-high), math.exp(-low)
    log = "log" in distribution
    q = _read_q(reader, key, pdef, flag, distribution)
    for bound, sub in ((low, "min"), (high, "max")):
        try:
            flag.check_bounds(bound)
        except ValueError:
            reader.fail(f"{key}.{sub}", f"--{flag.name} takes values {flag.bounds_text}, got {bound:g}")
    source = f"{distribution}(min={pdef['min']:g}, max={pdef['max']:g}{f', q={q:g}' if q else ''})"

    stepped = distribution in ("int_uniform", "q_uniform")
    if stepped:  # on multiples of the step within [min, max]
        step = q or 1
        low = float(f"{math.ceil(round(low / step, 9)) * step:.12g}")
        high = float(f"{math.floor(round(high / step, 9)) * step:.12g}")
        if low > high:
            reader.fail(key, f"no multiple of q={step:g} lies between min and max")
        if method == "grid":
            count = int(round((high - low) / step)) + 1
            values = [float(f"{low + i * step:.12g}") for i in range(count)]
            values = [int(v) for v in values] if takes_int(flag) or distribution == "int_uniform" else values
            return Param(flag, od.CategoricalDistribution(values), source=source)
        if takes_int(flag) or distribution == "int_uniform":
            return Param(flag, od.IntDistribution(int(low), int(high), step=int(step)), source=source)
        # q as well: Optuna's stepped floats come as 0.30000000000000004; rounding gives 0.3.
        return Param(flag, od.FloatDistribution(low, high, step=step), source=source, q=step)
    if method == "grid":
        reader.fail(
            f"{key}.distribution",
            f"method 'grid' enumerates values; {distribution} has none: give 'values', int_uniform or q_uniform",
        )
    if takes_int(flag) and q is None:
        hint = "int_uniform or q_uniform" if not log else "q_log_uniform_values (q: 1 rounds to integers)"
        reader.fail(f"{key}.distribution", f"--{flag.name} takes int: use {hint}")
    # q_log_uniform*: Optuna's log-uniform has no step, so the sample is rounded to a multiple of q.
    return Param(flag, od.FloatDistribution(low, high, log=log), source=source, q=q)
