"""The GPU check: what a GPU tells us about this suite, measured in one process within a budget.

1. Speed: for each table's models at the paper's batch size, training images/s of one SGD step
   (forward, loss, backward, update) on random inputs (no data loading, so an upper bound for
   the data-bound rows) under fp32, tf32, bf16, channels-last and torch.compile (compile time
   apart), with the peak GPU memory. CUB rows fall back to the largest batch that fits.
2. Sharing: 1, 2, 4 and 8 processes each training a Table 1 model at once: total images/s.
3. A slice of A.4's schedule for the RTS ST-CNN Aff (the first few thousand steps, through the
   real engine and data), its validation error beside the CPU's at the same step.
4. The projected GPU-hours of every table with ``schedule=paper`` (rows x seeds x iterations x
   batch / fp32 images/s: step time only, no data loading or evaluation).

Results are rewritten (JSON and Markdown) after every measurement, so a budget that runs out
leaves what was measured; the projection is printed last. ``--device cpu --smoke`` runs the
same code on a few small rows in seconds (the tests).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import queue
import signal
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import speed
from .config import CONF_DIR
from .files import write_atomic
from .models import DataSpec, build_model
from .schema import hydra_initialised
from .tasks import TASKS

MODES = ("fp32", "tf32", "bf16", "channels_last", "compile")
SPEED_ROWS = [  # (experiment, row): each table's models, as the issue lists them
    *(("table1_rts", r) for r in ("FCN", "CNN", "ST-FCN Aff", "ST-FCN Proj", "ST-FCN TPS",
                                   "ST-CNN Aff", "ST-CNN Proj", "ST-CNN TPS")),
    ("table4_addition", "2xST-FCN Aff"),
    *(("table2_svhn64", r) for r in ("CNN", "ST-CNN Single", "ST-CNN Multi")),
    *(("table2_svhn128", r) for r in ("CNN", "ST-CNN Single")),
    *(("gtsrb", r) for r in ("CNN", "CNN + 1 ST", "CNN + 2 ST")),
    ("fig_3d", "3D ST-CNN"),
    *(("table3_cub", r) for r in ("CNN (224px)", "2xST-CNN (224px)", "2xST-CNN (448px)",
                                   "4xST-CNN (448px)")),
]  # fmt: skip
SMOKE_ROWS = [("table1_rts", "CNN"), ("table1_rts", "ST-CNN Aff"), ("gtsrb", "CNN")]
SHARE_ROW = ("table1_rts", "ST-CNN Aff")
SLICE_ROW = ("table1_rts", "ST-CNN Aff")
CPU_REFERENCE = CONF_DIR.parent / "docs" / "gpu-check-cpu-reference.json"


class OutOfTime(Exception):
    """The check's wall-time budget ran out."""


def ran_out(err: BaseException | None) -> bool:
    """Whether ``err`` is OutOfTime or came of one: the alarm may fire inside a library that
    wraps what it raises (OmegaConf resolving an interpolation raises its own error from it)."""
    while err is not None:
        if isinstance(err, OutOfTime):
            return True
        err = err.__cause__ or err.__context__
    return False


@contextmanager
def deadline(seconds: float):
    """Raise OutOfTime in this (main) thread once ``seconds`` have passed (also when a library
    the alarm interrupted wrapped it in an error of its own)."""

    def expire(*_):
        raise OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    except Exception as err:
        if ran_out(err) and not isinstance(err, OutOfTime):
            raise OutOfTime from err
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Row:
    """One row of an experiment as ``schedule=paper`` composes it, with its input shape."""

    experiment: str
    name: str
    cfg: DictConfig
    seeds: int

    @property
    def label(self) -> str:
        return f"{self.experiment} / {self.name}"

    @property
    def shape(self) -> tuple[int, ...]:
        return input_shape(self.cfg.dataset)

    @property
    def spec(self) -> DataSpec:
        data = self.cfg.dataset
        return DataSpec(self.shape, int(data.num_classes), int(data.st_pool),
                        int(data.get("positions", 1)))  # fmt: skip


def input_shape(data: DictConfig) -> tuple[int, ...]:
    """A sample's shape as the feed gives it: ``(C, H, W)``, or ``(C, D, H, W)`` for volumes."""
    p = data.params or {}
    if data.source == "mnist":
        if data.get("render") == "volume":
            return (1, p.size, p.size, p.size)
        side = p.get("canvas", 28)
        return (2 if data.generator == "addition" else 1, side, side)
    side = p.get("random_crop") or p.size  # CUB trains on crops; SVHN and GTSRB are square
    return (3, side, side)


def compose_row(experiment: str, name: str, schedule: str = "paper") -> Row:
    """The run ``experiment``'s row ``name`` trains with that schedule (random initialisation:
    no pretrained weights are fetched for timing)."""
    from .experiment import compose_run

    exp, row = experiment_row(experiment, name)
    cfg = compose_run([f"experiment={experiment}", f"schedule={schedule}"], row, 1)
    if "pretrained" in cfg.model:
        cfg.model.pretrained = False
    return Row(experiment, name, cfg, len(exp.seeds))


def experiment_row(experiment: str, name: str) -> tuple[DictConfig, DictConfig]:
    """``(experiment, row)`` as ``conf/experiment/<experiment>.yaml`` writes them."""
    exp = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").experiment
    [row] = [r for r in exp.rows if r.name == name]
    return exp, row


def classify_rows() -> list[tuple[str, str]]:
    """Every (experiment, row) that trains a classifier: what ``make all-tables`` trains."""
    found = []
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        exp = OmegaConf.load(path).experiment
        if exp.get("runner", "classify") == "classify":
            found += [(exp.name, row.name) for row in exp.rows]
    return found


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stepper:
    """One model training on one random batch under one mode: ``step()`` is a training step."""

    def __init__(self, row: Row, mode: str, batch: int, device: torch.device):
        torch.manual_seed(0)
        model = build_model(row.cfg.model, row.spec).to(device)
        self.knobs = OmegaConf.create({
            "compile": mode == "compile", "threads": None,
            "channels_last": mode == "channels_last" and len(row.shape) == 3,
        })  # fmt: skip
        speed.prepare(model, self.knobs)
        self.net = speed.compiled(model, self.knobs, device)
        self.precision = {"tf32": "tf32", "bf16": "bf16"}.get(mode, "fp32")
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        self.task, self.device, spec = TASKS[row.cfg.dataset.task], device, row.spec
        self.x = torch.rand(batch, *row.shape, device=device)
        labels = (batch, spec.positions) if spec.positions > 1 else (batch,)
        self.y = torch.randint(0, spec.num_classes, labels, device=device)

    def step(self) -> None:
        speed.set_precision(self.precision)
        with speed.autocast(self.precision, self.device):
            loss = self.task.loss(self.net(speed.layout(self.x, self.knobs)), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def timed(self) -> float:
        """Seconds of one step, the device synchronised."""
        tic = time.perf_counter()
        self.step()
        sync(self.device)
        return time.perf_counter() - tic


def step_rate(row: Row, mode: str, batch: int, device: torch.device, steps: int) -> dict:
    """Images/s of ``steps`` timed training steps (after a warm-up step, whose time is the
    compile time under ``compile``), and the peak GPU memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stepper = Stepper(row, mode, batch, device)
    first = stepper.timed()
    seconds = statistics.median(stepper.timed() for _ in range(steps))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"images_per_s": round(batch / seconds, 1), "batch": batch,
            "peak_gib": None if peak is None else round(peak, 2),
            "compile_s": round(first, 1) if mode == "compile" else None}  # fmt: skip


def fitting_rate(row: Row, mode: str, device: torch.device, steps: int, batch: int) -> dict:
    """``step_rate`` at ``batch``, halved on running out of GPU memory."""
    while True:
        try:
            return step_rate(row, mode, batch, device, steps)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if batch == 1:
                return {"error": "out of memory at batch 1"}
            batch //= 2


def share_worker(experiment: str, name: str, device: str, seconds: float, barrier, results):
    """One of N processes training the same model at once: its images/s over ``seconds``."""
    with hydra_initialised():
        row = compose_row(experiment, name)
    batch = int(row.cfg.schedule.batch_size)
    stepper = Stepper(row, "fp32", batch, torch.device(device))
    stepper.timed()  # warm up this process's kernels
    barrier.wait()
    steps, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        stepper.step()
        steps += 1
    sync(stepper.device)
    results.put(steps * batch / (time.perf_counter() - tic))


def shared_rate(processes: int, device: torch.device, seconds: float) -> dict:
    """Total images/s of ``processes`` processes training the Table 1 model at once."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    args = (*SHARE_ROW, str(device), seconds, barrier, results)
    procs = [ctx.Process(target=share_worker, args=args) for _ in range(processes)]
    for proc in procs:
        proc.start()
    rates: list[float] = []
    try:
        while len(rates) < processes:
            try:
                rates.append(results.get(timeout=1))
            except queue.Empty:
                if not all(proc.is_alive() for proc in procs) and results.empty():
                    codes = [proc.exitcode for proc in procs]
                    return {"processes": processes, "error": f"a process failed: exit {codes}"}
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return {"processes": processes, "images_per_s": round(sum(rates), 1)}


def measured(what, *args) -> dict:
    """``what(*args)``, or the error it raised (one measurement failing stops no other)."""
    try:
        return what(*args)
    except Exception as err:  # noqa: BLE001  (a compile or kernel failure is a result here)
        if ran_out(err):
            raise OutOfTime from err
        return {"error": f"{type(err).__name__}: {err}"[:300]}


@dataclass
class Check:
    """The results so far, written after each measurement."""

    out: Path
    device: torch.device
    facts: dict = field(default_factory=dict)
    speed: list[dict] = field(default_factory=list)
    sharing: list[dict] = field(default_factory=list)
    slice: dict = field(default_factory=dict)
    projection: list[dict] = field(default_factory=list)
    stopped: str | None = None

    def save(self) -> None:
        data = {
            "facts": self.facts,
            "speed": self.speed,
            "sharing": self.sharing,
            "slice": self.slice,
            "projection": self.projection,
            "stopped": self.stopped,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        write_atomic(self.out / "gpu_check.json", json.dumps(data, indent=1))
        write_atomic(self.out / "gpu_check.md", self.markdown())

    def markdown(self) -> str:
        f = self.facts
        lines = [
            f"# GPU check: {f.get('device_name')}",
            "",
            f"{f.get('date')}, commit {f.get('commit')}, torch {f.get('torch')}, "
            f"budget {f.get('budget_s')} s" + (", smoke" if f.get("smoke") else ""),
            "",
        ]
        if self.stopped:
            lines += [f"**Stopped early: {self.stopped}.** What was measured is below.", ""]
        if self.speed:
            lines += [
                "## Training images/s (random inputs, paper batch; peak GiB)",
                "",
                "| Row | batch | " + " | ".join(MODES) + " | peak GiB (fp32) |",
                "|---|---:|" + "---:|" * (len(MODES) + 1),
            ]
            for entry in self.speed:
                cells = [cell(entry.get(m)) for m in MODES]
                peak = (entry.get("fp32") or {}).get("peak_gib")
                lines.append(f"| {entry['row']} | {entry['batch']} | " + " | ".join(cells)
                             + f" | {'' if peak is None else peak} |")  # fmt: skip
            lines.append("")
        if self.sharing:
            lines += [f"## {SHARE_ROW[0]} / {SHARE_ROW[1]}: processes training at once", "",
                      "| processes | total images/s | x one |", "|---:|---:|---:|"]  # fmt: skip
            one = self.sharing[0].get("images_per_s")
            for entry in self.sharing:
                rate = entry.get("images_per_s")
                ratio = f"{rate / one:.2f}" if rate and one else ""
                lines.append(f"| {entry['processes']} | {cell(entry)} | {ratio} |")
            lines.append("")
        if self.slice:
            lines += [f"## A.4's schedule: the first steps of {SLICE_ROW[0]} / {SLICE_ROW[1]}",
                      "", slice_text(self.slice), ""]  # fmt: skip
        if self.projection:
            lines += ["## Projected hours on this device with `schedule=paper` (training "
                      "steps only)", "", "| Experiment | rows x seeds | hours |",
                      "|---|---:|---:|"]  # fmt: skip
            for entry in self.projection:
                missing = entry["unmeasured"]
                note = f" (not measured: {', '.join(missing)})" if missing else ""
                lines.append(f"| {entry['experiment']} | {entry['runs']} | "
                             f"{entry['gpu_hours']:.2f}{note} |")  # fmt: skip
            total = sum(entry["gpu_hours"] for entry in self.projection)
            lines += ["", f"**`make all-tables SCHEDULE=paper` on this device: about {total:.1f} "
                      "hours of training steps** (measured rows only; without data loading, "
                      "evaluation, Table 5's co-localisation or ImageNet pretraining).", ""]
        return "\n".join(lines)


def slice_text(found: dict) -> str:
    if "error" in found:
        return f"failed: {found['error']}"
    cpu = found.get("cpu_val_error")
    reference = (f"{cpu}% ({found['cpu_source']})" if cpu is not None else
                 "not recorded (python scripts/gpu_check.py --device cpu --cpu-reference)")
    return (f"{found['iterations']} iterations at {found['images_per_s']:,.0f} images/s through "
            f"the engine (data included); validation error {found['val_error']}% "
            f"(curve {found['curve']}); the CPU's at the same step: {reference}.")  # fmt: skip


def cell(result: dict | None) -> str:
    if not result:
        return ""
    if "error" in result:
        return result["error"]
    text = f"{result['images_per_s']:,.0f}"
    if result.get("compile_s") is not None:
        text += f" ({result['compile_s']} s compile)"
    return text


def paper_slice(out: Path, device: torch.device, steps: int, extra: list[str]) -> dict:
    """The first ``steps`` iterations of A.4's schedule for the RTS ST-CNN Aff through the
    engine (new distortions each epoch, 5,000 validation digits): the same steps as the full
    run's while ``steps`` < 50,000 (its first learning-rate drop)."""
    from .engine import train_run
    from .experiment import compose_run

    experiment, name = SLICE_ROW
    _, row = experiment_row(experiment, name)
    given = [
        f"experiment={experiment}",
        "schedule=paper",
        f"schedule.iterations={steps}",
        "dataset.validation=5000",
        f"device={device.type}",
        "progress=false",
        f"schedule.log.eval_every={max(steps // 4, 1)}",
        "overwrite=true",
        *extra,
    ]
    cfg = compose_run(given, row, 1)
    metrics = train_run(cfg, out / "slice")
    found = {"row": f"{experiment} / {name}", "iterations": steps,
             "images_per_s": metrics["images_per_s"], "val_error": metrics["val_error"],
             "curve": [(p["iteration"], p["error"]) for p in metrics["curve"]]}  # fmt: skip
    if CPU_REFERENCE.exists():
        cpu = json.loads(CPU_REFERENCE.read_text())
        at = dict((int(i), e) for i, e in cpu["curve"])
        if steps in at:
            found["cpu_val_error"] = at[steps]
            found["cpu_source"] = f"{CPU_REFERENCE.name}: {cpu['source']}"
    return found


def projection(every: list[tuple[str, str]], rows: dict, rates: dict) -> list[dict]:
    """GPU-hours per experiment with ``schedule=paper``: each row's seeds x iterations x batch
    at its measured fp32 images/s (rows not measured are listed as such)."""
    found: dict[str, dict] = {}
    for key in every:
        entry = found.setdefault(key[0], {"experiment": key[0], "runs": 0, "gpu_hours": 0.0,
                                          "unmeasured": []})  # fmt: skip
        row, rate = rows.get(key), rates.get(key, {})
        if row is None or "images_per_s" not in rate:
            entry["unmeasured"].append(key[1])
            continue
        entry["runs"] += row.seeds
        images = row.cfg.schedule.iterations * row.cfg.schedule.batch_size * row.seeds
        entry["gpu_hours"] += images / rate["images_per_s"] / 3600
    return list(found.values())


def measure_modes(check: Check, rows: dict, keys: list, modes: list[str],
                  device: torch.device, steps: int) -> None:  # fmt: skip
    """Each of ``modes`` for each row of ``keys``, at the batch its fp32 figure used."""
    for mode in modes:
        for key, entry in zip(keys, check.speed, strict=False):
            entry[mode] = measured(fitting_rate, rows[key], mode, device, steps, entry["batch"])
            check.save()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run(device: torch.device, budget_s: float, out: Path, smoke: bool = False,
        slice_steps: int = 2000, extra: list[str] | None = None) -> Check:  # fmt: skip
    """Measure what the budget allows, in this order, writing after each measurement: fp32 for
    every row that trains (each table's models first; the projection's figures), tf32, bf16
    and channels-last for each table's models, sharing, the paper slice, compile; then the
    projection."""
    from .runs import code_version

    check = Check(out, device)
    check.facts = {"device_name": device_name(device), "date": time.strftime("%Y-%m-%d"),
                   "commit": code_version().get("commit"), "torch": torch.__version__,
                   "budget_s": budget_s, "smoke": smoke}  # fmt: skip
    speed_rows = SMOKE_ROWS if smoke else SPEED_ROWS
    every = classify_rows()
    if smoke:  # the rows of the smoke rows' experiments only
        every = [r for r in every if r[0] in {e for e, _ in speed_rows}]
    steps, batch_cap = (1, 4) if smoke else (5, None)
    modes = [m for m in MODES[1:] if device.type == "cuda" or m not in ("tf32", "compile")]
    rows: dict[tuple[str, str], Row] = {}
    rates: dict[tuple[str, str], dict] = {}
    tic = time.perf_counter()
    check.save()
    with hydra_initialised():
        try:
            with deadline(budget_s):
                for key in [*speed_rows, *(k for k in every if k not in speed_rows)]:
                    rows[key] = row = compose_row(*key)
                    batch = batch_cap or int(row.cfg.schedule.batch_size)
                    rates[key] = measured(fitting_rate, row, "fp32", device, steps, batch)
                    if key in speed_rows:
                        batch = rates[key].get("batch", batch)
                        check.speed.append({"row": row.label, "batch": batch, "fp32": rates[key]})
                    check.save()
                measure_modes(check, rows, speed_rows, [m for m in modes if m != "compile"],
                              device, steps)  # fmt: skip
                for processes in (1, 2) if smoke else (1, 2, 4, 8):
                    check.sharing.append(measured(shared_rate, processes, device,
                                                  1 if smoke else 20))  # fmt: skip
                    check.save()
                small = ["schedule.batch_size=16", "schedule.train_limit=256",
                         "schedule.test_limit=64"] if smoke else []  # fmt: skip
                check.slice = measured(paper_slice, out, device, slice_steps,
                                       [*small, *(extra or [])])  # fmt: skip
                check.save()
                if "compile" in modes:  # last: compiling each model may take a minute
                    measure_modes(check, rows, speed_rows, ["compile"], device, steps)
        except OutOfTime:
            spent = time.perf_counter() - tic
            check.stopped = f"the {budget_s:g} s budget ran out after {spent:.0f} s"
    check.projection = projection(every, rows, rates)
    check.facts["seconds"] = round(time.perf_counter() - tic, 1)
    check.save()
    return check
