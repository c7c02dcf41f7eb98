"""The config's schema: every key's type, range and choices, checked once before any work.

``Config`` is registered in Hydra's ConfigStore as ``schema``, the first default of
conf/config.yaml, and each model family's parameters as ``schema/model/<family>``
(``models.registry.family``), named first by its model files: Hydra merges every file and
override into them as it composes, refusing an unknown key or a value of the wrong type.
``validate(cfg)`` then merges the composed config into the same dataclasses once more (which
refuses keys added with ``+``), checks each field's range or choices (the ``check`` in its
metadata, ``stn_repro.checks``) and the rules that tie fields together (a digit must fit its
canvas, a 3D transform needs volumes). Each problem is one ``UserError`` naming the key; the
result is the same config with its values converted to their types.

Per-generator parameters (``dataset.params``) and per-transform arguments (``model.transform``)
are typed after composition, each by its own dataclass.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .checks import at_least, between, checked, fraction, one_of
from .data.registry import GENERATORS, sources
from .errors import UserError
from .models import FAMILIES, MODEL_PARAMS, MODEL_TASKS, MODELS
from .report.paper import TABLES

# ---- groups ------------------------------------------------------------------------------


@dataclass
class Paths:
    root: str = MISSING
    data_dir: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING
    svhn_dir: str = MISSING
    gtsrb_dir: str = MISSING
    cub_dir: str = MISSING


@dataclass
class Log:
    """Iterations between events; logging only, not part of a run's identity."""

    every: int = checked(at_least(1))
    eval_every: int = checked(at_least(1))
    image_every: int = checked(at_least(1))
    checkpoint_every: int = checked(at_least(1))
    snapshot_every: int = checked(at_least(0), 0)  # model snapshots for animations (0: none)


@dataclass
class Schedule:
    name: str = MISSING
    optimizer: str = checked(one_of("sgd", "adam", "adamw"))
    lr: float = checked(lambda v: None if 0 < v <= 1 else "must lie in (0, 1]")
    momentum: float = checked(fraction)
    weight_decay: float = checked(at_least(0))
    batch_size: int = checked(at_least(1))
    iterations: int = checked(at_least(1))
    lr_policy: str = checked(one_of("step", "cosine"))
    lr_steps: list[int] = checked(
        lambda v: None if all(s >= 1 for s in v) else "must hold iterations >= 1",
        default_factory=list,
    )
    lr_decay: float = checked(lambda v: None if 0 < v <= 1 else "must lie in (0, 1]")
    loc_lr_scale: float = checked(at_least(0))
    label_smoothing: float = checked(fraction, 0.0)  # cross entropy's (0: none, as A.4)
    # weights scored: an exponential moving average of the trained ones with this decay per
    # iteration (0: the trained weights themselves, as A.4)
    ema_decay: float = checked(fraction, 0.0)
    train_limit: int | None = checked(at_least(1), None)
    test_limit: int | None = checked(at_least(1), None)
    # fp32; tf32 (GPU matmuls and convolutions in TF32); bf16 (autocast to bfloat16); auto
    # (bf16 where the device computes it natively, else fp32)
    precision: str = checked(one_of("fp32", "tf32", "bf16", "auto"), "fp32")
    log: Log = field(default_factory=Log)


@dataclass
class Dataset:
    name: str = MISSING
    source: str = checked(lambda v: one_of(*sources())(v))  # a generator's (GENERATORS)
    generator: str = MISSING  # checked against GENERATORS
    params: Any = None  # checked by the generator's own dataclass
    seed: int = checked(at_least(0))
    fresh_each_epoch: bool = False
    # generated MNIST sets: the last N of the 60,000 training digits held out as ``val`` (drawn
    # once), never trained on; the periodic evaluation then watches them, not the test digits
    validation: int = checked(between(0, 30000), 0)
    st_pool: int | None = checked(at_least(1), None)  # None: the generator's (registry)
    num_classes: int = 10  # checked against the generator's classes
    render: str | None = checked(lambda v: None if v in (None, "volume") else
                                 "must be volume or null", None)  # fmt: skip
    task: str = checked(one_of("classify", "sequence"), "classify")
    positions: int = checked(between(1, 100), 1)  # labels per sample (sequence task)


@dataclass
class Row:
    name: str = MISSING
    overrides: list[str] = field(default_factory=list)
    per_schedule: dict[str, list[str]] = field(default_factory=dict)  # e.g. this row's budget


@dataclass
class Encoder:
    experiment: str = MISSING
    row: str = MISSING
    seed: int = checked(at_least(0))


@dataclass
class Experiment:
    name: str = MISSING
    table: str = checked(one_of(*TABLES))  # a registered table (``paper.TABLES``)
    column: str = MISSING
    seeds: list[int] = checked(
        lambda v: "must list at least one seed, e.g. [1, 2, 3]" if not v
        else "must not repeat a seed" if len(set(v)) < len(v)
        else "must hold seeds >= 0" if min(v) < 0 else None,
    )  # fmt: skip
    rows: list[Row] = checked(lambda v: None if v else "must list at least one row")
    runner: str = checked(one_of("classify", "coloc"), "classify")
    encoder: Encoder | None = None
    schedules: dict[str, str] = field(default_factory=dict)  # name -> this table's option
    per_schedule: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Coloc:
    digit: int = checked(between(0, 9))
    images_per_class: int = checked(at_least(2))
    pool_digits: int = checked(at_least(2))
    iterations: int = checked(at_least(1))
    batch: int = checked(at_least(2))
    lr: float = checked(lambda v: None if 0 < v <= 1 else "must lie in (0, 1]")
    margin: float = checked(at_least(0))
    initial_scale: float = checked(lambda v: None if 0 < v <= 1 else "must lie in (0, 1]")
    random_crop_scale: float = checked(lambda v: None if 0 < v <= 1 else "must lie in (0, 1]")
    log_every: int = checked(at_least(1))
    eval_every: int = checked(at_least(1))
    pairing: str = checked(one_of("random", "all"))
    stop_partner_gradient: bool = False
    inside_canvas: bool = False
    min_scale: float = checked(lambda v: None if 0 < v < 1 else "must lie in (0, 1)")
    max_scale: float = checked(lambda v: None if 0 < v <= 1 else "must lie in (0, 1]", 1.0)
    blur_sigma: float = checked(at_least(0))
    negatives: int = checked(at_least(1))
    negative_scale: str = checked(one_of("fixed", "window", "random"))
    normalise_features: bool = False
    lr_decay: str = checked(one_of("none", "cosine"), "none")
    optimizer: str = checked(one_of("sgd", "adam"), "adam")
    leaky_localisation: bool = False
    localisation_units: int = checked(at_least(1), 8)
    encoder_input: int = checked(at_least(28), 28)
    window_negatives_from: float = checked(
        lambda v: None if 0 <= v <= 1 else "must lie in [0, 1]", 1.0)
    starts: int = checked(at_least(1), 1)
    select: str = checked(one_of("loss", "window"), "loss")


@dataclass
class Speed:
    """How a run computes, not what: left out of a run's identity."""

    compile: bool = False  # torch.compile the training model (compile time counts as wall time)
    channels_last: bool = False  # images in NHWC memory layout
    threads: int | None = checked(at_least(1), None)  # torch's intra-op threads (None: default)


@dataclass
class Config:
    paths: Paths = field(default_factory=Paths)
    dataset: Dataset = field(default_factory=Dataset)
    model: Any = None  # typed by its family's schema (``models.FAMILIES``), named in its file
    schedule: Schedule = field(default_factory=Schedule)
    experiment: Experiment | None = None
    coloc: Coloc | None = None
    seed: int = checked(at_least(0))
    device: str = checked(
        lambda v: None if re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) else
        "must be auto, cpu, cuda or cuda:N", "auto"
    )  # fmt: skip
    row: Any = None
    table_only: bool = False
    run_dir: str | None = None
    workers: int = checked(between(0, 64), 2)
    jobs: int = checked(between(1, 64), 1)
    overwrite: bool = False
    progress: bool = True
    speed: Speed = field(default_factory=Speed)


# conf/config.yaml's first default: Hydra merges every config file and override into ``Config``
# as it composes, refusing an unknown key or a value of the wrong type.
ConfigStore.instance().store(name="schema", node=Config)


def hydra_initialised():
    """Hydra initialised on conf/ for ``hydra.compose`` (a context manager), with the schemas
    registered: importing this module did it, so scripts compose through here. Already
    initialised (a caller's own context, a test's): nothing to do."""
    from contextlib import nullcontext

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .config import CONF_DIR

    if GlobalHydra.instance().is_initialized():
        return nullcontext()
    return initialize_config_dir(str(CONF_DIR), version_base="1.3")


SCHEMAS = (Paths, Log, Schedule, Dataset, Experiment, Encoder, Coloc, Speed)
"""The nested groups ``unknown_key_message`` walks into."""


def nested(found: dataclasses.Field | None) -> type | None:
    """The group dataclass a field holds (``Config.schedule``: ``Schedule``), else None."""
    return found and next((c for c in SCHEMAS if found.type.startswith(c.__name__)), None)


# ---- checking --------------------------------------------------------------------------------


def typed(node: Any, schema: type, where: str) -> DictConfig:
    """``node`` merged into ``schema``: unknown keys, missing keys and wrong types refused."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        OmegaConf.to_object(merged)  # raises on a missing mandatory value
    except OmegaConfBaseException as err:
        raise UserError(describe(err, where, schema)) from None
    return merged


def describe(err: OmegaConfBaseException, where: str, schema: type) -> str:
    """One sentence for an OmegaConf validation error, naming the full key."""
    key = ".".join(p for p in (where, str(getattr(err, "full_key", "") or "")) if p)
    text = str(getattr(err, "msg", err)).splitlines()[0]
    if "not in" in text or "ConfigKeyError" in type(err).__name__ or "Key '" in text:
        if schema is Config and (message := unknown_key_message(key)):
            return message
        known = ", ".join(f.name for f in dataclasses.fields(schema))
        parent = key.rpartition(".")[0] or "the config"
        return f"{key}: no such setting (known in {parent}: {known})"
    if "is not a ListConfig" in text:
        return f"{key}: must be a list, e.g. [1, 2]"
    if "Missing mandatory value" in text:
        return f"{key}: missing; set it with {key}=..."
    value = re.search(r"Value '(.*?)'", text)
    kind = re.search(r"converted to (\w+)", text) or re.search(r"is not a valid (\w+)", text)
    if value and kind:
        return f"{key}={value.group(1)}: not a valid {kind.group(1).lower()}"
    return f"{key}: {text}"


def check_fields(obj: Any, where: str) -> None:
    """Run every field's ``check`` (recursing into nested dataclasses)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            check_fields(value, key)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                check_fields(item, f"{key}[{i}]")
        elif value is not None and (check := f.metadata.get("check")):
            problem = check(value)
            if problem:
                raise UserError(f"{key}={show(value)}: {problem}")


def show(value: Any) -> str:
    return str(list(value)) if isinstance(value, list | tuple) else str(value)


def check_dataset(data: DictConfig) -> DictConfig:
    generator = GENERATORS.get(data.generator)
    if generator is None:
        raise UserError(
            f"dataset.generator={data.generator}: must be one of {', '.join(GENERATORS)}"
        )
    schema, source = generator.params, generator.source
    if data.source != source:
        raise UserError(
            f"dataset.source={data.source}: the {data.generator} generator reads {source}"
        )
    if data.validation and data.source != "mnist":
        raise UserError(
            f"dataset.validation={data.validation}: holds out generated MNIST digits; the "
            "other sources hold out with their own dataset.params"
        )
    params = typed(data.params or {}, schema, "dataset.params")
    values = OmegaConf.to_object(params)
    check_fields(values, "dataset.params")
    problem = values.problem() if hasattr(values, "problem") else None  # the rules tying them
    if problem:
        raise UserError(problem)
    if (data.task == "sequence") != (data.positions > 1):
        raise UserError(
            f"dataset.task={data.task} with dataset.positions={data.positions}: a sequence task "
            "has several positions, a classify task one"
        )
    if data.st_pool is None:
        data.st_pool = generator.st_pool
    classes = generator.classes
    if data.num_classes != classes:
        raise UserError(
            f"dataset.num_classes={data.num_classes}: the {data.generator} generator's labels "
            f"take {classes} classes; leave dataset.num_classes out, or set it to {classes}"
        )
    return params


def check_model(model: DictConfig, volumes: bool) -> None:
    from .st.transforms import build_transform

    if model.transform is None:
        if model.localisation is not None:
            raise UserError(f"model {model.name} needs a transform: add model/transform=...")
        return
    if model.localisation is None:
        with_st = f"st_{model.name}"
        hint = f"use model={with_st}" if with_st in MODELS else "choose a model with one"
        raise UserError(
            f"model {model.name} has no spatial transformer, so model/transform does not apply; "
            f"{hint}"
        )
    args = OmegaConf.to_container(model.transform, resolve=True)
    name = args.pop("name", None)
    try:
        transform = build_transform(name, **args)
    except (TypeError, ValueError) as err:
        raise UserError(f"model.transform ({name}): {err}") from None
    if (transform.dim == 3) != volumes:
        raise UserError(
            f"transform {name} is {transform.dim}D but the data are "
            f"{'3D volumes' if volumes else '2D images'}; choose model/transform="
            f"{'affine3d' if volumes else 'affine, projective or tps'}"
        )


def check_task(model: DictConfig, data: DictConfig) -> None:
    """The model's outputs must be what the dataset's task scores."""
    task = MODEL_TASKS.get(model.name)
    if task is not None and task != data.task:
        fits = sorted(name for name, t in MODEL_TASKS.items() if t == data.task)
        raise UserError(
            f"model={model.name} is a {task} model but dataset={data.name} is a {data.task} "
            f"task; choose model= one of {', '.join(fits)}"
        )


def setting(key: str) -> dataclasses.Field | str:
    """The schema's field for a dotted ``key``, else a sentence saying it has none (an empty
    sentence when the key lies in a part checked later, such as ``dataset.params``)."""
    schema: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(schema)}
        if part not in fields:
            where = ".".join(parts[:i]) or "the config"
            return f"{key}: no such setting (known in {where}: {', '.join(fields)})"
        kind = fields[part].type
        if i + 1 == len(parts):
            return fields[part]
        if part == "model" and i == 0:  # typed by the chosen model's family
            return model_setting(key)
        if kind == "Any":  # e.g. dataset.params.x: none known here
            return (f"{key}: no such setting (`stn-repro --cfg job` prints every setting of "
                    "the composed config)")  # fmt: skip
        schema = nested(fields[part])
        if schema is None:
            return ""
    return ""


def model_setting(key: str) -> dataclasses.Field | str:
    """``setting`` for ``model.<name>``: the field of that name in any model family."""
    name = key.split(".")[1]
    found = [f for family in FAMILIES.values() for f in dataclasses.fields(family)
             if f.name == name]  # fmt: skip
    if found:
        return found[0] if key.count(".") == 1 else ""
    known = sorted({f.name for family in FAMILIES.values() for f in dataclasses.fields(family)})
    return f"{key}: no such setting (known in model, across its families: {', '.join(known)})"


def null_parts(key: str) -> list[str]:
    """The parts of a dotted ``key`` that a composed config may leave null, outermost first
    (``experiment`` when none is chosen, ``coloc`` outside Table 5, ``experiment.encoder``)."""
    schema: Any = Config
    parts, found_parts = key.split("."), []
    for i, part in enumerate(parts[:-1]):
        found = {f.name: f for f in dataclasses.fields(schema)}.get(part)
        schema = nested(found)
        if schema is None:
            break
        if found.default is None:
            found_parts.append(".".join(parts[: i + 1]))
    return found_parts


def unknown_key_message(key: str) -> str | None:
    """A sentence for a dotted ``key`` the schema does not have (None when it has it, or when
    the key lies in a part checked later, such as ``dataset.params``)."""
    found = setting(key)
    return (found or None) if isinstance(found, str) else None


def check_bool_overrides(overrides: list[str]) -> None:
    """Refuse anything but true or false for a boolean setting (each value of a sweep's
    ``a,b``): Hydra, like OmegaConf, would read ``overwrite=2`` as true."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        found = setting(key)
        if isinstance(found, str) or not found.type.startswith("bool") or "(" in value:
            continue  # not a bool, or a sweep function such as choice(...)
        for one in value.split(","):
            if one.lower() not in ("true", "false", "null", ""):
                raise UserError(f"{key}={one}: not a valid bool (true or false)")


def check_model_params(model: DictConfig) -> DictConfig:
    """``model`` typed and range-checked by its family's parameters; refused if it holds a
    setting its model's file does not set."""
    if model.get("name") not in MODELS:
        raise UserError(f"model.name={model.get('name')}: no such model (choose model= one of "
                        f"{', '.join(sorted(MODELS))})")  # fmt: skip
    check_model_keys(model)
    params = MODEL_PARAMS[model.name]
    typed_model = typed(model, params, "model")
    check_fields(OmegaConf.to_object(typed_model), "model")
    return typed_model


def check_model_keys(model: DictConfig) -> None:
    """Refuse a setting the chosen model's file does not have (``+model.width=0.5`` on the
    FCN): no model would read it, so it would change only the run's directory."""
    from .config import CONF_DIR

    path = CONF_DIR / "model" / f"{model.name}.yaml"
    if not path.exists():
        return
    own = set(OmegaConf.load(path).keys()) | {"transform"}
    defaults = {f.name: f.default for f in dataclasses.fields(MODEL_PARAMS[model.name])}
    extra = [k for k in model if k not in own and model[k] not in (None, defaults.get(k))]
    if extra:
        takes = ", ".join(sorted(own - {"defaults", "name"}))
        raise UserError(f"model.{extra[0]}: model {model.name} does not use it (its settings: "
                        f"{takes}); leave it out")  # fmt: skip


def check_experiment(exp: DictConfig) -> None:
    """The experiment fills one column of its table with rows of that table."""
    spec = TABLES[exp.table]
    if exp.column not in spec.columns:
        raise UserError(f"experiment.column={exp.column!r}: table {exp.table} has columns "
                        f"{', '.join(spec.columns)}")  # fmt: skip
    unknown = [row.name for row in exp.rows if row.name not in spec.rows]
    if unknown:
        raise UserError(f"experiment.rows: {', '.join(map(repr, unknown))} not among table "
                        f"{exp.table}'s rows ({', '.join(spec.rows)})")  # fmt: skip


def validate(cfg: DictConfig) -> DictConfig:
    """The config ``cfg``, checked against the schema and converted to its types.

    Raises:
        UserError: naming the first key that is unknown, of the wrong type or out of range.
    """
    if not OmegaConf.is_config(cfg):
        raise TypeError("validate takes an OmegaConf config")
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    checked_cfg = typed(plain, Config, "")
    check_fields(OmegaConf.to_object(checked_cfg), "")
    checked_cfg.model = check_model_params(plain.model)
    checked_cfg.dataset.params = check_dataset(checked_cfg.dataset)
    check_model(checked_cfg.model, checked_cfg.dataset.render == "volume")
    check_task(checked_cfg.model, checked_cfg.dataset)
    if checked_cfg.experiment is not None:
        check_experiment(checked_cfg.experiment)
    co = checked_cfg.coloc
    if co is not None and co.images_per_class > co.pool_digits:
        raise UserError(
            f"coloc.images_per_class={co.images_per_class}: must not exceed "
            f"coloc.pool_digits={co.pool_digits}"
        )
    if co is not None and co.inside_canvas and not co.min_scale < co.initial_scale < co.max_scale:
        raise UserError(
            f"coloc.initial_scale={co.initial_scale}: with coloc.inside_canvas the window "
            f"starts strictly between coloc.min_scale={co.min_scale} and "
            f"{'1 (e.g. 0.95)' if co.max_scale == 1 else f'coloc.max_scale={co.max_scale}'}"
        )
    out = OmegaConf.create(OmegaConf.to_container(checked_cfg))
    OmegaConf.set_struct(out, True)
    return out
