"""Profiles (smoke, demo, paper) parsed once into typed, frozen settings.

A profile is a TOML file in `rprloc_core/profiles/`. `load_settings(name, overrides)` reads it,
applies dotted overrides ("rprloc.inference.k=5"), and builds a `Settings` object; an unknown
key, in the file or in an override, is an error that names it. The object is plain data: it is
passed whole to worker processes (never re-read there by name), so an override reaches every
computation, and `Settings.overrides` records what was changed.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from rprloc_core.cc2d.config import CC2DTrainConfig, TPLTrainConfig
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.detector.config import DetectorTrainConfig
from rprloc_core.errors import RprlocError
from rprloc_core.pin.config import PINTrainConfig
from rprloc_core.rprloc.config import ENSEMBLES, MOVES, SCATTER, STARTS, STEPS, TrainConfig

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
DATASETS = ("openkbp", "phantom", "cases")


class SettingsError(RprlocError, ValueError):
    """A profile or an override names an unknown key or holds an impossible value."""


@dataclass(frozen=True)
class DataSettings:
    dataset: str                          # "openkbp", "phantom" (synthetic) or "cases" ($RPRLOC_CASES_DIR)
    source: str | None = None             # openkbp: upstream copy, relative to the project root
    n_train: int = 0                      # phantom: cases per split
    n_validation: int = 0
    n_test: int = 0

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise SettingsError(f"data.dataset must be one of {DATASETS}, not {self.dataset!r}")


@dataclass(frozen=True)
class PreprocessSettings:
    spacing_zyx: tuple = (3.0, 2.0, 2.0)  # working grid, mm
    air_threshold_hu: float = -600.0
    ct_interpolator: str = "linear"
    workers: int = 2                      # processes preprocessing cases


@dataclass(frozen=True)
class FigureSettings:
    n_example_cases: int = 3


@dataclass(frozen=True)
class SweepSettings:
    """Extra offset ranges r for the K / r widget: models warm-started from the main ones."""
    coarse_r_mm: tuple = ()
    fine_r_mm: tuple = ()
    steps: int | None = None              # None: the main model's steps
    time_limit_s: float | None = None
    volumes_per_step: int | None = None   # None: the main model's (a smaller batch keeps the
    patches_per_volume: int | None = None # brief warm-started runs cheap on a CPU)
    lr_decay_every: int | None = None
    val_every: int | None = None


@dataclass(frozen=True)
class InferenceSettings:
    """One-shot evaluation of RPR-Loc: K runs per landmark, supports, queries."""
    k: int = 15                           # runs per landmark in Tables 2 and 3
    k_max: int = 20                       # runs computed and cached; a smaller K uses the first K
    k_grid: tuple = (1, 5, 10, 15, 20)    # Table 1's K values (only those <= k_max are used)
    n_supports: int = 3                   # support images drawn from the validation split
    n_queries: int | None = None          # None: every test patient
    steps: tuple = ("coarse", "fine")     # the default schedule's steps (the paper's Mc + Mf)
    ensemble: str = "mean_position"       # how the default schedule combines the K runs
    starts: str = "independent"           # the default schedule's starts (see inference.draw_starts)
    pool_factor: int = 4                  # "pooled" starts: a pool of pool_factor x K
    r_sweep_queries: int | None = None    # queries of the r table (None: all)
    few_shot_sizes: tuple = (1, 3, 5)     # supports fused in the few-shot table (the largest: its pool)
    size_prior_weight: float = 0.0        # notebook 04's size-prior weight w (see experiments.size_prior)
    self_calibration: float = 0.0         # share of the support's own bias taken off (rprloc.self_calibration)
    self_calibration_runs: int = 3        # localisations of the support in itself that give the bias
    scatter_mm: float = 0.0               # a "scatter" step's half-width per axis (rprloc.inference)

    def __post_init__(self):
        if not 1 <= self.k <= self.k_max:
            raise SettingsError(f"rprloc.inference: need 1 <= k <= k_max, got k={self.k}, k_max={self.k_max}")
        if not self.steps or any(step not in STEPS for step in self.steps) or self.steps[0] not in MOVES:
            raise SettingsError(f"rprloc.inference.steps must be a list of {STEPS} that starts with a move, "
                                f"not {list(self.steps)}")
        if not 0 <= self.scatter_mm < math.inf or (SCATTER in self.steps and not self.scatter_mm > 0):  # NaN too
            raise SettingsError(f"rprloc.inference.scatter_mm must be > 0 with a scatter step (>= 0 without), "
                                f"got {self.scatter_mm}")
        if self.ensemble not in ENSEMBLES:
            raise SettingsError(f"rprloc.inference.ensemble must be one of {ENSEMBLES}, not {self.ensemble!r}")
        if self.starts not in STARTS:
            raise SettingsError(f"rprloc.inference.starts must be one of {STARTS}, not {self.starts!r}")
        if self.pool_factor < 1:
            raise SettingsError(f"rprloc.inference.pool_factor must be >= 1, got {self.pool_factor}")
        if self.n_supports < 1:
            raise SettingsError(f"rprloc.inference.n_supports must be >= 1, got {self.n_supports}")
        if not 0.0 <= self.size_prior_weight <= 1.0:
            raise SettingsError(f"rprloc.inference.size_prior_weight must lie in [0, 1], got {self.size_prior_weight}")
        if not 0.0 <= self.self_calibration <= 1.0:
            raise SettingsError(f"rprloc.inference.self_calibration must lie in [0, 1], got {self.self_calibration}")
        if self.self_calibration_runs < 1:
            raise SettingsError(f"rprloc.inference.self_calibration_runs must be >= 1, got {self.self_calibration_runs}")
        if not self.few_shot_sizes or min(self.few_shot_sizes) < 1:
            raise SettingsError(f"rprloc.inference.few_shot_sizes must be sizes >= 1, got {self.few_shot_sizes}")

    @property
    def default_options(self) -> dict:
        """The `localize` options of the default schedule: its steps, ensemble, starts, pool and scatter."""
        return {"schedule": tuple(self.steps), "ensemble": self.ensemble, "starts": self.starts,
                "pool_factor": self.pool_factor, "scatter_mm": self.scatter_mm}

    @property
    def k_values(self) -> tuple:
        """Table 1's K values that the cached predictions (K_max runs) can serve."""
        return tuple(k for k in self.k_grid if k <= self.k_max) or (self.k_max,)


@dataclass(frozen=True)
class RprlocSettings:
    coarse: TrainConfig
    fine: TrainConfig
    # A Pnet the fine model learns from (distillation): trained first, released beside the others.
    # The fine model names it in `teacher` / `init_from` as "fine_teacher".
    fine_teacher: TrainConfig | None = None
    sweep: SweepSettings = field(default_factory=SweepSettings)
    inference: InferenceSettings = field(default_factory=InferenceSettings)


@dataclass(frozen=True)
class AutoencoderSettings:
    """The patch auto-encoder behind FM MSE / FM Cosine, trained without labels."""
    latent_dim: int = 64
    channels: tuple = (8, 16, 32)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    checkpoint_every: int = 50
    time_limit_s: float | None = None     # per call; a later call resumes


@dataclass(frozen=True)
class TemplateMatchingSettings:
    patch_size: tuple = (16, 32, 32)      # template, voxels of the working grid
    stride: int = 2                       # window centres every `stride` voxels, as in the paper
    n_timing_queries: int = 3             # queries (first support) on which each method is timed alone
    timing_threads: int = 1               # torch threads while timing; 0: torch's default
    autoencoder: AutoencoderSettings = field(default_factory=AutoencoderSettings)


WEIGHT_SOURCES = ("release", "train")


@dataclass(frozen=True)
class WeightsSettings:
    """Where the trained models come from: a committed release (trains nothing) or training in the
    data folder (resumable; never writes over the release)."""
    source: str = "train"                 # "release" or "train"
    release: str | None = None            # release folder, relative to the project root

    def __post_init__(self):
        if self.source not in WEIGHT_SOURCES:
            raise SettingsError(f"weights.source must be one of {WEIGHT_SOURCES}, not {self.source!r}")
        if self.source == "release" and not self.release:
            raise SettingsError("weights.source = 'release' needs weights.release, the release folder")


@dataclass(frozen=True)
class DetectorSettings:
    """The supervised reference (notebook 08): training settings and its own release folder (it
    learns from labels, unlike every model of `weights.release`). `weights.source` decides for it
    too: "release" reads the release, "train" trains in the data folder."""
    train: DetectorTrainConfig = field(default_factory=DetectorTrainConfig)
    release: str | None = None            # release folder, relative to the project root
    n_validation: int | None = None       # validation patients seen while training (None: all)


@dataclass(frozen=True)
class PinSettings:
    """PIN (notebook 07), a supervised reference: one network per landmark (PIN-Single: the six
    extreme points of each organ, loss C+R), the variants' landmark also with losses C and R
    (PIN1-PIN5), and one network in the shape model's space (PIN-Multiple); its own release."""
    train: PINTrainConfig = field(default_factory=PINTrainConfig)
    multiple_steps: int | None = None     # PIN-Multiple's steps (None: train.steps)
    range_mm: tuple = (60.0, 60.0, 60.0)  # PIN-Single: training moves up to +- this per axis (z, y, x)
    n_sd: float = 1.5                     # PIN-Multiple: training moves up to +- n_sd SD per shape mode
    keep_variance: float = 0.995          # the shape model keeps this share of the variance
    n_initialisations: int = 19           # starts per query: the landmarks of that many training patients
    iterations: int = 10                  # rules B and C
    rule_a_iterations: int = 350          # rule A (one voxel of the working grid per iteration)
    variants_landmark: str = "Mandible z_min"   # PIN1-PIN5 are compared on one landmark, as in the paper
    n_train: int | None = None            # training patients used (None: all with every organ)
    n_validation: int | None = None       # validation patients scored while training (None: all)
    release: str | None = None            # release folder, relative to the project root


# per organ, its six extreme points (geometry.landmarks): what CC2D's template and TPL detector hold
CC2D_LANDMARKS = 6 * len(HAN_ORGANS)


def _cc2d_default_tpl() -> TPLTrainConfig:
    return TPLTrainConfig(n_landmarks=CC2D_LANDMARKS)


@dataclass(frozen=True)
class CC2DSettings:
    """CC2D (Yao et al. 2021): stage 1 learns multi-scale embeddings from the training split's
    intensity volumes (no labels), finds a support's landmarks in a query by one-shot search; stage 2
    (TPL) trains a heatmap detector on stage 1's answers for the training volumes with ONE template
    (the protocol's first support). Both run on the working grid pooled `downsample` times: stage 1's
    whole-volume passes make it far too slow at full resolution on a CPU. Sizes in `train` and `tpl`
    are voxels of that pooled grid. Its own release (stage 2 learned from a labelled template)."""
    train: CC2DTrainConfig = field(default_factory=CC2DTrainConfig)
    tpl: TPLTrainConfig = field(default_factory=_cc2d_default_tpl)
    downsample: int = 2                   # working grid pooled this many times per axis
    use_tpl: bool = True                  # train and evaluate stage 2 (CC2D); False: stage 1 only (CC2D-SSL)
    top_k: int = 16                       # TPL prediction: voxels voting per landmark
    n_train: int | None = None            # training patients used by both stages (None: all)
    n_validation: int | None = None       # validation patients scored while training (None: all; 0: none)
    sdr_radii_mm: tuple = (5.0, 10.0, 15.0, 20.0)   # successful detection rate radii of the landmark table
    # the training ablation (experiments.cc2d_ablation): stage 1 retrained this many steps per variant
    ablation_steps: int = 250
    ablation_lengths: tuple = (8, 16, 32)           # embedding lengths L tried
    ablation_windows: tuple = (5, 9, 13)            # local windows (cells per axis) tried
    release: str | None = None            # release folder, relative to the project root

    def __post_init__(self):
        def bad(key, message):
            raise SettingsError(f"cc2d.{key} {message}")

        if self.ablation_steps < 1:
            bad("ablation_steps", f"must be >= 1, got {self.ablation_steps}")
        for key in ("ablation_lengths", "ablation_windows"):
            if not getattr(self, key) or min(getattr(self, key)) < 1:
                bad(key, f"must be values >= 1, got {list(getattr(self, key))}")

        if not isinstance(self.downsample, int) or self.downsample < 1:
            bad("downsample", f"must be an integer >= 1, got {self.downsample!r}")
        if self.top_k < 1:
            bad("top_k", f"must be >= 1, got {self.top_k}")
        if self.n_train is not None and self.n_train < 1:
            bad("n_train", f"must be >= 1 or absent (all), got {self.n_train}")
        if self.n_validation is not None and self.n_validation < 0:
            bad("n_validation", f"must be >= 0 or absent (all), got {self.n_validation}")
        if not self.sdr_radii_mm or min(self.sdr_radii_mm) <= 0:
            bad("sdr_radii_mm", f"must be radii > 0 mm, got {list(self.sdr_radii_mm)}")
        for stage in ("train", "tpl"):
            config = getattr(self, stage)
            if config.dims != 3:
                bad(f"{stage}.dims", f"must be 3 (CT volumes), got {config.dims}")
            for key in ("steps", "batch_size", "val_every", "checkpoint_every"):
                if getattr(config, key) < 1:
                    bad(f"{stage}.{key}", f"must be >= 1, got {getattr(config, key)}")
            if config.lr <= 0:
                bad(f"{stage}.lr", f"must be > 0, got {config.lr}")
        if self.train.temperature <= 0:
            bad("train.temperature", f"must be > 0, got {self.train.temperature}")
        for key in ("local_window", "val_samples"):
            if getattr(self.train, key) < 1:
                bad(f"train.{key}", f"must be >= 1, got {getattr(self.train, key)}")
        if self.tpl.n_landmarks != CC2D_LANDMARKS:
            bad("tpl.n_landmarks", f"must be {CC2D_LANDMARKS} (six extreme points x {len(HAN_ORGANS)} organs), "
                                   f"got {self.tpl.n_landmarks}")


@dataclass(frozen=True)
class Settings:
    name: str
    description: str
    seed: int
    data: DataSettings
    preprocess: PreprocessSettings
    rprloc: RprlocSettings
    template_matching: TemplateMatchingSettings
    figures: FigureSettings = field(default_factory=FigureSettings)
    weights: WeightsSettings = field(default_factory=WeightsSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    pin: PinSettings = field(default_factory=PinSettings)
    cc2d: CC2DSettings = field(default_factory=CC2DSettings)
    # (dotted key, value) pairs applied on top of the file; a record only (their effect is in the
    # fields above), so not part of equality or the hash (values may be lists)
    overrides: tuple = field(default=(), compare=False)

    def to_dict(self) -> dict:
        """Plain nested dicts (for the manifest and JSON files)."""
        return _plain(dataclasses.asdict(self))


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def profile_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise SettingsError(f"no profile {name_or_path!r}; available: {', '.join(available_profiles())}")
    return path


def load_settings(name_or_path: str, overrides: dict | None = None) -> Settings:
    """The profile `name_or_path` (a name in rprloc_core/profiles or a .toml path) with `overrides`
    ({"rprloc.inference.k": 5, ...}) applied, as typed Settings. Unknown keys raise SettingsError."""
    path = profile_path(name_or_path)
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    raw = copy.deepcopy(raw)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key, {}), dict):
                raise SettingsError(f"override {dotted!r}: {key!r} is a value, not a section")
            node = node.setdefault(key, {})
        node[leaf] = value
    # a Pnet's seed defaults to the profile's seed
    for model in ("coarse", "fine", "fine_teacher"):
        if model in raw.get("rprloc", {}):
            raw["rprloc"][model].setdefault("seed", raw.get("seed", 0))
    raw["overrides"] = tuple((k, v) for k, v in (overrides or {}).items())
    try:
        return _build(Settings, raw, where=path.name)
    except TypeError as error:
        raise SettingsError(f"{path.name}: {error}") from error


def parse_assignments(pairs) -> dict:
    """NAME=VALUE pairs; values are Python literals where they parse as one, else strings."""
    overrides = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


def _build(cls, values: dict, where: str):
    """A dataclass from a TOML table: nested tables become nested dataclasses, lists tuples."""
    if not isinstance(values, dict):
        raise SettingsError(f"{where}: expected a table, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        kind = _table_type(hints[name])
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value, f"{where} [{name}]")
        elif isinstance(value, list):
            kwargs[name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        else:
            kwargs[name] = value
    missing = [n for n, f in known.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SettingsError(f"{where}: missing setting(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except SettingsError:
        raise
    except ValueError as error:     # a method's own config refusing a value: say where it came from
        raise SettingsError(f"{where}: {error}") from error


def _table_type(hint):
    """The dataclass of an optional section (`TrainConfig | None`), else the hint itself."""
    options = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(options) == 1 and dataclasses.is_dataclass(options[0]):
        return options[0]
    return hint


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
